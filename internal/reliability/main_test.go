package reliability_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/fxsession/fxsession/internal/testserver"
)

// childEnv selects a child-process role: the test binary re-executes itself to
// get a process that can be killed (SIGKILL) or limited (RLIMIT_FSIZE) without
// touching the test process.
const childEnv = "FXSESSION_RELIABILITY_CHILD"

// redisMain is the package's redis-server for checks that do not take it
// away (the fault checks start their own). It starts on first use, so that fuzz
// workers and runs without such checks start none.
var redisMain struct {
	once sync.Once
	r    *testserver.Redis
	stop func()
	err  error
}

// sharedRedis returns the package's redis-server, starting it on first use.
func sharedRedis(t testing.TB) *testserver.Redis {
	t.Helper()
	redisMain.once.Do(func() {
		redisMain.r, redisMain.stop, redisMain.err = testserver.StartRedisMain()
	})
	if redisMain.err != nil {
		t.Fatalf("these checks need redis-server: %v", redisMain.err)
	}
	return redisMain.r
}

func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(runChild(role))
	}
	// The fault checks make go-redis log every failed dial; the checks judge
	// the failures themselves.
	redis.SetLogger(quietRedis{})
	code := m.Run()
	if redisMain.stop != nil {
		redisMain.stop()
	}
	cleanupDemo()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// runChild runs a child role and returns its exit code.
func runChild(role string) int {
	var err error
	switch role {
	case "filewriter":
		err = childFileWriter()
	case "fsize":
		err = childFileSize()
	case "shopserver":
		err = childShopServer()
	default:
		err = fmt.Errorf("unknown child role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

// quietRedis drops go-redis' internal log lines.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}
