package session

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/fxsession/fxsession/internal/testserver"
)

// testRedis is the package's redis-server, started by TestMain (a real server:
// the Redis store is tested against the real thing, never a fake).
var testRedis *testserver.Redis

func TestMain(m *testing.M) {
	r, stop, err := testserver.StartRedisMain()
	if err != nil {
		fmt.Fprintln(os.Stderr, "session tests need redis-server:", err)
		os.Exit(1)
	}
	testRedis = r
	code := m.Run()
	stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
