package reliability_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/filestore"
	"github.com/fxsession/fxsession/cache/redisstore"
	"github.com/fxsession/fxsession/session"
)

// Environment of the shop server child.
const (
	envStore     = "FXSESSION_RELIABILITY_STORE" // file or redis
	envRedisAddr = "FXSESSION_RELIABILITY_REDIS"
	envNS        = "FXSESSION_RELIABILITY_NS"
	envLockTTL   = "FXSESSION_RELIABILITY_LOCK_TTL"
	envLockWait  = "FXSESSION_RELIABILITY_LOCK_WAIT"
)

// childTB lets newShop run in a child process: failures end the process.
type childTB struct{ cleanups []func() }

func (c *childTB) Helper() {}
func (c *childTB) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
func (c *childTB) Errorf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (c *childTB) Cleanup(f func())                  { c.cleanups = append(c.cleanups, f) }

func (c *childTB) cleanup() {
	for i := len(c.cleanups) - 1; i >= 0; i-- {
		c.cleanups[i]()
	}
}

// childShopServer serves the test shop on a loopback port until SIGTERM: the
// body of a second (third, ...) app server process on a shared file folder or
// Redis server. It prints "listening http://ADDR".
func childShopServer() error {
	var backend cache.Store
	switch store := os.Getenv(envStore); store {
	case "file":
		s, err := filestore.Open(filestore.Options{Dir: os.Getenv(envDir), Namespace: "rel"})
		if err != nil {
			return err
		}
		defer s.Close()
		backend = s
	case "redis":
		client := redisstore.NewClient(redis.UniversalOptions{Addrs: []string{os.Getenv(envRedisAddr)}})
		defer client.Close()
		s, err := redisstore.New(client, redisstore.Options{Namespace: os.Getenv(envNS)})
		if err != nil {
			return err
		}
		backend = s
	default:
		return fmt.Errorf("unknown store %q", store)
	}
	cfg := session.Config{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	cfg.LockTTL, _ = time.ParseDuration(os.Getenv(envLockTTL))
	cfg.LockWait, _ = time.ParseDuration(os.Getenv(envLockWait))
	ctb := &childTB{}
	defer ctb.cleanup()
	sh := newShop(ctb, shopConfig{Store: backend, Session: cfg})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: sh.Handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("listening http://%s\n", ln.Addr())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	<-stop
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}

// startShopProcess runs the test shop in a child process with env and returns
// its base URL; the child is stopped when the test ends.
func startShopProcess(t testing.TB, env ...string) string {
	t.Helper()
	cmd := child(t, "shopserver", env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedLog{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	base := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				base <- a
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("shop process output:\n%s", stderr.String())
		}
	})
	select {
	case b := <-base:
		return b
	case err := <-done:
		t.Fatalf("shop process exited: %v\n%s", err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("shop process did not listen within 30 s\n%s", stderr.String())
	}
	return ""
}

// lockedLog collects a process's output; it is safe for concurrent use.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
