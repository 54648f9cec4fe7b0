package testserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresDatabase is the database StartPostgres creates for the tests; [Postgres.DSN]
// points at it.
const PostgresDatabase = "fxsession_test"

// postgresNotFound is the message given when no PostgreSQL binaries are installed.
const postgresNotFound = "postgres not found: run `make deps` (apt-get install postgresql)"

// Postgres is a throwaway PostgreSQL server started by a test: its own data directory
// in a temporary folder, a free loopback port, trust authentication for the
// superuser "postgres", fsync off. It is safe for concurrent use.
type Postgres struct {
	binDir  string
	root    string // temporary folder holding data/, sock/ and postgres.log
	dataDir string
	sockDir string
	logPath string
	port    int
	cred    *syscall.Credential // nil when not running as root
	pool    *pgxpool.Pool

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	closed bool
}

// StartPostgres starts a PostgreSQL server for t and stops it, removing its files, in
// t.Cleanup. A missing installation fails the test with a message saying how to
// install one. When several tests of a package need a server, consider
// [StartPostgresMain] in TestMain: initdb takes a second or two.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	p, err := launchPostgres()
	if err != nil {
		t.Fatalf("testserver: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("testserver: %v", err)
		}
	})
	return p
}

// StartPostgresMain starts a PostgreSQL server for a whole package test run, for use
// in TestMain, where no testing.TB exists yet. Call stop after m.Run:
//
//	func TestMain(m *testing.M) {
//		pg, stop, err := testserver.StartPostgresMain()
//		if err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//		shared = pg
//		code := m.Run()
//		stop()
//		os.Exit(code)
//	}
func StartPostgresMain() (p *Postgres, stop func(), err error) {
	p, err = launchPostgres()
	if err != nil {
		return nil, nil, fmt.Errorf("testserver: %w", err)
	}
	return p, func() {
		if err := p.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "testserver:", err)
		}
	}, nil
}

// DSN is the connection string of the test database, e.g.
// postgres://postgres@127.0.0.1:PORT/fxsession_test?sslmode=disable.
func (p *Postgres) DSN() string { return p.dsn(PostgresDatabase) }

// Addr is the server's loopback address, host:port.
func (p *Postgres) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

// Pool is a connection pool on the test database, closed with the server. It
// survives Stop and Start: connections broken by a stop are replaced.
func (p *Postgres) Pool() *pgxpool.Pool { return p.pool }

// CreateDatabase creates a fresh, empty database called name and returns its DSN.
func (p *Postgres) CreateDatabase(ctx context.Context, name string) (string, error) {
	if _, err := p.pool.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("testserver: create database %q: %w", name, err)
	}
	return p.dsn(name), nil
}

func (p *Postgres) dsn(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     p.Addr(),
		Path:     "/" + db,
		RawQuery: "sslmode=disable&connect_timeout=5",
	}
	return u.String()
}

// Stop shuts the server down (fast shutdown: open sessions are cut) and waits until
// it has exited. The data directory and port are kept for [Postgres.Start].
func (p *Postgres) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopLocked()
}

// Start starts a stopped server again on the same port and data directory and waits
// until it accepts connections.
func (p *Postgres) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("postgres: start after close")
	}
	if p.cmd != nil {
		return nil
	}
	return p.startLocked()
}

// Close closes the pool, stops the server and removes its files.
func (p *Postgres) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if p.pool != nil {
		p.pool.Close()
	}
	err := p.stopLocked()
	if rmErr := os.RemoveAll(p.root); rmErr != nil && err == nil {
		err = fmt.Errorf("postgres: remove %s: %w", p.root, rmErr)
	}
	return err
}

// Log returns the server's log so far (for failure messages).
func (p *Postgres) Log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

func launchPostgres() (*Postgres, error) {
	binDir, err := findPostgres()
	if err != nil {
		return nil, err
	}
	p := &Postgres{binDir: binDir}
	if p.cred, err = unprivilegedCredential(); err != nil {
		return nil, err
	}
	// A folder of our own under os.TempDir (not t.TempDir, whose parents are 0700
	// root folders the unprivileged server user could not traverse).
	if p.root, err = os.MkdirTemp("", "fxsession-pg-"); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(p.root)
		}
	}()
	p.dataDir = filepath.Join(p.root, "data")
	p.sockDir = filepath.Join(p.root, "sock")
	p.logPath = filepath.Join(p.root, "postgres.log")
	if err := os.Chmod(p.root, 0o755); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := os.Mkdir(p.sockDir, 0o700); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if p.cred != nil {
		for _, d := range []string{p.root, p.sockDir} {
			if err := os.Chown(d, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
				return nil, fmt.Errorf("postgres: %w", err)
			}
		}
	}
	if err := p.initdb(); err != nil {
		return nil, err
	}
	if p.port, err = freePortPG(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	err = p.startLocked()
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, p.dsn("postgres"))
	if err == nil {
		_, err = admin.Exec(ctx, "CREATE DATABASE "+PostgresDatabase)
		_ = admin.Close(ctx)
	}
	if err == nil {
		p.pool, err = pgxpool.New(ctx, p.DSN())
	}
	if err != nil {
		_ = p.Stop()
		return nil, fmt.Errorf("postgres: create database: %w\n%s", err, p.Log())
	}
	ok = true
	return p, nil
}

// findPostgres returns the folder holding initdb and postgres: from PATH, else the
// newest /usr/lib/postgresql/*/bin (Debian does not put them on PATH).
func findPostgres() (string, error) {
	if path, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(path)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, dir := range dirs {
		_, e1 := os.Stat(filepath.Join(dir, "initdb"))
		_, e2 := os.Stat(filepath.Join(dir, "postgres"))
		if e1 == nil && e2 == nil {
			return dir, nil
		}
	}
	return "", errors.New(postgresNotFound)
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// unprivilegedCredential returns nil when not root, else the credential of the
// "postgres" user or, failing that, "nobody": initdb and postgres refuse to run
// as root.
func unprivilegedCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
	}
	return nil, errors.New("postgres: running as root and neither user postgres nor nobody exists; initdb refuses to run as root")
}

func (p *Postgres) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(p.binDir, name), args...)
	cmd.Dir = p.root
	cmd.Env = []string{"LC_ALL=C", "LANG=C", "TZ=UTC", "PATH=" + os.Getenv("PATH"), "HOME=" + p.root}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Setpgid: true}
	pgParentDeathSignal(cmd.SysProcAttr)
	return cmd
}

// pgParentDeathSignal asks the kernel to send the server SIGINT (fast shutdown)
// when the test process dies without cleaning up (a binary killed by -timeout),
// so no orphaned postmaster outlives it. The field exists only on Linux; it is
// set by name so that this file builds on every Unix.
func pgParentDeathSignal(attr *syscall.SysProcAttr) {
	f := reflect.ValueOf(attr).Elem().FieldByName("Pdeathsig")
	if f.IsValid() && f.CanSet() && f.Type() == reflect.TypeOf(syscall.SIGINT) {
		f.Set(reflect.ValueOf(syscall.SIGINT))
	}
}

func (p *Postgres) initdb() error {
	cmd := p.command("initdb", "-D", p.dataDir, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("postgres: initdb: %w\n%s", err, out.String())
	}
	return nil
}

// startLocked starts the server and waits for it to accept connections. p.mu is held.
func (p *Postgres) startLocked() error {
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer logFile.Close() // the child has its own copy
	cmd := p.command("postgres",
		"-D", p.dataDir,
		"-p", strconv.Itoa(p.port),
		"-k", p.sockDir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "shared_buffers=32MB",
		"-c", "max_connections=100",
		"-c", "dynamic_shared_memory_type=mmap",
		"-c", "max_wal_size=1GB",
		"-c", "log_min_messages=warning",
		"-c", "log_min_error_statement=panic",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("postgres: start: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited

	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, p.dsn("postgres"))
		if err == nil {
			err = conn.Ping(ctx)
			_ = conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			p.cmd = nil
			return fmt.Errorf("postgres: exited during start-up: %w\n%s", err, p.Log())
		default:
		}
		if time.Now().After(deadline) {
			_ = p.stopLocked()
			return fmt.Errorf("postgres: not accepting connections on %s after 30s: %w\n%s", p.Addr(), err, p.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopLocked sends SIGINT (fast shutdown) and waits, killing the process group
// after 10 s. p.mu is held.
func (p *Postgres) stopLocked() error {
	if p.cmd == nil {
		return nil
	}
	cmd, exited := p.cmd, p.exited
	p.cmd, p.exited = nil, nil
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-exited
	return fmt.Errorf("postgres: fast shutdown took over 10s; killed\n%s", p.Log())
}

// freePortPG returns a loopback TCP port that was free a moment ago.
func freePortPG() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("postgres: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
