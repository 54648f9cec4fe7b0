package session

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks for leaked goroutines after the tests. When the Redis store
// joins backends(), it starts the package's redis-server here too (a real server:
// the Redis store is tested against the real thing, never a fake):
//
//	r, stop, err := testserver.StartRedisMain()
//	if err != nil {
//		fmt.Fprintln(os.Stderr, "session tests need redis-server:", err)
//		os.Exit(1)
//	}
//	testRedis = r
//	defer stop() (before os.Exit)
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
