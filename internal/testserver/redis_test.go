package testserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// verifyNoLeak checks, after every later cleanup (the server's included), that the
// test left no goroutine behind.
func verifyNoLeak(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
}

func TestRedisStartStopRestart(t *testing.T) {
	verifyNoLeak(t)
	r := StartRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := r.Client()

	if host, _, err := net.SplitHostPort(r.Addr()); err != nil || host != "127.0.0.1" {
		t.Fatalf("Addr = %q, want a loopback address", r.Addr())
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	cfg, err := c.ConfigGet(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if cfg["save"] != "" || cfg["appendonly"] != "no" || cfg["dir"] != r.Dir() {
		t.Fatalf("save=%q appendonly=%q dir=%q, want no persistence in %s", cfg["save"], cfg["appendonly"], cfg["dir"], r.Dir())
	}

	addr := r.Addr()
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := r.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
	err = c.Ping(qctx).Err()
	qcancel()
	if err == nil {
		t.Fatal("PING on a stopped server succeeded")
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if r.Addr() != addr {
		t.Fatalf("restarted on %s, want %s", r.Addr(), addr)
	}
	// The pool may still need a moment to notice that dialling works again.
	waitPing(t, c)
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("after restart without persistence, GET k = %v, want redis.Nil", err)
	}
	if !strings.Contains(r.Log(), "Ready to accept connections") {
		t.Fatalf("log lacks the start-up line:\n%s", r.Log())
	}
}

func TestRedisAppendOnlySurvivesKill(t *testing.T) {
	verifyNoLeak(t)
	r := StartRedis(t, WithAppendOnly())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := r.Client()
	if err := c.Set(ctx, "kept", "yes", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	waitPing(t, c)
	if v, err := c.Get(ctx, "kept").Result(); err != nil || v != "yes" {
		t.Fatalf("after kill and restart, GET kept = %q, %v; want yes", v, err)
	}
}

func TestRedisPauseResume(t *testing.T) {
	verifyNoLeak(t)
	r := StartRedis(t)
	opts := r.Options()
	opts.ReadTimeout, opts.WriteTimeout, opts.MaxRetries = 200*time.Millisecond, 200*time.Millisecond, -1
	c := redis.NewClient(opts)
	defer c.Close()
	ctx := context.Background()
	waitPing(t, c) // a first PING could time out on a loaded machine
	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := c.Ping(ctx).Err()
	took := time.Since(start)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("PING on a paused server: %v, want a timeout", err)
	}
	t.Logf("PING on a paused server failed after %v: %v", took, err)
	if err := r.Resume(); err != nil {
		t.Fatal(err)
	}
	waitPing(t, c)
	// Closing a paused server must not hang.
	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
}

func TestRedisStartWaitsForPort(t *testing.T) {
	verifyNoLeak(t)
	r := StartRedis(t)
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", r.Addr())
	if err != nil {
		t.Fatalf("occupy %s: %v", r.Addr(), err)
	}
	release := time.AfterFunc(300*time.Millisecond, func() { l.Close() })
	defer release.Stop()
	if err := r.Start(); err != nil {
		t.Fatalf("Start while the port was briefly taken: %v", err)
	}
	waitPing(t, r.Client())
}

func TestRedisMain(t *testing.T) {
	verifyNoLeak(t)
	r, stop, err := StartRedisMain()
	if err != nil {
		t.Fatal(err)
	}
	waitPing(t, r.Client())
	dir := r.Dir()
	stop()
	if err := redisPing(r.Addr()); err == nil {
		t.Fatal("server still answers after stop")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("folder %s still there after stop: %v", dir, err)
	}
}

// waitPing waits up to 10 s for c to reach the server.
func waitPing(t *testing.T, c *redis.Client) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server unreachable for 10 s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// StartRedisMain serves a whole package (TestMain); inside a test, StartRedis(t)
// does the same and stops the server in t.Cleanup.
func ExampleStartRedisMain() {
	r, stop, err := StartRedisMain()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	ctx := context.Background()
	if err := r.Client().Set(ctx, "greeting", "hello", 0).Err(); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Client().Get(ctx, "greeting").Val())
	// Output: hello
}
