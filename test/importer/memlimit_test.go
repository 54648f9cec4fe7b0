//go:build linux && !race

package importer_test

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// addressSpaceLimit caps the test process (RLIMIT_AS): a runaway allocation
// kills the test with "fatal error: out of memory" instead of taking the
// machine's memory. The Go runtime reserves little address space up front and
// the test needs a few hundred MB, so 3 GiB leaves room for it and none for
// the gigabytes a hostile msgpack header asks for. (The race detector needs
// terabytes of address space: race builds run without the limit.)
const addressSpaceLimit = 3 << 30

// childEnv makes the test binary, re-executed by TestMemoryLimit, try to
// allocate more than the limit.
const childEnv = "IMPORTER_TEST_ALLOCATE_GIB"

func TestMain(m *testing.M) {
	lim := syscall.Rlimit{Cur: addressSpaceLimit, Max: addressSpaceLimit}
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &lim); err != nil {
		fmt.Fprintln(os.Stderr, "importer: cannot limit the address space:", err)
		os.Exit(1)
	}
	if gib := os.Getenv(childEnv); gib != "" {
		n, err := strconv.Atoi(gib)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		b := make([]byte, n<<30)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		fmt.Println("allocated", n, "GiB")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestMemoryLimit: the limit is in force, the Go runtime works under it (half a
// GiB allocated and touched), and an allocation past it kills a process with
// "out of memory", the way a hostile header would.
func TestMemoryLimit(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_AS, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur != addressSpaceLimit {
		t.Fatalf("RLIMIT_AS is %d, want %d", lim.Cur, addressSpaceLimit)
	}
	b := make([]byte, 512<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	runtime.KeepAlive(b)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=4")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "out of memory") {
		t.Errorf("allocating 4 GiB past the limit: %v\n%.500s", err, out)
	}
}
