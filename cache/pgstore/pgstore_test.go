package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/pgstore"
	"github.com/fxsession/fxsession/internal/testserver"
)

// server is the package's shared PostgreSQL, started once in TestMain (initdb
// takes a second or two). Tests that stop their server start their own.
var server *testserver.Postgres

func TestMain(m *testing.M) {
	pg, stop, err := testserver.StartPostgresMain()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	server = pg
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

// open opens a store with its own pool on the shared server.
func open(tb testing.TB, o pgstore.Options) *pgstore.Store {
	tb.Helper()
	s, err := pgstore.Open(tb.Context(), server.DSN(), o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	cachetest.Run(t, "postgres", func(tb testing.TB, ns string) cache.Backend {
		return open(tb, pgstore.Options{Namespace: ns})
	})
}

// A store made with New on a pool the caller keeps: Close leaves the pool alone.
func TestNewOnCallersPool(t *testing.T) {
	ctx := t.Context()
	s, err := pgstore.New(ctx, server.Pool(), pgstore.Options{Namespace: cachetest.Namespace("new")})
	if err != nil {
		t.Fatal(err)
	}
	if s.Pool() != server.Pool() {
		t.Fatal("Pool() is not the pool given to New")
	}
	sub, err := s.Sub("child")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Set(ctx, cache.Item{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if e, err := sub.Get(ctx, "k"); err != nil || string(e.Value) != "v" {
		t.Fatalf("Get = %q, %v", e.Value, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Get(ctx, "k"); !errors.Is(err, cache.ErrClosed) {
		t.Fatalf("Get on a Sub after Close: %v, want ErrClosed", err)
	}
	if err := server.Pool().Ping(ctx); err != nil {
		t.Fatalf("the caller's pool was closed by the store: %v", err)
	}
	if _, err := pgstore.New(ctx, nil, pgstore.Options{}); err == nil {
		t.Fatal("New with a nil pool succeeded")
	}
}

func BenchmarkPostgres(b *testing.B) {
	cachetest.Bench(b, func(tb testing.TB, ns string) cache.Backend {
		return open(tb, pgstore.Options{Namespace: ns})
	})
}

// The database stopped under a live store: every call fails promptly with
// ErrUnavailable, and the same store works again once the database is back.
func TestPostgresDown(t *testing.T) {
	pg := testserver.StartPostgres(t)
	ctx := t.Context()
	s, err := pgstore.Open(ctx, pg.DSN(), pgstore.Options{Namespace: "down", StatementTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Set(ctx, cache.Item{Key: "k", Value: []byte("before"), Tags: []string{"t"}}); err != nil {
		t.Fatal(err)
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	item := cache.Item{Key: "k", Value: []byte("x")}
	calls := map[string]func() error{
		"Get":            func() error { _, err := s.Get(ctx, "k"); return err },
		"GetMany":        func() error { _, err := s.GetMany(ctx, []string{"k", "j"}); return err },
		"Set":            func() error { _, err := s.Set(ctx, item); return err },
		"SetMany":        func() error { return s.SetMany(ctx, []cache.Item{item}) },
		"CompareAndSet":  func() error { _, err := s.CompareAndSet(ctx, item, 1); return err },
		"Delete":         func() error { _, err := s.Delete(ctx, "k"); return err },
		"Has":            func() error { _, err := s.Has(ctx, "k"); return err },
		"Flush":          func() error { return s.Flush(ctx) },
		"FlushByTag":     func() error { _, err := s.FlushByTag(ctx, "t"); return err },
		"Tagged":         func() error { return first(s.Tagged(ctx, "t")) },
		"All":            func() error { return first(s.All(ctx)) },
		"CollectGarbage": func() error { _, err := s.CollectGarbage(ctx); return err },
		"Lock":           func() error { _, err := s.Lock(ctx, "l", time.Minute); return err },
		"Unlock":         func() error { _, err := s.Unlock(ctx, "l", "tok"); return err },
	}
	for name, call := range calls {
		start := time.Now()
		err := call()
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("%s on a stopped database took %v", name, took)
		}
		if !errors.Is(err, cache.ErrUnavailable) {
			t.Errorf("%s on a stopped database: %v, want ErrUnavailable", name, err)
		}
	}

	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	// The pool may hand out one more broken connection; within a few calls the
	// store answers again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		e, err := s.Get(ctx, "k")
		if err == nil {
			if string(e.Value) != "before" {
				t.Fatalf("after restart: %q", e.Value)
			}
			break
		}
		if !errors.Is(err, cache.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("no recovery after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := s.Set(ctx, cache.Item{Key: "k", Value: []byte("after")}); err != nil {
		t.Fatal(err)
	}
}

// A statement that waits on a row lock longer than StatementTimeout gives up
// with ErrUnavailable instead of hanging.
func TestPostgresStatementTimeout(t *testing.T) {
	ctx := t.Context()
	s := open(t, pgstore.Options{Namespace: "slow", StatementTimeout: 300 * time.Millisecond})
	if _, err := s.Set(ctx, cache.Item{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	tx, err := server.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SELECT 1 FROM fxcache_entries WHERE namespace = 'slow' AND key = 'k' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.Set(ctx, cache.Item{Key: "k", Value: []byte("blocked")})
	took := time.Since(start)
	if !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("Set on a locked row: %v, want ErrUnavailable", err)
	}
	if took > 2*time.Second {
		t.Fatalf("Set on a locked row took %v with a 300ms statement timeout", took)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// The server cancelled the statement: it does not complete once the row is free.
	time.Sleep(100 * time.Millisecond)
	if e, err := s.Get(ctx, "k"); err != nil || string(e.Value) != "v" {
		t.Fatalf("after the timeout: %q, %v (the timed-out write went through)", e.Value, err)
	}
}

// GC deletes in bounded batches and counts every expired entry.
func TestPostgresGarbageBatches(t *testing.T) {
	ctx := t.Context()
	s := open(t, pgstore.Options{Namespace: cachetest.Namespace("gc"), GCBatchSize: 10})
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
	var tags int
	if err := server.Pool().QueryRow(ctx, `SELECT count(*) FROM fxcache_tags WHERE namespace = $1`, s.Namespace()).Scan(&tags); err != nil {
		t.Fatal(err)
	}
	if tags != 1 {
		t.Fatalf("%d tag rows left, want 1 (the cascade removes the collected entries' tags)", tags)
	}
}

// The garbage collector's query can use the expiry index (no full scan needed).
func TestPostgresGarbageUsesIndex(t *testing.T) {
	ctx := t.Context()
	open(t, pgstore.Options{}) // makes sure the schema exists
	tx, err := server.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(ctx, `EXPLAIN DELETE FROM fxcache_entries WHERE (namespace, key) IN (
		SELECT namespace, key FROM fxcache_entries
		WHERE namespace = 'x' AND expires_at <= now()
		ORDER BY expires_at LIMIT 1000 FOR UPDATE SKIP LOCKED)`)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if text := strings.Join(plan, "\n"); !strings.Contains(text, "fxcache_entries_expiry") {
		t.Fatalf("the GC query does not use the expiry index:\n%s", text)
	}
}

// Processes starting together on an empty database create the schema once.
func TestPostgresSchemaConcurrentStart(t *testing.T) {
	ctx := t.Context()
	dsn, err := server.CreateDatabase(ctx, "concurrent_start")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			s, err := pgstore.Open(ctx, dsn, pgstore.Options{Namespace: fmt.Sprintf("n%d", i), StatementTimeout: 10 * time.Second})
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			if _, err := s.Set(ctx, cache.Item{Key: "k", Value: []byte("v")}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var v int
	if err := conn.QueryRow(ctx, `SELECT version FROM fxcache_schema`).Scan(&v); err != nil || v != 1 {
		t.Fatalf("schema version = %d, %v; want 1", v, err)
	}
}

// A schema newer than this release is refused with a clear message.
func TestPostgresSchemaTooNew(t *testing.T) {
	ctx := t.Context()
	dsn, err := server.CreateDatabase(ctx, "too_new")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `CREATE TABLE fxcache_schema (id int PRIMARY KEY, version int NOT NULL);
		INSERT INTO fxcache_schema VALUES (1, 99)`); err != nil {
		t.Fatal(err)
	}
	_, err = pgstore.Open(ctx, dsn, pgstore.Options{})
	if err == nil || !strings.Contains(err.Error(), "schema version 99") {
		t.Fatalf("Open on a newer schema: %v", err)
	}
}

func TestPostgresOpenErrors(t *testing.T) {
	ctx := t.Context()
	_, err := pgstore.Open(ctx, "postgres://bad host:5432/x%zz", pgstore.Options{})
	if err == nil || !strings.Contains(err.Error(), "cannot parse the connection string") {
		t.Fatalf("Open with a malformed DSN: %v", err)
	}
	_, err = pgstore.Open(ctx, server.DSN(), pgstore.Options{Namespace: "bad ns"})
	if !errors.Is(err, cache.ErrInvalidKey) {
		t.Fatalf("Open with a bad namespace: %v", err)
	}
	// Nothing listens on this port (the server's port plus one is not ours, so
	// use a port taken a moment ago and released).
	start := time.Now()
	_, err = pgstore.Open(ctx, "postgres://postgres@127.0.0.1:1/x?sslmode=disable", pgstore.Options{StatementTimeout: time.Second})
	if !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("Open on a closed port: %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Open on a closed port took %v", took)
	}
}

func TestModule(t *testing.T) {
	var b cache.Backend
	app := fxtest.New(t,
		pgstore.Module(server.DSN(), pgstore.Options{Namespace: "module"}),
		fx.Populate(&b),
	)
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

func TestModuleBadDSN(t *testing.T) {
	app := fx.New(
		fx.NopLogger,
		pgstore.Module("postgres://user@host:notaport/db", pgstore.Options{}),
		fx.Invoke(func(cache.Backend) {}),
	)
	err := app.Err()
	if err == nil {
		err = app.Start(t.Context())
	}
	if err == nil || !strings.Contains(err.Error(), "pgstore: cannot parse the connection string") {
		t.Fatalf("app with a malformed DSN: %v", err)
	}
}

func TestModuleDatabaseDown(t *testing.T) {
	app := fx.New(
		fx.NopLogger,
		pgstore.Module("postgres://postgres@127.0.0.1:1/x?sslmode=disable", pgstore.Options{StatementTimeout: time.Second}),
		fx.Invoke(func(cache.Backend) {}),
	)
	if err := app.Err(); err != nil {
		t.Fatal(err)
	}
	err := app.Start(t.Context())
	if !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("start with the database down: %v, want ErrUnavailable", err)
	}
}

func first[V any](seq func(func(V, error) bool)) error {
	for _, err := range seq {
		if err != nil {
			return err
		}
	}
	return nil
}
