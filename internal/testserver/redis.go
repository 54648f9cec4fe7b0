package testserver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisNotFound is the message given when redis-server is not installed.
const redisNotFound = "redis-server not found: run `make deps` (apt-get install redis-server)"

// Timing of the Redis helper. Generous, because the test machines are small and
// shared: a start-up normally takes a few milliseconds.
const (
	redisReadyTimeout = 15 * time.Second // from exec to the first PONG
	redisStopTimeout  = 10 * time.Second // from SIGTERM to exit, then SIGKILL
	redisPortAttempts = 5                // fresh ports tried when one was taken
	redisLogTail      = 64 << 10         // bytes of the server log shown on failure
)

// RedisOption configures [StartRedis].
type RedisOption func(*redisConfig)

type redisConfig struct {
	appendOnly bool
	args       []string
	// conf, when set, is written to redis.conf in the server's folder before
	// its first start and given as the configuration file (Sentinel needs one
	// it can rewrite); later starts keep the file as the server left it.
	conf string
}

// WithAppendOnly turns on the append-only file with appendfsync always, so that
// every acknowledged write survives [Redis.Stop] and even [Redis.Kill] followed by
// [Redis.Start]. By default the server keeps nothing on disk.
func WithAppendOnly() RedisOption {
	return func(c *redisConfig) { c.appendOnly = true }
}

// WithRedisArgs adds redis-server command-line settings, given as "--name", "value"
// pairs, e.g. WithRedisArgs("--maxmemory", "10mb"). They come after the helper's
// own settings and override them.
func WithRedisArgs(args ...string) RedisOption {
	return func(c *redisConfig) { c.args = append(c.args, args...) }
}

// Redis is a throwaway redis-server started by a test: its own working folder, a
// free loopback port, no persistence unless [WithAppendOnly] is given. Stop, Start,
// Pause, Resume and Kill let fault tests take it away and bring it back on the
// same port and folder. It is safe for concurrent use.
type Redis struct {
	bin     string
	dir     string
	logPath string
	cfg     redisConfig
	client  *redis.Client

	mu     sync.Mutex
	port   int
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has been waited for
	paused bool
	closed bool
}

// StartRedis starts a redis-server for t and stops it in t.Cleanup, closing the
// client returned by [Redis.Client] first. When the test failed, the server's log
// is written to the test log. A missing redis-server fails the test with a message
// saying how to install it.
func StartRedis(t testing.TB, opts ...RedisOption) *Redis {
	t.Helper()
	r, err := launchRedis(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("testserver: %v", err)
	}
	r.closeOnCleanup(t)
	return r
}

// closeOnCleanup closes r in t.Cleanup and writes its log to the test log when
// the test failed.
func (r *Redis) closeOnCleanup(t testing.TB) {
	t.Cleanup(func() {
		err := r.Close()
		if err != nil {
			t.Errorf("testserver: %v", err)
		}
		if t.Failed() || err != nil {
			t.Logf("testserver: redis-server log (%s):\n%s", r.logPath, r.Log())
		}
	})
}

// StartRedisMain starts a redis-server for a whole package test run, for use in
// TestMain where no testing.TB exists yet. Call stop after m.Run; it stops the
// server and removes its folder.
func StartRedisMain(opts ...RedisOption) (r *Redis, stop func(), err error) {
	dir, err := os.MkdirTemp("", "fxsession-redis-")
	if err != nil {
		return nil, nil, fmt.Errorf("testserver: redis: %w", err)
	}
	r, err = launchRedis(dir, opts)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("testserver: %w", err)
	}
	return r, func() {
		if err := r.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "testserver: %v\n%s", err, r.Log())
		}
		_ = os.RemoveAll(dir)
	}, nil
}

func launchRedis(dir string, opts []RedisOption) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New(redisNotFound)
	}
	r := &Redis{bin: bin, dir: dir, logPath: filepath.Join(dir, "redis.log")}
	for _, o := range opts {
		o(&r.cfg)
	}
	if err := r.launch(); err != nil {
		return nil, err
	}
	r.client = redis.NewClient(r.Options())
	return r, nil
}

// launch starts the server on a fresh free port, trying another one when the
// port was taken between choosing and binding it.
func (r *Redis) launch() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for attempt := 1; ; attempt++ {
		port, err := redisFreePort()
		if err != nil {
			return err
		}
		r.port = port
		err = r.startLocked()
		if err == nil || !errors.Is(err, errRedisPortTaken) || attempt == redisPortAttempts {
			return err
		}
	}
}

// Addr is the server's loopback address, host:port.
func (r *Redis) Addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addrLocked()
}

func (r *Redis) addrLocked() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// URL is the server's address as a go-redis URL, redis://127.0.0.1:PORT/0.
func (r *Redis) URL() string { return "redis://" + r.Addr() + "/0" }

// Dir is the server's working folder (log, append-only file).
func (r *Redis) Dir() string { return r.dir }

// Options returns fresh go-redis options for this server, with test-friendly
// timeouts (2 s to dial, read and write), for tests that build their own client.
func (r *Redis) Options() *redis.Options {
	return &redis.Options{
		Addr:         r.Addr(),
		DialTimeout:  2 * time.Second,
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
	}
}

// Client is a client on the server built from [Redis.Options], shared by every
// caller and closed when the server is closed. It survives Stop and Start: broken
// connections are replaced.
func (r *Redis) Client() *redis.Client { return r.client }

// Log returns the tail of the server's log (for failure messages).
func (r *Redis) Log() string {
	f, err := os.Open(r.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > redisLogTail {
		_, _ = f.Seek(-redisLogTail, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// Stop shuts the server down (SIGTERM, as a service manager does) and waits until
// it has exited, killing it after 10 s. Port and folder are kept for
// [Redis.Start]. Stopping a stopped server does nothing.
func (r *Redis) Stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopLocked(syscall.SIGTERM)
}

// Kill kills the server with SIGKILL (a crash: nothing is flushed) and waits until
// it has gone. Port and folder are kept for [Redis.Start].
func (r *Redis) Kill() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopLocked(syscall.SIGKILL)
}

// Start starts a stopped or killed server again on the same port and folder and
// waits until it answers PING. Starting a running server does nothing.
func (r *Redis) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("redis: start after close")
	}
	if r.cmd != nil {
		return nil
	}
	// The port was ours a moment ago; give whoever grabbed it in between a few
	// seconds to let go rather than failing at once.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := r.startLocked()
		if err == nil || !errors.Is(err, errRedisPortTaken) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Pause freezes the server with SIGSTOP: connections stay open but nothing is
// answered, as with a server stuck in a long command or a network partition.
func (r *Redis) Pause() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return errors.New("redis: pause: server not running")
	}
	if err := r.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("redis: pause: %w", err)
	}
	r.paused = true
	return nil
}

// Resume lets a paused server run again (SIGCONT).
func (r *Redis) Resume() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resumeLocked()
}

func (r *Redis) resumeLocked() error {
	if r.cmd == nil || !r.paused {
		return nil
	}
	if err := r.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("redis: resume: %w", err)
	}
	r.paused = false
	return nil
}

// Close closes the client and stops the server for good. It is called by the
// cleanup of [StartRedis]; calling it again does nothing.
func (r *Redis) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	var errs []error
	if r.client != nil {
		if err := r.client.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
			errs = append(errs, fmt.Errorf("redis: close client: %w", err))
		}
	}
	errs = append(errs, r.stopLocked(syscall.SIGTERM))
	return errors.Join(errs...)
}

// errRedisPortTaken: the server could not bind its port.
var errRedisPortTaken = errors.New("port already in use")

// startLocked starts the server on r.port and waits until it answers PING.
// r.mu is held.
func (r *Redis) startLocked() error {
	var args []string
	if r.cfg.conf != "" {
		path := filepath.Join(r.dir, "redis.conf")
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(path, []byte(r.cfg.conf), 0o644); err != nil {
				return fmt.Errorf("redis: %w", err)
			}
		}
		args = append(args, path) // the file comes first, the settings after it
	}
	args = append(args,
		"--port", strconv.Itoa(r.port),
		"--bind", "127.0.0.1",
		"--dir", r.dir,
		"--logfile", r.logPath,
		"--daemonize", "no",
		"--loglevel", "notice",
		"--save", "",
		"--appendonly", "no",
	)
	if r.cfg.appendOnly {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	}
	args = append(args, r.cfg.args...)
	cmd := exec.Command(r.bin, args...)
	cmd.Dir = r.dir
	// Output before the log file is opened (bad arguments) lands here.
	early, err := os.OpenFile(filepath.Join(r.dir, "redis.out"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	defer early.Close() // the child has its own copy
	cmd.Stdout, cmd.Stderr = early, early
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setParentDeathSignal(cmd.SysProcAttr)
	// The log is appended to across restarts: only what this start wrote counts.
	var logStart int64
	if fi, err := os.Stat(r.logPath); err == nil {
		logStart = fi.Size()
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redis: start %s: %w", r.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	r.cmd, r.exited, r.paused = cmd, exited, false

	addr := r.addrLocked()
	deadline := time.Now().Add(redisReadyTimeout)
	for {
		err := redisPing(addr)
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			r.cmd, r.exited = nil, nil
			out := r.logSince(logStart) + r.earlyOutput()
			if strings.Contains(out, "Address already in use") {
				return fmt.Errorf("redis: %s: %w", addr, errRedisPortTaken)
			}
			return fmt.Errorf("redis: exited during start-up on %s (%s): %v\n%s", addr, cmd.ProcessState, err, out)
		default:
		}
		if time.Now().After(deadline) {
			_ = r.stopLocked(syscall.SIGKILL)
			return fmt.Errorf("redis: no PONG on %s after %v: %v\n%s", addr, redisReadyTimeout, err, r.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *Redis) logSince(offset int64) string {
	f, err := os.Open(r.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	_, _ = f.Seek(offset, io.SeekStart)
	b, _ := io.ReadAll(io.LimitReader(f, redisLogTail))
	return string(b)
}

func (r *Redis) earlyOutput() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "redis.out"))
	return string(b)
}

// stopLocked sends sig, waits for the exit and kills the process group when it
// takes over redisStopTimeout. r.mu is held.
func (r *Redis) stopLocked(sig syscall.Signal) error {
	if r.cmd == nil {
		return nil
	}
	cmd, exited := r.cmd, r.exited
	if sig != syscall.SIGKILL {
		// A stopped process acts on SIGTERM only once it runs again.
		_ = r.resumeLocked()
	}
	r.cmd, r.exited, r.paused = nil, nil, false
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(redisStopTimeout):
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-exited
	return fmt.Errorf("redis: shutdown took over %v; killed", redisStopTimeout)
}

// redisPing dials addr and expects +PONG to a PING. A server still loading its
// data answers -LOADING, which counts as not ready.
func redisPing(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(conn, "PING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimSpace(line); line != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// redisFreePort returns a loopback TCP port that was free a moment ago.
func redisFreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redis: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// setParentDeathSignal asks the kernel to kill the server when the test process
// dies without cleaning up (a test binary killed by -timeout), so no orphaned
// server outlives it. The field exists only on Linux; it is set by name so that
// this file builds on every Unix.
func setParentDeathSignal(attr *syscall.SysProcAttr) {
	f := reflect.ValueOf(attr).Elem().FieldByName("Pdeathsig")
	if f.IsValid() && f.CanSet() && f.Type() == reflect.TypeOf(syscall.SIGKILL) {
		f.Set(reflect.ValueOf(syscall.SIGKILL))
	}
}
