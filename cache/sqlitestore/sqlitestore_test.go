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
	"github.com/fxsession/fxsession/cache/internal/sqlcommon/sqltest"
	"github.com/fxsession/fxsession/cache/sqlitestore"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperProcess())
	}
	goleak.VerifyTestMain(m)
}

// opener returns an OpenFunc whose stores all share one database file.
func opener(t testing.TB, o sqlitestore.Options) cachetest.OpenFunc {
	path := filepath.Join(t.TempDir(), "cache.db")
	return func(tb testing.TB, ns string) cache.Store {
		o := o
		o.Namespace = ns
		s, err := sqlitestore.Open(tb.Context(), path, o)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = s.Close() })
		return s
	}
}

func TestConformance(t *testing.T) {
	// Lifetimes long enough that a loaded machine writes a check's records
	// before they expire; a batch size that the iteration checks cross several
	// times with few records. SQLite's write lock has no queue: a store whose
	// writer keeps losing the lock to another store's (the checks that open
	// two) may wait until that one is done, longer than the default 2 s under
	// -race on a loaded machine.
	cachetest.Run(t, "sqlite", opener(t, sqlitestore.Options{BatchSize: 50, StatementTimeout: 10 * time.Second}),
		cachetest.Options{Parallel: true, Many: 250})
}

func BenchmarkSQLite(b *testing.B) {
	cachetest.Bench(b, opener(b, sqlitestore.Options{}))
}

// create writes a new record with one field.
func create(t testing.TB, s cache.Store, key, value string, tags ...string) cache.Version {
	t.Helper()
	v, err := s.Write(t.Context(), key, cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("f", []byte(value))}, AddTags: tags})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// field reads field f of the record under key.
func field(t testing.TB, s cache.Store, key string) (string, cache.Version) {
	t.Helper()
	r, err := s.Read(t.Context(), key, "f")
	if err != nil {
		t.Fatal(err)
	}
	f, _ := r.Field("f")
	return string(f.Value), f.Version
}

const helperEnv = "SQLITESTORE_HELPER"

// helperProcess is the body of a child process of TestTwoProcesses: it
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
		if _, err := cachetest.Increment(ctx, s, "counter", "n"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

// Two OS processes and goroutines of this one increment one counter in one file
// with per-field compare-and-set: the result is exact.
func TestTwoProcesses(t *testing.T) {
	const perProc, goroutines, perGoroutine = 50, 4, 25
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
	for range goroutines {
		wg.Go(func() {
			for range perGoroutine {
				if _, err := cachetest.Increment(ctx, s, "counter", "n"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper process: %v", err)
		}
	}
	r, err := s.Read(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	f, _ := r.Field("n")
	if want := strconv.Itoa(2*perProc + goroutines*perGoroutine); string(f.Value) != want {
		t.Fatalf("counter = %s, want %s", f.Value, want)
	}
}

// A write lock held by another connection for longer than StatementTimeout
// gives a prompt ErrUnavailable, and the store works once it is released.
// Readers do not wait for a writer. The timeout (2 s) is long enough that a
// loaded machine does not fail the statements that must succeed.
func TestBusy(t *testing.T) {
	const timeout = 2 * time.Second
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "busy.db")
	s, err := sqlitestore.Open(ctx, path, sqlitestore.Options{StatementTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	create(t, s, "k", "v", "t")
	release := lockFile(t, path, "BEGIN IMMEDIATE")
	var wg sync.WaitGroup
	for name, call := range map[string]func() error{
		"Write": func() error {
			_, err := s.Write(ctx, "k", cache.Write{Fields: []cache.FieldWrite{cache.Set("f", []byte("blocked"))}})
			return err
		},
		"Delete":         func() error { _, err := s.Delete(ctx, "k"); return err },
		"Flush":          func() error { return s.Flush(ctx) },
		"CollectGarbage": func() error { _, err := s.CollectGarbage(ctx, cache.GCOptions{}); return err },
		"Lock":           func() error { _, err := s.Lock(ctx, "l", time.Minute); return err },
	} {
		wg.Go(func() { // at once: each waits its statement timeout
			start := time.Now()
			err := call()
			if !errors.Is(err, cache.ErrUnavailable) {
				t.Errorf("%s while another connection holds the write lock: %v, want ErrUnavailable", name, err)
			}
			if took := time.Since(start); took > 4*timeout {
				t.Errorf("%s took %v with a %v statement timeout", name, took, timeout)
			}
		})
	}
	wg.Wait()
	if v, _ := field(t, s, "k"); v != "v" {
		t.Fatalf("Read while the write lock is held: %q", v)
	}
	for k, err := range s.Tagged(ctx, "t") {
		if k != "k" || err != nil {
			t.Fatalf("Tagged while the write lock is held: %q, %v", k, err)
		}
	}
	release()
	if _, err := s.Write(ctx, "k", cache.Write{Fields: []cache.FieldWrite{cache.Set("f", []byte("after"))}}); err != nil {
		t.Fatalf("Write after the lock was released: %v", err)
	}
}

// Another connection holds an exclusive lock on the file: a write fails with
// ErrUnavailable after the statement timeout, and the same store works again
// once the lock is gone. The lock is released after the first failure, not
// after a fixed time, so a loaded machine cannot change the order.
func TestLockedFileRecovers(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	path := filepath.Join(dir, "c.db")
	s, err := sqlitestore.Open(ctx, path, sqlitestore.Options{StatementTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	create(t, s, "k", "v")
	release := lockFile(t, path, "BEGIN EXCLUSIVE")
	write := func() error {
		_, err := s.Write(ctx, "k", cache.Write{Fields: []cache.FieldWrite{cache.Set("f", []byte("after"))}})
		return err
	}
	if err := write(); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("Write while the file is locked: %v, want ErrUnavailable", err)
	}
	release()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := write()
		if err == nil {
			break
		}
		if !errors.Is(err, cache.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("Write after the lock was released: %v", err)
		}
	}
	if v, _ := field(t, s, "k"); v != "after" {
		t.Fatalf("after recovery: %q", v)
	}
}

// Garbage collection removes a bounded batch per call through the expiry index
// and takes the records' fields and tags with them.
func TestGarbage(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "gc.db")
	s, err := sqlitestore.Open(ctx, path, sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	soon := time.Now().Add(200 * time.Millisecond)
	for i := range 35 {
		if _, err := s.Write(ctx, fmt.Sprintf("k%02d", i), cache.Write{Create: true, Expires: soon, AddTags: []string{"t"},
			Fields: []cache.FieldWrite{cache.Set("a", []byte("x")), cache.Set("b", []byte("y"))}}); err != nil {
			t.Fatal(err)
		}
	}
	create(t, s, "kept", "x", "t")
	time.Sleep(time.Until(soon) + 20*time.Millisecond)
	total := 0
	for {
		n, err := s.CollectGarbage(ctx, cache.GCOptions{Max: 10})
		if err != nil {
			t.Fatal(err)
		}
		if n > 10 {
			t.Fatalf("CollectGarbage(Max 10) removed %d", n)
		}
		if total += n; n == 0 {
			break
		}
	}
	if total != 35 {
		t.Fatalf("collected %d, want 35", total)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for table, want := range map[string]int{"fxcache_records": 1, "fxcache_fields": 1, "fxcache_tags": 1} {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("%s has %d rows, want %d (the collected records' rows go with them)", table, n, want)
		}
	}
	// The statements that must stay cheap in a large namespace use their indexes.
	for _, q := range []struct{ sql, index string }{
		{`SELECT key FROM fxcache_records WHERE namespace = 'x' AND expires_at IS NOT NULL AND expires_at <= 5
			ORDER BY expires_at LIMIT 1000`, "fxcache_records_expiry"},
		{`DELETE FROM fxcache_tags WHERE namespace = 'x' AND key = 'k'`, "fxcache_tags_record"},
		{`SELECT key FROM fxcache_tags WHERE namespace = 'x' AND tag = 't' AND key > '' ORDER BY key LIMIT 500`, "PRIMARY KEY"},
	} {
		rows, err := db.QueryContext(ctx, `EXPLAIN QUERY PLAN `+q.sql)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		_ = rows.Close()
		if text := strings.Join(plan, "\n"); !strings.Contains(text, q.index) {
			t.Errorf("%s does not use %s:\n%s", q.sql, q.index, text)
		}
	}
}

// lockFile takes the database's write lock from a connection of its own, as
// another process would, with begin ("BEGIN IMMEDIATE" or "BEGIN EXCLUSIVE"),
// and returns the function that releases it.
func lockFile(t *testing.T, path, begin string) (release func()) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		_ = db.Close()
	})
	if _, err := conn.ExecContext(t.Context(), begin); err != nil {
		t.Fatal(err)
	}
	return func() { _, _ = conn.ExecContext(context.Background(), "ROLLBACK") }
}

// rowsOf returns a function counting a table's rows of a namespace in the
// database file at path.
func rowsOf(t *testing.T, path string) sqltest.Rows {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return func(t *testing.T, table, ns string) int {
		var n int
		if err := db.QueryRowContext(t.Context(), `SELECT count(*) FROM `+table+` WHERE namespace = ?`, ns).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
}

// Two handles on one file (two processes) collect at once: every expired
// record is reported once, with its fields and tags.
func TestCollectTwoHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gc.db")
	// Generous: b's collectors may hold the write lock until they are done
	// (SQLite's write lock has no queue).
	o := sqlitestore.Options{Namespace: "gc", StatementTimeout: 20 * time.Second}
	a, err := sqlitestore.Open(t.Context(), path, o)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := sqlitestore.Open(t.Context(), path, o)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	sqltest.CollectTwoHandles(t, a, b, rowsOf(t, path))
}

// A record's fields and tags go with it, whatever removes it.
func TestCascade(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cascade.db")
	s, err := sqlitestore.Open(t.Context(), path, sqlitestore.Options{Namespace: "cascade"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sqltest.Cascade(t, s, rowsOf(t, path))
}

// A schema of another version is refused with a clear message.
func TestSchemaOtherVersion(t *testing.T) {
	sqltest.OtherSchema(t, func(t *testing.T, statements string) error {
		path := filepath.Join(t.TempDir(), "other.db")
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.ExecContext(t.Context(), statements); err != nil {
			t.Fatal(err)
		}
		_, err = sqlitestore.Open(t.Context(), path, sqlitestore.Options{})
		return err
	})
}

func TestReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "sub", "dir", "re.db")
	s, err := sqlitestore.Open(ctx, path, sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v := create(t, s, "k", "kept", "t")
	if _, err := s.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	v = max(v, create(t, s, "k", "kept", "t"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = sqlitestore.Open(ctx, path, sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.Read(ctx, "k")
	if err != nil || r.Version != v || len(r.Tags) != 1 {
		t.Fatalf("after reopening: %+v, %v", r, err)
	}
	// Versions keep growing across restarts, also for a record deleted and
	// created again.
	if _, err := s.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if v2 := create(t, s, "k", "new"); v2 <= v {
		t.Fatalf("version after reopening %d, not above %d", v2, v)
	}
}

func TestOpenErrors(t *testing.T) {
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
func TestOddPath(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "a dir?#%", "c&d.db")
	s, err := sqlitestore.Open(ctx, path, sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	create(t, s, "k", "v")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at %s: %v", path, err)
	}
	if s.Path() != path {
		t.Fatalf("Path() = %q, want %q", s.Path(), path)
	}
}

func TestModule(t *testing.T) {
	path := filepath.Join(t.TempDir(), "module.db")
	var st cache.Store
	app := fxtest.New(t,
		sqlitestore.Module(path, sqlitestore.Options{Namespace: "module"}),
		fx.Populate(&st),
	)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the database was created before start: %v", err)
	}
	app.RequireStart()
	ctx := t.Context()
	create(t, st, "k", "v")
	app.RequireStop()
	if _, err := st.Read(ctx, "k"); !errors.Is(err, cache.ErrClosed) {
		t.Fatalf("Read after the app stopped: %v, want ErrClosed", err)
	}
}

func TestModuleBadPath(t *testing.T) {
	app := fx.New(
		fx.NopLogger,
		sqlitestore.Module(":memory:", sqlitestore.Options{}),
		fx.Invoke(func(cache.Store) {}),
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
		fx.Invoke(func(cache.Store) {}),
	)
	if err := app.Err(); err != nil {
		t.Fatal(err)
	}
	if err := app.Start(t.Context()); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("start with an unusable folder: %v, want ErrUnavailable", err)
	}
}
