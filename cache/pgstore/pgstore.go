// Package pgstore is the PostgreSQL [cache.Backend], built on pgx/v5's connection
// pool.
//
// Entries live in one table keyed by (namespace, key) with their value, version
// and expiry time; tags in a second table that references the entries (a foreign
// key with ON DELETE CASCADE, so a tag never outlives its entry); locks in a third
// with an owner token and an expiry time. The schema is created on first use,
// under an advisory lock so that processes starting together do not race, and its
// version is recorded in the table fxcache_schema so that a later release can
// migrate it. Versions come from one sequence: never 0, never reused.
//
// Time is the database server's clock (now()), so several application servers
// agree on what has expired and on who holds a lock.
//
// Every statement runs under a deadline (Options.StatementTimeout, default 2 s). A
// database that is down or does not answer in time gives an error matching
// [cache.ErrUnavailable]; the pool dials again on the next call, so the store
// recovers by itself once the database is back.
//
// A write is one round trip: its statements (the entry, then its tags) go to the
// server as one pipelined batch that runs as one implicit transaction.
//
// Locks are rows, not advisory locks: advisory locks belong to a database session
// and have no lifetime, while a cache lock must expire on its own when its owner
// dies and must be releasable from any connection of the pool.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/internal/sqlcommon"
)

// Options configure a [Store]. The zero value is usable.
type Options struct {
	// Namespace is the store's namespace (default "default").
	Namespace string
	// MaxValueSize is the largest value accepted (default cache.DefaultMaxValueSize).
	MaxValueSize int
	// StatementTimeout bounds every call's time in the database, including waiting
	// for a connection (default 2 s). The caller's context may end it sooner.
	StatementTimeout time.Duration
	// GCBatchSize is how many expired entries one DELETE of CollectGarbage removes
	// (default 1000).
	GCBatchSize int
	// PageSize is how many rows one query of All and Tagged reads (default 500).
	PageSize int
	// Logger receives the store's rare log lines (default slog.Default()).
	Logger *slog.Logger
}

func (o Options) config() (sqlcommon.Config, error) {
	return sqlcommon.Config{
		Namespace:        o.Namespace,
		MaxValueSize:     o.MaxValueSize,
		StatementTimeout: o.StatementTimeout,
		GCBatchSize:      o.GCBatchSize,
		PageSize:         o.PageSize,
		Logger:           o.Logger,
	}.Normalize()
}

// cancelGrace is how long a cancelled statement's connection waits for the
// server's answer to the cancel request before it is dropped.
const cancelGrace = 500 * time.Millisecond

// Store is one namespace of a PostgreSQL cache. It is safe for concurrent use.
type Store struct {
	sh   *shared
	ns   string
	root bool // Close closes the shared resources only on the root
}

// shared is what a Store and its Subs have in common.
type shared struct {
	pool    *pgxpool.Pool
	ownPool bool
	cfg     sqlcommon.Config
	closed  atomic.Bool
	ready   atomic.Bool   // the schema has been checked
	migrate chan struct{} // a one-slot semaphore around the schema check
}

var _ cache.Backend = (*Store)(nil)

// New returns a store on pool, creating the schema when it is missing. The pool
// stays the caller's: Close does not close it.
func New(ctx context.Context, pool *pgxpool.Pool, o Options) (*Store, error) {
	if pool == nil {
		return nil, errors.New("pgstore: nil pool")
	}
	s, err := newStore(pool, false, o)
	if err != nil {
		return nil, err
	}
	if err := s.Ready(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Open connects to the database at dsn (a postgres:// URL or a key=value
// connection string, see pgxpool.ParseConfig), creating the schema when it is
// missing. Close closes the pool.
func Open(ctx context.Context, dsn string, o Options) (*Store, error) {
	s, err := open(dsn, o)
	if err != nil {
		return nil, err
	}
	if err := s.Ready(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// open parses dsn and creates the pool without connecting.
func open(dsn string, o Options) (*Store, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: cannot parse the connection string: %w", err)
	}
	cfg, err := o.config()
	if err != nil { // fail before creating the pool
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	params := pc.ConnConfig.RuntimeParams
	if _, ok := params["application_name"]; !ok {
		params["application_name"] = "fxsession"
	}
	// The server gives up too, so a statement the client stopped waiting for
	// does not complete later (unless the DSN says otherwise).
	if _, ok := params["statement_timeout"]; !ok {
		params["statement_timeout"] = strconv.FormatInt(cfg.StatementTimeout.Milliseconds(), 10)
	}
	// When a call's deadline passes, ask the server to cancel the statement
	// (instead of only dropping the connection, which leaves the statement
	// running to completion); give up on the connection half a second later.
	pc.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: cancelGrace}
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	s, err := newStore(pool, true, o)
	if err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

func newStore(pool *pgxpool.Pool, own bool, o Options) (*Store, error) {
	cfg, err := o.config()
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	sh := &shared{pool: pool, ownPool: own, cfg: cfg, migrate: make(chan struct{}, 1)}
	return &Store{sh: sh, ns: cfg.Namespace, root: true}, nil
}

// Ready creates the schema if it is missing and checks its version. Every call
// does it on first use; calling it at start-up finds a misconfiguration early.
func (s *Store) Ready(ctx context.Context) error {
	if s.sh.ready.Load() {
		return nil
	}
	if s.sh.closed.Load() {
		return fmt.Errorf("pgstore: %w", cache.ErrClosed)
	}
	ctx, cancel := context.WithTimeout(ctx, s.sh.cfg.StatementTimeout)
	defer cancel()
	return s.sh.ensure(ctx)
}

// ensure runs the schema check once; callers that fail leave it to the next call.
func (sh *shared) ensure(ctx context.Context) error {
	select {
	case sh.migrate <- struct{}{}:
	case <-ctx.Done():
		return cache.Unavailable("pgstore: schema", ctx.Err())
	}
	defer func() { <-sh.migrate }()
	if sh.ready.Load() {
		return nil
	}
	if err := migrate(ctx, sh.pool); err != nil {
		if isUnavailable(err) {
			return cache.Unavailable("pgstore: schema", err)
		}
		return fmt.Errorf("pgstore: schema: %w", err)
	}
	sh.ready.Store(true)
	return nil
}

// Pool is the connection pool the store uses.
func (s *Store) Pool() *pgxpool.Pool { return s.sh.pool }

// Namespace implements [cache.Backend].
func (s *Store) Namespace() string { return s.ns }

// Sub implements [cache.Backend].
func (s *Store) Sub(name string) (cache.Backend, error) {
	ns, err := cache.JoinNamespace(s.ns, name)
	if err != nil {
		return nil, err
	}
	return &Store{sh: s.sh, ns: ns}, nil
}

// Close implements [cache.Backend]: closing the root closes the pool when Open
// created it; closing a Sub does nothing. A second Close returns nil.
func (s *Store) Close() error {
	if !s.root {
		return nil
	}
	if s.sh.closed.Swap(true) {
		return nil
	}
	if s.sh.ownPool {
		s.sh.pool.Close()
	}
	return nil
}

// call prepares a call: it refuses a closed store, bounds ctx by the statement
// timeout and makes sure the schema exists.
func (s *Store) call(ctx context.Context, op string) (context.Context, context.CancelFunc, error) {
	if s.sh.closed.Load() {
		return nil, nil, fmt.Errorf("pgstore: %s: %w", op, cache.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, cache.Unavailable("pgstore: "+op, err)
	}
	cctx, cancel := context.WithTimeout(ctx, s.sh.cfg.StatementTimeout)
	if !s.sh.ready.Load() {
		if err := s.sh.ensure(cctx); err != nil {
			cancel()
			return nil, nil, err
		}
	}
	return cctx, cancel, nil
}

// fail wraps a database error of op. cctx is the call's context: when it has
// ended (the caller cancelled, or the statement timeout passed), its error is
// part of the result.
func (s *Store) fail(cctx context.Context, op string, err error) error {
	if cerr := cctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w (%w)", cerr, err)
	}
	if s.sh.closed.Load() && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("pgstore: %s: %w: %w", op, cache.ErrClosed, err)
	}
	if isUnavailable(err) {
		return cache.Unavailable("pgstore: "+op, err)
	}
	return fmt.Errorf("pgstore: %s: %w", op, err)
}

// isUnavailable tells errors of reaching the database (connection refused or
// lost, server shutting down, too many connections, timeouts) from errors the
// database reports about a statement.
func isUnavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || pgconn.Timeout(err) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:2] {
		case "08", // connection exception
			"53", // insufficient resources (too many connections, disk full)
			"57", // operator intervention (shutdown, statement timeout, cancel)
			"58", // system error (I/O)
			"40": // deadlock or serialization failure left after retries
			return true
		}
		return false
	}
	// Anything else from pgx is the connection: dial failures, a closed socket,
	// an unexpected EOF, a closed pool.
	return true
}

// retryable reports a deadlock or serialization failure: the transaction was
// rolled back as a whole and can simply run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

// retry runs f until it succeeds, fails otherwise than retryably, or three
// attempts were made.
func retry(f func() error) error {
	var err error
	for range 3 {
		if err = f(); err == nil || !retryable(err) {
			return err
		}
	}
	return err
}

// expiry is the SQL for "now plus $n microseconds, or NULL when $n is 0".
func expiry(n int) string {
	p := "$" + strconv.Itoa(n) + "::bigint"
	return "CASE WHEN " + p + " > 0 THEN now() + " + p + " * interval '1 microsecond' END"
}

const live = `(expires_at IS NULL OR expires_at > now())`

var (
	qGet = `SELECT e.value, e.version, e.expires_at,
		ARRAY(SELECT t.tag FROM fxcache_tags t WHERE t.namespace = e.namespace AND t.key = e.key ORDER BY t.tag)
		FROM fxcache_entries e
		WHERE e.namespace = $1 AND e.key = $2 AND (e.expires_at IS NULL OR e.expires_at > now())`
	// One primary-key probe per key, whatever the planner's statistics say about
	// the namespace's size: the LIMIT keeps the lateral subquery from being
	// flattened into a join that might scan the namespace.
	qGetMany = `SELECT e.key, e.value, e.version, e.expires_at, e.tags
		FROM unnest($2::text[]) AS k(key)
		CROSS JOIN LATERAL (
			SELECT x.key, x.value, x.version, x.expires_at,
				ARRAY(SELECT t.tag FROM fxcache_tags t WHERE t.namespace = x.namespace AND t.key = x.key ORDER BY t.tag) AS tags
			FROM fxcache_entries x
			WHERE x.namespace = $1 AND x.key = k.key AND (x.expires_at IS NULL OR x.expires_at > now())
			LIMIT 1) AS e`
	qAll = `SELECT e.key, e.value, e.version, e.expires_at,
		ARRAY(SELECT t.tag FROM fxcache_tags t WHERE t.namespace = e.namespace AND t.key = e.key ORDER BY t.tag)
		FROM fxcache_entries e
		WHERE e.namespace = $1 AND e.key > $2 AND (e.expires_at IS NULL OR e.expires_at > now())
		ORDER BY e.key LIMIT $3`
	qHas = `SELECT EXISTS (SELECT 1 FROM fxcache_entries
		WHERE namespace = $1 AND key = $2 AND ` + live + `)`

	// A write: the entry first (its row lock orders concurrent writers of one
	// key), then its tags in statements of their own, whose fresh snapshot sees
	// the tags a writer that went before committed.
	qSet = `INSERT INTO fxcache_entries AS e (namespace, key, value, version, expires_at)
		VALUES ($1, $2, $3, nextval('fxcache_version'), ` + expiry(4) + `)
		ON CONFLICT (namespace, key) DO UPDATE
		SET value = EXCLUDED.value, version = EXCLUDED.version, expires_at = EXCLUDED.expires_at
		RETURNING version`
	qTagsPrune = `DELETE FROM fxcache_tags WHERE namespace = $1 AND key = $2 AND tag <> ALL($3::text[])`
	qTagsAdd   = `INSERT INTO fxcache_tags (namespace, tag, key)
		SELECT $1, t, $2 FROM unnest($3::text[]) AS t ON CONFLICT DO NOTHING`

	// CompareAndSet: the batch first draws a version, writes the entry with it
	// only if the expected version matches, and touches the tags only if the
	// entry now carries the drawn version.
	qNextVersion = `SELECT nextval('fxcache_version')`
	qCASCreate   = `INSERT INTO fxcache_entries AS e (namespace, key, value, version, expires_at)
		VALUES ($1, $2, $3, currval('fxcache_version'), ` + expiry(4) + `)
		ON CONFLICT (namespace, key) DO UPDATE
		SET value = EXCLUDED.value, version = EXCLUDED.version, expires_at = EXCLUDED.expires_at
		WHERE e.expires_at IS NOT NULL AND e.expires_at <= now()
		RETURNING version`
	qCASUpdate = `UPDATE fxcache_entries
		SET value = $3, version = currval('fxcache_version'), expires_at = ` + expiry(4) + `
		WHERE namespace = $1 AND key = $2 AND version = $5 AND ` + live + `
		RETURNING version`
	casWritten    = ` EXISTS (SELECT 1 FROM fxcache_entries WHERE namespace = $1 AND key = $2 AND version = currval('fxcache_version'))`
	qCASTagsPrune = qTagsPrune + ` AND` + casWritten
	qCASTagsAdd   = `INSERT INTO fxcache_tags (namespace, tag, key)
		SELECT $1, t, $2 FROM unnest($3::text[]) AS t WHERE` + casWritten + ` ON CONFLICT DO NOTHING`

	// SetMany: rows are written in key order, so concurrent SetMany calls lock
	// them in the same order and do not deadlock.
	qSetMany = `INSERT INTO fxcache_entries AS e (namespace, key, value, version, expires_at)
		SELECT $1, u.k, u.v, nextval('fxcache_version'),
			CASE WHEN u.t > 0 THEN now() + u.t * interval '1 microsecond' END
		FROM unnest($2::text[], $3::bytea[], $4::bigint[]) WITH ORDINALITY AS u(k, v, t, n)
		ORDER BY u.n
		ON CONFLICT (namespace, key) DO UPDATE
		SET value = EXCLUDED.value, version = EXCLUDED.version, expires_at = EXCLUDED.expires_at`
	qSetManyTagsClear = `DELETE FROM fxcache_tags WHERE namespace = $1 AND key = ANY($2::text[])`
	qSetManyTagsAdd   = `INSERT INTO fxcache_tags (namespace, tag, key)
		SELECT $1, u.t, u.k FROM unnest($2::text[], $3::text[]) AS u(k, t) ON CONFLICT DO NOTHING`

	qDelete = `DELETE FROM fxcache_entries WHERE namespace = $1 AND key = $2
		RETURNING ` + live
	qFlushTags    = `DELETE FROM fxcache_tags WHERE namespace = $1`
	qFlushEntries = `DELETE FROM fxcache_entries WHERE namespace = $1`
	qFlushByTag   = `WITH d AS (
			DELETE FROM fxcache_entries e USING fxcache_tags t
			WHERE t.namespace = $1 AND t.tag = $2 AND e.namespace = t.namespace AND e.key = t.key
			RETURNING e.expires_at)
		SELECT count(*) FROM d WHERE ` + live
	qTagged = `SELECT t.key FROM fxcache_tags t
		JOIN fxcache_entries e ON e.namespace = t.namespace AND e.key = t.key
		WHERE t.namespace = $1 AND t.tag = $2 AND t.key > $3
			AND (e.expires_at IS NULL OR e.expires_at > now())
		ORDER BY t.key LIMIT $4`
	// Bounded batches through the expiry index, oldest first (the ORDER BY makes
	// the index the plan whatever the statistics say); SKIP LOCKED lets
	// collectors of several processes share the work instead of queueing.
	qGC = `DELETE FROM fxcache_entries WHERE (namespace, key) IN (
			SELECT namespace, key FROM fxcache_entries
			WHERE namespace = $1 AND expires_at <= now()
			ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)`
	qGCLocks = `DELETE FROM fxcache_locks WHERE (namespace, name) IN (
			SELECT namespace, name FROM fxcache_locks
			WHERE namespace = $1 AND expires_at <= now()
			LIMIT $2 FOR UPDATE SKIP LOCKED)`

	qLock = `INSERT INTO fxcache_locks AS l (namespace, name, token, expires_at)
		VALUES ($1, $2, $3, now() + $4::bigint * interval '1 microsecond')
		ON CONFLICT (namespace, name) DO UPDATE
		SET token = EXCLUDED.token, expires_at = EXCLUDED.expires_at
		WHERE l.expires_at <= now()
		RETURNING token`
	qUnlock = `DELETE FROM fxcache_locks WHERE namespace = $1 AND name = $2 AND token = $3
		RETURNING expires_at > now()`
)

// entry builds an Entry from scanned columns.
func entry(key string, value []byte, version int64, expires *time.Time, tags []string) cache.Entry {
	e := cache.Entry{Key: key, Value: value, Version: cache.Version(version)}
	if expires != nil {
		e.Expires = *expires
	}
	if len(tags) > 0 {
		e.Tags = tags
	}
	return e
}

// Get implements [cache.Backend].
func (s *Store) Get(ctx context.Context, key string) (cache.Entry, error) {
	if err := cache.ValidateKey(key); err != nil {
		return cache.Entry{}, err
	}
	cctx, cancel, err := s.call(ctx, "get")
	if err != nil {
		return cache.Entry{}, err
	}
	defer cancel()
	var (
		value   []byte
		version int64
		expires *time.Time
		tags    []string
	)
	err = s.sh.pool.QueryRow(cctx, qGet, s.ns, key).Scan(&value, &version, &expires, &tags)
	if errors.Is(err, pgx.ErrNoRows) {
		return cache.Entry{}, fmt.Errorf("pgstore: get %q: %w", key, cache.ErrNotFound)
	}
	if err != nil {
		return cache.Entry{}, s.fail(cctx, "get", err)
	}
	return entry(key, value, version, expires, tags), nil
}

// GetMany implements [cache.Backend] with one query.
func (s *Store) GetMany(ctx context.Context, keys []string) ([]cache.Entry, error) {
	if err := sqlcommon.ValidateKeys(keys); err != nil {
		return nil, err
	}
	out := make([]cache.Entry, len(keys))
	for i, k := range keys {
		out[i].Key = k
	}
	if len(keys) == 0 {
		return out, nil
	}
	cctx, cancel, err := s.call(ctx, "get many")
	if err != nil {
		return nil, err
	}
	defer cancel()
	rows, err := s.sh.pool.Query(cctx, qGetMany, s.ns, keys)
	if err != nil {
		return nil, s.fail(cctx, "get many", err)
	}
	found := make(map[string]cache.Entry, len(keys))
	var (
		key     string
		value   []byte
		version int64
		expires *time.Time
		tags    []string
	)
	_, err = pgx.ForEachRow(rows, []any{&key, &value, &version, &expires, &tags}, func() error {
		found[key] = entry(key, value, version, expires, tags)
		value, tags = nil, nil
		return nil
	})
	if err != nil {
		return nil, s.fail(cctx, "get many", err)
	}
	for i, k := range keys {
		if e, ok := found[k]; ok {
			out[i] = e
		}
	}
	return out, nil
}

// Has implements [cache.Backend].
func (s *Store) Has(ctx context.Context, key string) (bool, error) {
	if err := cache.ValidateKey(key); err != nil {
		return false, err
	}
	cctx, cancel, err := s.call(ctx, "has")
	if err != nil {
		return false, err
	}
	defer cancel()
	var ok bool
	if err := s.sh.pool.QueryRow(cctx, qHas, s.ns, key).Scan(&ok); err != nil {
		return false, s.fail(cctx, "has", err)
	}
	return ok, nil
}

// Set implements [cache.Backend] in one round trip.
func (s *Store) Set(ctx context.Context, it cache.Item) (cache.Version, error) {
	if err := cache.ValidateItem(it, s.sh.cfg.MaxValueSize); err != nil {
		return 0, err
	}
	cctx, cancel, err := s.call(ctx, "set")
	if err != nil {
		return 0, err
	}
	defer cancel()
	tags := nonNil(sqlcommon.Tags(it.Tags))
	value := nonNilBytes(it.Value)
	var version int64
	err = retry(func() error {
		b := &pgx.Batch{}
		b.Queue(qSet, s.ns, it.Key, value, sqlcommon.Micros(it.TTL)).QueryRow(func(r pgx.Row) error {
			return r.Scan(&version)
		})
		b.Queue(qTagsPrune, s.ns, it.Key, tags)
		if len(tags) > 0 {
			b.Queue(qTagsAdd, s.ns, it.Key, tags)
		}
		return s.sh.pool.SendBatch(cctx, b).Close()
	})
	if err != nil {
		return 0, s.fail(cctx, "set", err)
	}
	return cache.Version(version), nil
}

// SetMany implements [cache.Backend] in one round trip and one transaction: it is
// atomic across keys. When a key is given twice the last item wins.
func (s *Store) SetMany(ctx context.Context, items []cache.Item) error {
	items, err := sqlcommon.Dedupe(items, s.sh.cfg.MaxValueSize)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		return nil
	}
	cctx, cancel, err := s.call(ctx, "set many")
	if err != nil {
		return err
	}
	defer cancel()
	keys := make([]string, len(items))
	values := make([][]byte, len(items))
	ttls := make([]int64, len(items))
	var tagKeys, tagNames []string
	for i, it := range items {
		keys[i], values[i], ttls[i] = it.Key, nonNilBytes(it.Value), sqlcommon.Micros(it.TTL)
		for _, t := range sqlcommon.Tags(it.Tags) {
			tagKeys = append(tagKeys, it.Key)
			tagNames = append(tagNames, t)
		}
	}
	err = retry(func() error {
		b := &pgx.Batch{}
		b.Queue(qSetMany, s.ns, keys, values, ttls)
		b.Queue(qSetManyTagsClear, s.ns, keys)
		if len(tagKeys) > 0 {
			b.Queue(qSetManyTagsAdd, s.ns, tagKeys, tagNames)
		}
		return s.sh.pool.SendBatch(cctx, b).Close()
	})
	if err != nil {
		return s.fail(cctx, "set many", err)
	}
	return nil
}

// CompareAndSet implements [cache.Backend] in one round trip: the write happens
// only when the stored version is expected (UPDATE ... WHERE version = expected;
// for 0 an INSERT that replaces only an expired entry).
func (s *Store) CompareAndSet(ctx context.Context, it cache.Item, expected cache.Version) (cache.Version, error) {
	if err := cache.ValidateItem(it, s.sh.cfg.MaxValueSize); err != nil {
		return 0, err
	}
	cctx, cancel, err := s.call(ctx, "compare and set")
	if err != nil {
		return 0, err
	}
	defer cancel()
	tags := nonNil(sqlcommon.Tags(it.Tags))
	value := nonNilBytes(it.Value)
	var version int64
	var written bool
	err = retry(func() error {
		written = false
		b := &pgx.Batch{}
		b.Queue(qNextVersion)
		row := func(r pgx.Row) error {
			err := r.Scan(&version)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			written = err == nil
			return err
		}
		if expected == 0 {
			b.Queue(qCASCreate, s.ns, it.Key, value, sqlcommon.Micros(it.TTL)).QueryRow(row)
		} else {
			b.Queue(qCASUpdate, s.ns, it.Key, value, sqlcommon.Micros(it.TTL), int64(expected)).QueryRow(row)
		}
		b.Queue(qCASTagsPrune, s.ns, it.Key, tags)
		if len(tags) > 0 {
			b.Queue(qCASTagsAdd, s.ns, it.Key, tags)
		}
		return s.sh.pool.SendBatch(cctx, b).Close()
	})
	if err != nil {
		return 0, s.fail(cctx, "compare and set", err)
	}
	if !written {
		return 0, fmt.Errorf("pgstore: compare and set %q against version %d: %w", it.Key, expected, cache.ErrConflict)
	}
	return cache.Version(version), nil
}

// Delete implements [cache.Backend]. It reports false for an entry that had
// already expired (and removes it).
func (s *Store) Delete(ctx context.Context, key string) (bool, error) {
	if err := cache.ValidateKey(key); err != nil {
		return false, err
	}
	cctx, cancel, err := s.call(ctx, "delete")
	if err != nil {
		return false, err
	}
	defer cancel()
	var wasLive bool
	err = retry(func() error { return s.sh.pool.QueryRow(cctx, qDelete, s.ns, key).Scan(&wasLive) })
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, s.fail(cctx, "delete", err)
	}
	return wasLive, nil
}

// Flush implements [cache.Backend].
func (s *Store) Flush(ctx context.Context) error {
	cctx, cancel, err := s.call(ctx, "flush")
	if err != nil {
		return err
	}
	defer cancel()
	err = retry(func() error {
		b := &pgx.Batch{}
		b.Queue(qFlushTags, s.ns)
		b.Queue(qFlushEntries, s.ns)
		return s.sh.pool.SendBatch(cctx, b).Close()
	})
	if err != nil {
		return s.fail(cctx, "flush", err)
	}
	return nil
}

// FlushByTag implements [cache.Backend]; the count leaves out entries that had
// already expired (they are removed too).
func (s *Store) FlushByTag(ctx context.Context, tag string) (int, error) {
	if err := cache.ValidateKey(tag); err != nil {
		return 0, fmt.Errorf("tag: %w", err)
	}
	cctx, cancel, err := s.call(ctx, "flush by tag")
	if err != nil {
		return 0, err
	}
	defer cancel()
	var n int64
	err = retry(func() error { return s.sh.pool.QueryRow(cctx, qFlushByTag, s.ns, tag).Scan(&n) })
	if err != nil {
		return 0, s.fail(cctx, "flush by tag", err)
	}
	return int(n), nil
}

// Tagged implements [cache.Backend], in pages of Options.PageSize keys.
func (s *Store) Tagged(ctx context.Context, tag string) iter.Seq2[string, error] {
	if err := cache.ValidateKey(tag); err != nil {
		return func(yield func(string, error) bool) { yield("", fmt.Errorf("tag: %w", err)) }
	}
	size := s.sh.cfg.PageSize
	return sqlcommon.Pages(ctx, size, func(ctx context.Context, after string) ([]string, string, error) {
		cctx, cancel, err := s.call(ctx, "tagged")
		if err != nil {
			return nil, "", err
		}
		defer cancel()
		rows, err := s.sh.pool.Query(cctx, qTagged, s.ns, tag, after, size)
		if err != nil {
			return nil, "", s.fail(cctx, "tagged", err)
		}
		ks, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, "", s.fail(cctx, "tagged", err)
		}
		if len(ks) == 0 {
			return nil, "", nil
		}
		return ks, ks[len(ks)-1], nil
	})
}

// All implements [cache.Backend] by keyset pagination in key order, in pages of
// Options.PageSize entries; no connection is held while the caller's loop runs.
func (s *Store) All(ctx context.Context) iter.Seq2[cache.Entry, error] {
	size := s.sh.cfg.PageSize
	return sqlcommon.Pages(ctx, size, func(ctx context.Context, after string) ([]cache.Entry, string, error) {
		cctx, cancel, err := s.call(ctx, "all")
		if err != nil {
			return nil, "", err
		}
		defer cancel()
		rows, err := s.sh.pool.Query(cctx, qAll, s.ns, after, size)
		if err != nil {
			return nil, "", s.fail(cctx, "all", err)
		}
		page := make([]cache.Entry, 0, size)
		var (
			key     string
			value   []byte
			version int64
			expires *time.Time
			tags    []string
		)
		_, err = pgx.ForEachRow(rows, []any{&key, &value, &version, &expires, &tags}, func() error {
			page = append(page, entry(key, value, version, expires, tags))
			value, tags = nil, nil
			return nil
		})
		if err != nil {
			return nil, "", s.fail(cctx, "all", err)
		}
		if len(page) == 0 {
			return nil, "", nil
		}
		return page, page[len(page)-1].Key, nil
	})
}

// CollectGarbage implements [cache.Backend]: it deletes expired entries of this
// namespace in batches of Options.GCBatchSize through the expiry index, each
// batch its own statement, until none is left; then expired locks.
func (s *Store) CollectGarbage(ctx context.Context) (int, error) {
	total := 0
	for {
		cctx, cancel, err := s.call(ctx, "collect garbage")
		if err != nil {
			return total, err
		}
		tag, err := s.sh.pool.Exec(cctx, qGC, s.ns, s.sh.cfg.GCBatchSize)
		if err != nil {
			err = s.fail(cctx, "collect garbage", err)
			cancel()
			return total, err
		}
		cancel()
		n := int(tag.RowsAffected())
		total += n
		if n < s.sh.cfg.GCBatchSize {
			break
		}
	}
	cctx, cancel, err := s.call(ctx, "collect garbage")
	if err != nil {
		return total, err
	}
	defer cancel()
	if _, err := s.sh.pool.Exec(cctx, qGCLocks, s.ns, s.sh.cfg.GCBatchSize); err != nil {
		return total, s.fail(cctx, "collect garbage", err)
	}
	return total, nil
}

// Lock implements [cache.Backend] with a row in fxcache_locks: taken when absent
// or expired, by the database clock.
func (s *Store) Lock(ctx context.Context, name string, ttl time.Duration) (string, error) {
	if err := sqlcommon.ValidateLock(name, ttl); err != nil {
		return "", err
	}
	cctx, cancel, err := s.call(ctx, "lock")
	if err != nil {
		return "", err
	}
	defer cancel()
	token := sqlcommon.Token()
	var got string
	err = retry(func() error {
		return s.sh.pool.QueryRow(cctx, qLock, s.ns, name, token, sqlcommon.Micros(ttl)).Scan(&got)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("pgstore: lock %q: %w", name, cache.ErrLocked)
	}
	if err != nil {
		return "", s.fail(cctx, "lock", err)
	}
	return got, nil
}

// Unlock implements [cache.Backend]. It removes the lock when token owns it and
// reports whether the lock was still held (unexpired) at that moment.
func (s *Store) Unlock(ctx context.Context, name, token string) (bool, error) {
	if err := cache.ValidateKey(name); err != nil {
		return false, fmt.Errorf("lock: %w", err)
	}
	cctx, cancel, err := s.call(ctx, "unlock")
	if err != nil {
		return false, err
	}
	defer cancel()
	var held bool
	err = retry(func() error { return s.sh.pool.QueryRow(cctx, qUnlock, s.ns, name, token).Scan(&held) })
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, s.fail(cctx, "unlock", err)
	}
	return held, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// nonNilBytes turns a nil value into an empty one: pgx sends nil as NULL.
func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
