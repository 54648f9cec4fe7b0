package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/internal/sqlcommon/sqltest"
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

// suiteOptions: lifetimes long enough that a loaded machine writes a check's
// records before they expire; a batch size that the iteration checks cross
// several times with few records.
var suiteOptions = cachetest.Options{Parallel: true, Many: 250}

// TestConformance gives statements 10 s instead of the default 2 s: the suite
// checks what the store does, not how fast, and its 5,000-field writes ran
// past 2 s with the other packages' tests and two busy loops on two cores.
func TestConformance(t *testing.T) {
	cachetest.Run(t, "postgres", func(tb testing.TB, ns string) cache.Store {
		return open(tb, pgstore.Options{Namespace: ns, BatchSize: 50, StatementTimeout: 10 * time.Second})
	}, suiteOptions)
}

func BenchmarkPostgres(b *testing.B) {
	cachetest.Bench(b, func(tb testing.TB, ns string) cache.Store {
		return open(tb, pgstore.Options{Namespace: ns})
	})
}

// roundTrips counts what a pool sends: statements and batches (through pgx's
// tracer) and the client's writes to the socket (each one a request the client
// then waits for: a round trip, whatever pgx does inside).
type roundTrips struct {
	statements, batches, prepares, writes atomic.Int64
}

func (c *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.statements.Add(1)
	return ctx
}
func (c *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.batches.Add(1)
	return ctx
}
func (c *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (c *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}
func (c *roundTrips) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	c.prepares.Add(1)
	return ctx
}
func (c *roundTrips) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}

func (c *roundTrips) reset() {
	c.statements.Store(0)
	c.batches.Store(0)
	c.prepares.Store(0)
	c.writes.Store(0)
}

func (c *roundTrips) String() string {
	return fmt.Sprintf("%d statements, %d batches, %d prepares, %d socket writes",
		c.statements.Load(), c.batches.Load(), c.prepares.Load(), c.writes.Load())
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(b)
}

// countedStore opens a store on a pool of one connection whose round trips c
// counts.
func countedStore(t *testing.T, c *roundTrips) *pgstore.Store {
	t.Helper()
	pc, err := pgxpool.ParseConfig(server.DSN())
	if err != nil {
		t.Fatal(err)
	}
	pc.MaxConns = 1
	pc.ConnConfig.Tracer = c
	dial := pc.ConnConfig.DialFunc
	pc.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: conn, n: &c.writes}, nil
	}
	pool, err := pgxpool.NewWithConfig(t.Context(), pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := pgstore.New(t.Context(), pool, pgstore.Options{Namespace: cachetest.Namespace("rt")})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A Read, a ReadMany, a Write (of any shape, also a refused one) and a Delete
// each cost one statement and one round trip.
func TestRoundTrips(t *testing.T) {
	var c roundTrips
	s := countedStore(t, &c)
	ctx := t.Context()
	value := []byte("value")
	exp := time.Now().Add(time.Hour)
	full := func(i int) cache.Write {
		return cache.Write{Fields: []cache.FieldWrite{cache.Set("a", value), cache.Remove("b"), cache.SetIf("c", value, 0)},
			AddTags: []string{fmt.Sprintf("t%d", i)}, RemoveTags: []string{fmt.Sprintf("t%d", i-1)}, Expires: exp.Add(time.Duration(i))}
	}
	ops := []struct {
		name string
		do   func(i int) error
	}{
		{"Create", func(i int) error {
			_, err := s.Write(ctx, fmt.Sprintf("k%d", i), cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("a", value), cache.Set("b", value)}, AddTags: []string{"t"}})
			return err
		}},
		{"Read", func(i int) error { _, err := s.Read(ctx, fmt.Sprintf("k%d", i)); return err }},
		{"ReadFields", func(i int) error { _, err := s.Read(ctx, fmt.Sprintf("k%d", i), "a", "b"); return err }},
		{"ReadMany", func(i int) error {
			_, err := s.ReadMany(ctx, []string{fmt.Sprintf("k%d", i), "k0", "none"})
			return err
		}},
		{"Write", func(i int) error { _, err := s.Write(ctx, fmt.Sprintf("k%d", i), full(i)); return err }},
		{"WriteCAS", func(i int) error {
			r, err := s.Read(ctx, fmt.Sprintf("k%d", i), "a")
			if err != nil {
				return err
			}
			f, _ := r.Field("a")
			c.reset() // the Read is not counted
			_, err = s.Write(ctx, r.Key, cache.Write{Fields: []cache.FieldWrite{cache.SetIf("a", value, f.Version)}})
			return err
		}},
		{"WriteRefused", func(i int) error {
			_, err := s.Write(ctx, fmt.Sprintf("k%d", i), cache.Write{Fields: []cache.FieldWrite{cache.SetIf("a", value, 1)}})
			if !errors.Is(err, cache.ErrConflict) {
				return fmt.Errorf("a stale write: %v, want ErrConflict", err)
			}
			return nil
		}},
		{"Delete", func(i int) error { _, err := s.Delete(ctx, fmt.Sprintf("k%d", i)); return err }},
	}
	for _, op := range ops {
		// The first call of each statement prepares it (once per connection).
		if err := op.do(0); err != nil {
			t.Fatalf("%s: %v", op.name, err)
		}
	}
	for _, op := range ops {
		for i := 1; i <= 5; i++ {
			c.reset()
			if err := op.do(i); err != nil {
				t.Fatalf("%s: %v", op.name, err)
			}
			if c.statements.Load() != 1 || c.batches.Load() != 0 || c.prepares.Load() != 0 || c.writes.Load() != 1 {
				t.Fatalf("%s cost %s; want 1 statement and 1 socket write", op.name, &c)
			}
		}
	}
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
	if _, err := s.Write(ctx, "k", cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("f", []byte("before"))}, AddTags: []string{"t"}}); err != nil {
		t.Fatal(err)
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"Read":     func() error { _, err := s.Read(ctx, "k"); return err },
		"ReadMany": func() error { _, err := s.ReadMany(ctx, []string{"k", "j"}); return err },
		"Write": func() error {
			_, err := s.Write(ctx, "k", cache.Write{Fields: []cache.FieldWrite{cache.Set("f", []byte("x"))}})
			return err
		},
		"Delete":         func() error { _, err := s.Delete(ctx, "k"); return err },
		"DeleteMany":     func() error { _, err := s.DeleteMany(ctx, []string{"k", "j"}); return err },
		"Keys":           func() error { return first(s.Keys(ctx)) },
		"Tagged":         func() error { return first(s.Tagged(ctx, "t")) },
		"Flush":          func() error { return s.Flush(ctx) },
		"CollectGarbage": func() error { _, err := s.CollectGarbage(ctx, cache.GCOptions{}); return err },
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
	// A cancelled call is the caller's doing, even with the database down.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Read(cctx, "k"); !errors.Is(err, context.Canceled) || errors.Is(err, cache.ErrUnavailable) {
		t.Errorf("a cancelled Read on a stopped database: %v, want context.Canceled and not ErrUnavailable", err)
	}

	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	// The pool may hand out one more broken connection; within a few calls the
	// store answers again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := s.Read(ctx, "k")
		if err == nil {
			if f, _ := r.Field("f"); string(f.Value) != "before" {
				t.Fatalf("after restart: %q", f.Value)
			}
			break
		}
		if !errors.Is(err, cache.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("no recovery after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		_, err := s.Write(ctx, "k", cache.Write{Fields: []cache.FieldWrite{cache.Set("f", []byte("after"))}})
		if err == nil {
			break
		}
		if !errors.Is(err, cache.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("no recovery after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A Write that waits on a row lock longer than StatementTimeout gives up with
// ErrUnavailable instead of hanging, and the server cancels it: it does not
// complete later. Reads do not wait for the lock. The timeout (2 s) is long
// enough that a loaded machine does not fail the statements that must succeed.
func TestPostgresStatementTimeout(t *testing.T) {
	const timeout = 2 * time.Second
	ctx := t.Context()
	ns := cachetest.Namespace("slow")
	s := open(t, pgstore.Options{Namespace: ns, StatementTimeout: timeout})
	if _, err := s.Write(ctx, "k", cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("f", []byte("v"))}}); err != nil {
		t.Fatal(err)
	}
	tx, err := server.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SELECT 1 FROM fxcache_records WHERE namespace = $1 AND key = 'k' FOR UPDATE`, ns); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.Write(ctx, "k", cache.Write{Fields: []cache.FieldWrite{cache.Set("f", []byte("blocked"))}})
	took := time.Since(start)
	if !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("Write on a locked record: %v, want ErrUnavailable", err)
	}
	if took > 4*timeout {
		t.Fatalf("Write on a locked record took %v with a %v statement timeout", took, timeout)
	}
	if _, err := s.Read(ctx, "k"); err != nil {
		t.Fatalf("Read of a locked record: %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	r, err := s.Read(ctx, "k")
	if f, _ := r.Field("f"); err != nil || string(f.Value) != "v" {
		t.Fatalf("after the timeout: %q, %v (the timed-out write went through)", f.Value, err)
	}
}

// rows counts a table's rows of a namespace.
func rows(t *testing.T, table, ns string) int {
	var n int
	if err := server.Pool().QueryRow(t.Context(), `SELECT count(*) FROM `+table+` WHERE namespace = $1`, ns).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Two handles on one database (two processes, each with its own pool) collect
// at once: every expired record is reported once, with its fields and tags.
func TestCollectTwoHandles(t *testing.T) {
	ns := cachetest.Namespace("gc2")
	sqltest.CollectTwoHandles(t, open(t, pgstore.Options{Namespace: ns}), open(t, pgstore.Options{Namespace: ns}), rows)
}

// A record's fields and tags go with it, whatever removes it.
func TestCascade(t *testing.T) {
	sqltest.Cascade(t, open(t, pgstore.Options{Namespace: cachetest.Namespace("cascade")}), rows)
}

// The statements that must stay cheap in a large namespace use their indexes,
// as custom plans and as the generic plans the server may switch a prepared
// statement to.
func TestPlans(t *testing.T) {
	ctx := t.Context()
	ns := cachetest.Namespace("plans")
	open(t, pgstore.Options{Namespace: ns}) // the schema
	// A namespace of 3,000 sessions, a third of them expiring, each with two
	// fields, tagged with its user and one tag they all have (written by SQL:
	// the store would take seconds under -race).
	for _, q := range []string{
		`INSERT INTO fxcache_records (namespace, key, version, expires_at, tags)
			SELECT $1, 's' || lpad(i::text, 5, '0'), i + 1, CASE WHEN i % 3 = 0 THEN now() + interval '1 hour' END,
				ARRAY['all', 'user:' || i]
			FROM generate_series(0, 2999) AS i`,
		`INSERT INTO fxcache_fields (namespace, key, name, version, value)
			SELECT namespace, key, f, version, 'value'::bytea FROM fxcache_records, unnest(ARRAY['m', 'o']) AS f
			WHERE namespace = $1`,
		`INSERT INTO fxcache_tags (namespace, tag, key)
			SELECT namespace, t, key FROM fxcache_records, unnest(tags) AS t WHERE namespace = $1`,
	} {
		if _, err := server.Pool().Exec(ctx, q, ns); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := server.Pool().Exec(ctx, `ANALYZE fxcache_records; ANALYZE fxcache_fields; ANALYZE fxcache_tags`); err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		name, sql, index string
		args             []any
	}{
		{"collect", pgstore.QueryCollect, "fxcache_records_expiry", []any{ns, nil, 1000, []string{}}},
		{"read", pgstore.QueryRead, "fxcache_fields_pkey", []any{ns, "s00001", []string{}}},
		{"read fields", pgstore.QueryRead, "fxcache_fields_pkey", []any{ns, "s00001", []string{"m"}}},
		{"read many", pgstore.QueryReadMany, "fxcache_fields_pkey", []any{ns, []string{"s00001", "s00002", "s00003"}, []string{"m"}}},
		{"keys", pgstore.QueryKeys, "fxcache_records_pkey", []any{ns, "s01000", 500}},
		{"tagged", pgstore.QueryTagged, "fxcache_tags_pkey", []any{ns, "user:7", "", 500}},
	} {
		for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
			t.Run(q.name+"/"+mode, func(t *testing.T) {
				tx, err := server.Pool().Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Rollback(context.Background())
				if _, err := tx.Exec(ctx, `SET LOCAL plan_cache_mode = `+mode+`; PREPARE fxplan AS `+q.sql); err != nil {
					t.Fatal(err)
				}
				defer tx.Exec(context.Background(), `DEALLOCATE fxplan`)
				rows, err := tx.Query(ctx, `EXPLAIN EXECUTE fxplan(`+literals(q.args)+`)`, pgx.QueryExecModeSimpleProtocol)
				if err != nil {
					t.Fatal(err)
				}
				plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil {
					t.Fatal(err)
				}
				text := strings.Join(plan, "\n")
				if !strings.Contains(text, q.index) || strings.Contains(text, "Seq Scan") {
					t.Fatalf("the %s statement does not use %s:\n%s", q.name, q.index, text)
				}
				// Every join probes an index per row: no hash or merge join
				// walks a table.
				if joins.MatchString(text) {
					t.Fatalf("the %s statement joins by walking a table:\n%s", q.name, text)
				}
			})
		}
	}
}

var joins = regexp.MustCompile(`(Hash|Merge)( \w+)? Join`)

// literals renders args as SQL literals (they hold no quote).
func literals(args []any) string {
	var out []string
	for _, a := range args {
		switch a := a.(type) {
		case nil:
			out = append(out, "NULL")
		case string:
			out = append(out, "'"+a+"'")
		case int:
			out = append(out, fmt.Sprint(a))
		case []string:
			out = append(out, "'{"+strings.Join(a, ",")+"}'")
		}
	}
	return strings.Join(out, ", ")
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
	if _, err := sub.Write(ctx, "k", cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("f", []byte("v"))}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Read(ctx, "k"); !errors.Is(err, cache.ErrClosed) {
		t.Fatalf("Read on a Sub after Close: %v, want ErrClosed", err)
	}
	if err := server.Pool().Ping(ctx); err != nil {
		t.Fatalf("the caller's pool was closed by the store: %v", err)
	}
	if _, err := pgstore.New(ctx, nil, pgstore.Options{}); err == nil {
		t.Fatal("New with a nil pool succeeded")
	}
}

// Processes starting together on an empty database create the schema once.
func TestSchemaConcurrentStart(t *testing.T) {
	ctx := t.Context()
	dsn, err := server.CreateDatabase(ctx, cachetest.Namespace("start_"))
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
			if _, err := s.Write(ctx, "k", cache.Write{Create: true}); err != nil {
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
	if err := conn.QueryRow(ctx, `SELECT version FROM fxcache_schema`).Scan(&v); err != nil || v != 2 {
		t.Fatalf("schema version = %d, %v; want 2", v, err)
	}
}

// A schema of another version is refused with a clear message.
func TestSchemaOtherVersion(t *testing.T) {
	ctx := t.Context()
	sqltest.OtherSchema(t, func(t *testing.T, statements string) error {
		dsn, err := server.CreateDatabase(ctx, cachetest.Namespace("schema_"))
		if err != nil {
			t.Fatal(err)
		}
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, statements); err != nil {
			t.Fatal(err)
		}
		_, err = pgstore.Open(ctx, dsn, pgstore.Options{})
		return err
	})
}

func TestOpenErrors(t *testing.T) {
	ctx := t.Context()
	_, err := pgstore.Open(ctx, "postgres://bad host:5432/x%zz", pgstore.Options{})
	if err == nil || !strings.Contains(err.Error(), "cannot parse the connection string") {
		t.Fatalf("Open with a malformed DSN: %v", err)
	}
	_, err = pgstore.Open(ctx, server.DSN(), pgstore.Options{Namespace: "bad ns"})
	if !errors.Is(err, cache.ErrInvalidKey) {
		t.Fatalf("Open with a bad namespace: %v", err)
	}
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
	var st cache.Store
	app := fxtest.New(t,
		pgstore.Module(server.DSN(), pgstore.Options{Namespace: cachetest.Namespace("module")}),
		fx.Populate(&st),
	)
	app.RequireStart()
	ctx := t.Context()
	if _, err := st.Write(ctx, "k", cache.Write{Create: true}); err != nil {
		t.Fatal(err)
	}
	app.RequireStop()
	if _, err := st.Read(ctx, "k"); !errors.Is(err, cache.ErrClosed) {
		t.Fatalf("Read after the app stopped: %v, want ErrClosed", err)
	}
}

func TestModuleBadDSN(t *testing.T) {
	app := fx.New(
		fx.NopLogger,
		pgstore.Module("postgres://user@host:notaport/db", pgstore.Options{}),
		fx.Invoke(func(cache.Store) {}),
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
		fx.Invoke(func(cache.Store) {}),
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
