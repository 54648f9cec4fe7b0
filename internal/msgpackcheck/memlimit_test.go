//go:build linux && !race

package msgpackcheck_test

import (
	"fmt"
	"os"
	"syscall"
	"testing"
)

// TestMain caps the test process's address space (fuzz workers inherit the cap
// and set it again), so that a hole in the check kills the test with "out of
// memory" instead of letting msgpack take the machine's memory. The race detector
// needs terabytes of address space: race builds run without the cap.
func TestMain(m *testing.M) {
	const limit = 3 << 30
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
		fmt.Fprintln(os.Stderr, "msgpackcheck tests: cannot limit the address space:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
