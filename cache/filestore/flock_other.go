//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package filestore

import (
	"errors"
	"os"
)

var errNoFlock = errors.New("filestore: OS file locks are not supported on this platform")

func tryFlock(*os.File) (bool, error) { return false, errNoFlock }

func writable(string) bool { return true }
