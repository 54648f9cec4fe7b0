package sqlitestore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/sqlitestore"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperProcess())
	}
	goleak.VerifyTestMain(m)
}

// opener returns an OpenFunc whose stores all share one database file.
func opener(t testing.TB) cachetest.OpenFunc {
	path := filepath.Join(t.TempDir(), "cache.db")
	return func(tb testing.TB, ns string) cache.Backend {
		s, err := sqlitestore.Open(tb.Context(), path, sqlitestore.Options{Namespace: ns})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = s.Close() })
		return s
	}
}

func TestConformance(t *testing.T) {
	cachetest.Run(t, "sqlite", opener(t))
}

func BenchmarkSQLite(b *testing.B) {
	cachetest.Bench(b, opener(b))
}

const helperEnv = "SQLITESTORE_HELPER"

// helperProcess is the body of a child process of TestTwoProcessesCounter: it
// increments the counter in the database file named by the environment.
func helperProcess() int {
	ctx := context.Background()
	n, _ := strconv.Atoi(os.Getenv("SQLITESTORE_N"))
	s, err := sqlitestore.Open(ctx, os.Getenv(helperEnv), sqlitestore.Options{Namespace: "shared", StatementTimeout: 10 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Close()
	for range n {
		if _, err := cachetest.Increment(ctx, s, "counter"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

// Two OS processes and goroutines of this one increment one counter in one file
// with CompareAndSet: the result is exact.
func TestTwoProcessesCounter(t *testing.T) {
	const perProc, goroutines, perGoroutine = 300, 4, 100
	path := filepath.Join(t.TempDir(), "shared.db")
	ctx := t.Context()
	s, err := sqlitestore.Open(ctx, path, sqlitestore.Options{Namespace: "shared", StatementTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	var cmds []*exec.Cmd
	for range 2 {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"="+path, "SQLITESTORE_N="+strconv.Itoa(perProc))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for range goroutines {
		wg.Go(func() {
			for range perGoroutine {
				if _, err := cachetest.Increment(ctx, s, "counter"); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper process: %v", err)
		}
	}
	e, err := s.Get(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.Itoa(2*perProc + goroutines*perGoroutine); string(e.Value) != want {
		t.Fatalf("counter = %s, want %s", e.Value, want)
	}
}

// A write lock held by another connection for longer than StatementTimeout
// gives a prompt ErrUnavailable, and the store works once it is released.
func TestSQLiteBusy(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "busy.db")
	s, err := sqlitestore.Open(ctx, path, sqlitestore.Options{StatementTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Set(ctx, cache.Item{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}

	other, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func() error{
		"Set":           func() error { _, err := s.Set(ctx, cache.Item{Key: "k", Value: []byte("blocked")}); return err },
		"CompareAndSet": func() error { _, err := s.CompareAndSet(ctx, cache.Item{Key: "k"}, 0); return err },
		"Delete":        func() error { _, err := s.Delete(ctx, "k"); return err },
		"Lock":          func() error { _, err := s.Lock(ctx, "l", time.Minute); return err },
	} {
		start := time.Now()
		err := call()
		if !errors.Is(err, cache.ErrUnavailable) {
			t.Errorf("%s while another connection holds the write lock: %v, want ErrUnavailable", name, err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("%s took %v with a 300ms statement timeout", name, took)
		}
	}
	// Readers are not blocked by a writer in WAL mode.
	if e, err := s.Get(ctx, "k"); err != nil || string(e.Value) != "v" {
		t.Fatalf("Get while the write lock is held: %q, %v", e.Value, err)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(ctx, cache.Item{Key: "k", Value: []byte("after")}); err != nil {
		t.Fatalf("Set after the lock was released: %v", err)
	}
}

// GC deletes in bounded batches, counts every expired entry and takes the
// entries' tags with them.
func TestSQLiteGarbageBatches(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "gc.db")
	s, err := sqlitestore.Open(ctx, path, sqlitestore.Options{GCBatchSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var items []cache.Item
	for i := range 35 {
		items = append(items, cache.Item{Key: fmt.Sprintf("k%02d", i), Value: []byte("x"), Tags: []string{"t"}, TTL: 50 * time.Millisecond})
	}
	items = append(items, cache.Item{Key: "kept", Value: []byte("x"), Tags: []string{"t"}})
	if err := s.SetMany(ctx, items); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	n, err := s.CollectGarbage(ctx)
	if err != nil || n != 35 {
		t.Fatalf("CollectGarbage = %d, %v; want 35", n, err)
	}

	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var tags int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM fxcache_tags`).Scan(&tags); err != nil {
		t.Fatal(err)
	}
	if tags != 1 {
		t.Fatalf("%d tag rows left, want 1 (the collected entries' tags go with them)", tags)
	}
	// The collector's query walks the expiry index, not the table.
	rows, err := db.QueryContext(ctx, `EXPLAIN QUERY PLAN SELECT rowid FROM fxcache_entries
		WHERE namespace = 'x' AND expires_at IS NOT NULL AND expires_at <= 5 ORDER BY expires_at LIMIT 1000`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if text := strings.Join(plan, "\n"); !strings.Contains(text, "fxcache_entries_expiry") {
		t.Fatalf("the GC query does not use the expiry index:\n%s", text)
	}
}

func TestSQLiteSchemaTooNew(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "new.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE fxcache_schema (id INTEGER PRIMARY KEY, version INTEGER NOT NULL);
		INSERT INTO fxcache_schema VALUES (1, 99)`); err != nil {
		t.Fatal(err)
	}
	_, err = sqlitestore.Open(ctx, path, sqlitestore.Options{})
	if err == nil || !strings.Contains(err.Error(), "schema version 99") {
		t.Fatalf("Open on a newer schema: %v", err)
	}
}

func TestSQLiteReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "sub", "dir", "re.db")
	s, err := sqlitestore.Open(ctx, path, sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Set(ctx, cache.Item{Key: "k", Value: []byte("kept"), Tags: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = sqlitestore.Open(ctx, path, sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e, err := s.Get(ctx, "k")
	if err != nil || string(e.Value) != "kept" || e.Version != v || len(e.Tags) != 1 {
		t.Fatalf("after reopening: %+v, %v", e, err)
	}
	// Versions keep growing across restarts.
	v2, err := s.Set(ctx, cache.Item{Key: "k", Value: []byte("new")})
	if err != nil || v2 <= v {
		t.Fatalf("Set after reopening: version %d (before %d), %v", v2, v, err)
	}
}

func TestSQLiteOpenErrors(t *testing.T) {
	ctx := t.Context()
	for _, bad := range []string{"", ":memory:", "file:x.db?mode=memory"} {
		if _, err := sqlitestore.Open(ctx, bad, sqlitestore.Options{}); err == nil || !strings.Contains(err.Error(), "not a file path") {
			t.Errorf("Open(%q): %v", bad, err)
		}
	}
	dir := t.TempDir()
	if _, err := sqlitestore.Open(ctx, filepath.Join(dir, "x.db"), sqlitestore.Options{Namespace: "bad ns"}); !errors.Is(err, cache.ErrInvalidKey) {
		t.Errorf("Open with a bad namespace: %v", err)
	}
	// A folder that cannot be created: its parent is a file.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlitestore.Open(ctx, filepath.Join(file, "sub", "x.db"), sqlitestore.Options{}); !errors.Is(err, cache.ErrUnavailable) {
		t.Errorf("Open under a file: %v, want ErrUnavailable", err)
	}
	// A file that is not a database.
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, []byte(strings.Repeat("not a database ", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlitestore.Open(ctx, junk, sqlitestore.Options{}); err == nil {
		t.Error("Open on a file that is not a database succeeded")
	}
}

// A path with characters that mean something in a URI.
func TestSQLiteOddPath(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "a dir?#%", "c&d.db")
	s, err := sqlitestore.Open(ctx, path, sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Set(ctx, cache.Item{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at %s: %v", path, err)
	}
	if s.Path() != path {
		t.Fatalf("Path() = %q, want %q", s.Path(), path)
	}
}

func TestModule(t *testing.T) {
	path := filepath.Join(t.TempDir(), "module.db")
	var b cache.Backend
	app := fxtest.New(t,
		sqlitestore.Module(path, sqlitestore.Options{Namespace: "module"}),
		fx.Populate(&b),
	)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the database was created before start: %v", err)
	}
	app.RequireStart()
	ctx := t.Context()
	if _, err := b.Set(ctx, cache.Item{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	app.RequireStop()
	if _, err := b.Get(ctx, "k"); !errors.Is(err, cache.ErrClosed) {
		t.Fatalf("Get after the app stopped: %v, want ErrClosed", err)
	}
}

func TestModuleBadPath(t *testing.T) {
	app := fx.New(
		fx.NopLogger,
		sqlitestore.Module(":memory:", sqlitestore.Options{}),
		fx.Invoke(func(cache.Backend) {}),
	)
	if err := app.Err(); err == nil || !strings.Contains(err.Error(), "sqlitestore: \":memory:\" is not a file path") {
		t.Fatalf("app with an in-memory path: %v", err)
	}

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	app = fx.New(
		fx.NopLogger,
		sqlitestore.Module(filepath.Join(file, "x.db"), sqlitestore.Options{}),
		fx.Invoke(func(cache.Backend) {}),
	)
	if err := app.Err(); err != nil {
		t.Fatal(err)
	}
	if err := app.Start(t.Context()); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("start with an unusable folder: %v, want ErrUnavailable", err)
	}
}
