//go:build !linux

package filestore

import "testing"

// mountTmpfs skips the test: mounting a tmpfs is Linux only.
func mountTmpfs(t *testing.T, _ string) string {
	t.Skip("mounting a tmpfs needs Linux")
	return ""
}

func remountReadOnly(t *testing.T, _ string) { t.Skip("mounting a tmpfs needs Linux") }
