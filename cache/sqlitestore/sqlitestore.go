// Package sqlitestore is the embedded SQLite [cache.Backend], built on
// modernc.org/sqlite (pure Go, no cgo) through database/sql.
//
// The database is one file (plus SQLite's -wal and -shm files beside it) in WAL
// mode: readers never wait for the writer. The store keeps one writer connection,
// whose transactions are BEGIN IMMEDIATE, so writes in this process queue in Go
// and writes of other processes sharing the file wait on SQLite's lock (up to
// Options.StatementTimeout, the busy timeout) instead of failing; reads use a
// small pool of read-only connections.
//
// The schema is the PostgreSQL store's: entries keyed by (namespace, key) with
// value, version and expiry time (Unix nanoseconds, indexed for garbage
// collection); tags in their own table with a cascading foreign key; locks in a
// third table with owner token and expiry time. It is created on first use and
// its version recorded in fxcache_schema so that a later release can migrate it.
// Versions come from a counter bumped in each write transaction: never 0, never
// reused, also across processes.
//
// Every call runs under a deadline (Options.StatementTimeout, default 2 s); a
// database file that is locked for longer, unreadable or on a full disk gives an
// error matching [cache.ErrUnavailable].
package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/internal/sqlcommon"
)

// Options configure a [Store]. The zero value is usable.
type Options struct {
	// Namespace is the store's namespace (default "default").
	Namespace string
	// MaxValueSize is the largest value accepted (default cache.DefaultMaxValueSize).
	MaxValueSize int
	// StatementTimeout bounds every call, including waiting for the write lock
	// held by another process (SQLite's busy timeout); default 2 s. The caller's
	// context may end it sooner.
	StatementTimeout time.Duration
	// GCBatchSize is how many expired entries one DELETE of CollectGarbage removes
	// (default 1000); each batch is its own short transaction.
	GCBatchSize int
	// PageSize is how many rows one query of All and Tagged reads (default 500).
	PageSize int
	// Readers is the number of read connections (default max(4, GOMAXPROCS)).
	Readers int
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

// Store is one namespace of a SQLite cache. It is safe for concurrent use.
type Store struct {
	sh   *shared
	ns   string
	root bool // Close closes the shared resources only on the root
}

var _ cache.Backend = (*Store)(nil)

// shared is what a Store and its Subs have in common.
type shared struct {
	path    string
	w, r    *sql.DB // one writer connection, a pool of readers
	cfg     sqlcommon.Config
	closed  atomic.Bool
	st      atomic.Pointer[stmts] // set once the schema is there
	migrate chan struct{}         // a one-slot semaphore around the schema check
}

// stmts are the prepared statements of the frequent calls.
type stmts struct {
	get, has, getMany, all, tagged         *sql.Stmt // readers
	bump, upsert, tagsClear, tagAdd, state *sql.Stmt // writer
	del, lock, unlock                      *sql.Stmt // writer
}

// Open opens (creating it when missing) the SQLite database file at path and
// creates the schema when it is missing. The folder is created too.
func Open(ctx context.Context, path string, o Options) (*Store, error) {
	s, err := open(path, o)
	if err != nil {
		return nil, err
	}
	if err := s.Ready(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// open validates the arguments and sets up the connection pools without touching
// the file.
func open(path string, o Options) (*Store, error) {
	cfg, err := o.config()
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlitestore: %q is not a file path (in-memory databases are not supported: use memstore)", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	busy := strconv.FormatInt(cfg.StatementTimeout.Milliseconds(), 10)
	base := "file:" + (&url.URL{Path: abs}).EscapedPath() +
		"?_pragma=busy_timeout(" + busy + ")&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"
	w, err := sql.Open("sqlite", base+"&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	r, err := sql.Open("sqlite", base+"&_pragma=query_only(1)")
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	readers := o.Readers
	if readers <= 0 {
		readers = max(4, runtime.GOMAXPROCS(0))
	}
	r.SetMaxOpenConns(readers)
	r.SetMaxIdleConns(readers)
	r.SetConnMaxLifetime(0)
	r.SetConnMaxIdleTime(0)
	sh := &shared{path: abs, w: w, r: r, cfg: cfg, migrate: make(chan struct{}, 1)}
	return &Store{sh: sh, ns: cfg.Namespace, root: true}, nil
}

// Ready creates the folder, the database and the schema if they are missing,
// checks the schema's version and prepares the statements. Every call does it on
// first use; calling it at start-up finds a misconfiguration early.
func (s *Store) Ready(ctx context.Context) error {
	if s.sh.st.Load() != nil {
		return nil
	}
	if s.sh.closed.Load() {
		return fmt.Errorf("sqlitestore: %w", cache.ErrClosed)
	}
	ctx, cancel := context.WithTimeout(ctx, s.sh.cfg.StatementTimeout)
	defer cancel()
	_, err := s.sh.ensure(ctx)
	return err
}

func (sh *shared) ensure(ctx context.Context) (*stmts, error) {
	select {
	case sh.migrate <- struct{}{}:
	case <-ctx.Done():
		return nil, cache.Unavailable("sqlitestore: schema", ctx.Err())
	}
	defer func() { <-sh.migrate }()
	if st := sh.st.Load(); st != nil {
		return st, nil
	}
	if err := os.MkdirAll(filepath.Dir(sh.path), 0o750); err != nil {
		return nil, cache.Unavailable("sqlitestore: open "+sh.path, err)
	}
	if err := migrate(ctx, sh.w); err != nil {
		return nil, wrap(ctx, "open "+sh.path, err)
	}
	st, err := sh.prepare(ctx)
	if err != nil {
		return nil, wrap(ctx, "prepare", err)
	}
	sh.st.Store(st)
	return st, nil
}

const live = `(expires_at IS NULL OR expires_at > ?)`

func (sh *shared) prepare(ctx context.Context) (_ *stmts, err error) {
	st := &stmts{}
	var done []*sql.Stmt
	defer func() {
		if err != nil {
			for _, p := range done {
				_ = p.Close()
			}
		}
	}()
	for _, p := range []struct {
		db  *sql.DB
		dst **sql.Stmt
		q   string
	}{
		{sh.r, &st.get, `SELECT e.value, e.version, e.expires_at,
			(SELECT group_concat(t.tag, ' ') FROM fxcache_tags t WHERE t.namespace = e.namespace AND t.key = e.key)
			FROM fxcache_entries e
			WHERE e.namespace = ? AND e.key = ? AND (e.expires_at IS NULL OR e.expires_at > ?)`},
		{sh.r, &st.has, `SELECT EXISTS (SELECT 1 FROM fxcache_entries
			WHERE namespace = ? AND key = ? AND ` + live + `)`},
		{sh.r, &st.getMany, `SELECT e.key, e.value, e.version, e.expires_at,
			(SELECT group_concat(t.tag, ' ') FROM fxcache_tags t WHERE t.namespace = e.namespace AND t.key = e.key)
			FROM fxcache_entries e
			WHERE e.namespace = ? AND e.key IN (SELECT value FROM json_each(?))
				AND (e.expires_at IS NULL OR e.expires_at > ?)`},
		{sh.r, &st.all, `SELECT e.key, e.value, e.version, e.expires_at,
			(SELECT group_concat(t.tag, ' ') FROM fxcache_tags t WHERE t.namespace = e.namespace AND t.key = e.key)
			FROM fxcache_entries e
			WHERE e.namespace = ? AND e.key > ? AND (e.expires_at IS NULL OR e.expires_at > ?)
			ORDER BY e.key LIMIT ?`},
		{sh.r, &st.tagged, `SELECT t.key FROM fxcache_tags t
			JOIN fxcache_entries e ON e.namespace = t.namespace AND e.key = t.key
			WHERE t.namespace = ? AND t.tag = ? AND t.key > ?
				AND (e.expires_at IS NULL OR e.expires_at > ?)
			ORDER BY t.key LIMIT ?`},
		{sh.w, &st.bump, `UPDATE fxcache_seq SET v = v + ? WHERE id = 1 RETURNING v`},
		{sh.w, &st.upsert, `INSERT INTO fxcache_entries (namespace, key, value, version, expires_at)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (namespace, key) DO UPDATE
			SET value = excluded.value, version = excluded.version, expires_at = excluded.expires_at`},
		{sh.w, &st.tagsClear, `DELETE FROM fxcache_tags WHERE namespace = ? AND key = ?`},
		{sh.w, &st.tagAdd, `INSERT INTO fxcache_tags (namespace, tag, key) VALUES (?, ?, ?)
			ON CONFLICT DO NOTHING`},
		{sh.w, &st.state, `SELECT version FROM fxcache_entries WHERE namespace = ? AND key = ? AND ` + live},
		{sh.w, &st.del, `DELETE FROM fxcache_entries WHERE namespace = ? AND key = ? RETURNING expires_at`},
		{sh.w, &st.lock, `INSERT INTO fxcache_locks (namespace, name, token, expires_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (namespace, name) DO UPDATE
			SET token = excluded.token, expires_at = excluded.expires_at
			WHERE fxcache_locks.expires_at <= ?
			RETURNING token`},
		{sh.w, &st.unlock, `DELETE FROM fxcache_locks WHERE namespace = ? AND name = ? AND token = ?
			RETURNING expires_at`},
	} {
		stmt, err := p.db.PrepareContext(ctx, p.q)
		if err != nil {
			return nil, err
		}
		done = append(done, stmt)
		*p.dst = stmt
	}
	return st, nil
}

// Path is the database file's absolute path.
func (s *Store) Path() string { return s.sh.path }

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

// Close implements [cache.Backend]: closing the root closes the database;
// closing a Sub does nothing. A second Close returns nil.
func (s *Store) Close() error {
	if !s.root || s.sh.closed.Swap(true) {
		return nil
	}
	// Wait for a schema check in progress, so that its statements are closed too.
	s.sh.migrate <- struct{}{}
	defer func() { <-s.sh.migrate }()
	var errs []error
	if st := s.sh.st.Load(); st != nil {
		for _, p := range []*sql.Stmt{st.get, st.has, st.getMany, st.all, st.tagged,
			st.bump, st.upsert, st.tagsClear, st.tagAdd, st.state, st.del, st.lock, st.unlock} {
			errs = append(errs, p.Close())
		}
	}
	errs = append(errs, s.sh.r.Close(), s.sh.w.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlitestore: close: %w", err)
	}
	return nil
}

// call prepares a call: it refuses a closed store, bounds ctx by the statement
// timeout and makes sure the schema exists.
func (s *Store) call(ctx context.Context, op string) (context.Context, context.CancelFunc, *stmts, error) {
	if s.sh.closed.Load() {
		return nil, nil, nil, fmt.Errorf("sqlitestore: %s: %w", op, cache.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, nil, cache.Unavailable("sqlitestore: "+op, err)
	}
	cctx, cancel := context.WithTimeout(ctx, s.sh.cfg.StatementTimeout)
	st := s.sh.st.Load()
	if st == nil {
		var err error
		if st, err = s.sh.ensure(cctx); err != nil {
			cancel()
			return nil, nil, nil, err
		}
	}
	return cctx, cancel, st, nil
}

// fail wraps a database error of op; see wrap.
func (s *Store) fail(cctx context.Context, op string, err error) error {
	if s.sh.closed.Load() && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("sqlitestore: %s: %w: %w", op, cache.ErrClosed, err)
	}
	return wrap(cctx, op, err)
}

// wrap wraps a database error of op. cctx is the call's context: when it has
// ended (the caller cancelled, or the statement timeout passed), its error is
// part of the result.
func wrap(cctx context.Context, op string, err error) error {
	if cerr := cctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w (%w)", cerr, err)
	}
	if isUnavailable(err) {
		return cache.Unavailable("sqlitestore: "+op, err)
	}
	return fmt.Errorf("sqlitestore: %s: %w", op, err)
}

// isUnavailable tells errors of reaching the database file (locked for too
// long, unreadable, full disk, read-only, interrupted by a deadline) from
// errors about a statement.
func isUnavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, sql.ErrConnDone) {
		return true
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN,
			sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_NOMEM,
			sqlite3.SQLITE_INTERRUPT, sqlite3.SQLITE_PERM:
			return true
		}
		return false
	}
	var pe *os.PathError
	return errors.As(err, &pe)
}

// write runs f in a write transaction (BEGIN IMMEDIATE on the writer connection).
func (s *Store) write(cctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.sh.w.BeginTx(cctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// versions reserves n fresh versions and returns the first.
func versions(ctx context.Context, tx *sql.Tx, st *stmts, n int) (cache.Version, error) {
	var last int64
	if err := tx.StmtContext(ctx, st.bump).QueryRowContext(ctx, n).Scan(&last); err != nil {
		return 0, err
	}
	return cache.Version(last - int64(n) + 1), nil
}

// put writes one entry and its tags inside tx.
func (s *Store) put(ctx context.Context, tx *sql.Tx, st *stmts, it cache.Item, v cache.Version, now time.Time) error {
	var exp any
	if it.TTL > 0 {
		exp = now.Add(it.TTL).UnixNano()
	}
	value := it.Value
	if value == nil {
		value = []byte{}
	}
	if _, err := tx.StmtContext(ctx, st.upsert).ExecContext(ctx, s.ns, it.Key, value, int64(v), exp); err != nil {
		return err
	}
	if _, err := tx.StmtContext(ctx, st.tagsClear).ExecContext(ctx, s.ns, it.Key); err != nil {
		return err
	}
	if len(it.Tags) > 0 {
		add := tx.StmtContext(ctx, st.tagAdd)
		for _, t := range sqlcommon.Tags(it.Tags) {
			if _, err := add.ExecContext(ctx, s.ns, t, it.Key); err != nil {
				return err
			}
		}
	}
	return nil
}

// row scans one entry row: value, version, expiry, space-separated tags.
func entry(key string, value []byte, version int64, exp sql.NullInt64, tags sql.NullString) cache.Entry {
	e := cache.Entry{Key: key, Value: value, Version: cache.Version(version)}
	if e.Value == nil {
		e.Value = []byte{}
	}
	if exp.Valid {
		e.Expires = time.Unix(0, exp.Int64)
	}
	if tags.Valid && tags.String != "" {
		e.Tags = strings.Fields(tags.String)
		slices.Sort(e.Tags)
	}
	return e
}

// Get implements [cache.Backend].
func (s *Store) Get(ctx context.Context, key string) (cache.Entry, error) {
	if err := cache.ValidateKey(key); err != nil {
		return cache.Entry{}, err
	}
	cctx, cancel, st, err := s.call(ctx, "get")
	if err != nil {
		return cache.Entry{}, err
	}
	defer cancel()
	var (
		value   []byte
		version int64
		exp     sql.NullInt64
		tags    sql.NullString
	)
	err = st.get.QueryRowContext(cctx, s.ns, key, time.Now().UnixNano()).Scan(&value, &version, &exp, &tags)
	if errors.Is(err, sql.ErrNoRows) {
		return cache.Entry{}, fmt.Errorf("sqlitestore: get %q: %w", key, cache.ErrNotFound)
	}
	if err != nil {
		return cache.Entry{}, s.fail(cctx, "get", err)
	}
	return entry(key, value, version, exp, tags), nil
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
	cctx, cancel, st, err := s.call(ctx, "get many")
	if err != nil {
		return nil, err
	}
	defer cancel()
	list, err := json.Marshal(keys)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: get many: %w", err)
	}
	rows, err := st.getMany.QueryContext(cctx, s.ns, string(list), time.Now().UnixNano())
	if err != nil {
		return nil, s.fail(cctx, "get many", err)
	}
	defer rows.Close()
	found := make(map[string]cache.Entry, len(keys))
	for rows.Next() {
		var (
			key     string
			value   []byte
			version int64
			exp     sql.NullInt64
			tags    sql.NullString
		)
		if err := rows.Scan(&key, &value, &version, &exp, &tags); err != nil {
			return nil, s.fail(cctx, "get many", err)
		}
		found[key] = entry(key, value, version, exp, tags)
	}
	if err := rows.Err(); err != nil {
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
	cctx, cancel, st, err := s.call(ctx, "has")
	if err != nil {
		return false, err
	}
	defer cancel()
	var ok bool
	if err := st.has.QueryRowContext(cctx, s.ns, key, time.Now().UnixNano()).Scan(&ok); err != nil {
		return false, s.fail(cctx, "has", err)
	}
	return ok, nil
}

// Set implements [cache.Backend] in one transaction.
func (s *Store) Set(ctx context.Context, it cache.Item) (cache.Version, error) {
	if err := cache.ValidateItem(it, s.sh.cfg.MaxValueSize); err != nil {
		return 0, err
	}
	cctx, cancel, st, err := s.call(ctx, "set")
	if err != nil {
		return 0, err
	}
	defer cancel()
	var v cache.Version
	err = s.write(cctx, func(tx *sql.Tx) error {
		var err error
		if v, err = versions(cctx, tx, st, 1); err != nil {
			return err
		}
		return s.put(cctx, tx, st, it, v, time.Now())
	})
	if err != nil {
		return 0, s.fail(cctx, "set", err)
	}
	return v, nil
}

// SetMany implements [cache.Backend] in one transaction: it is atomic across
// keys. When a key is given twice the last item wins.
func (s *Store) SetMany(ctx context.Context, items []cache.Item) error {
	items, err := sqlcommon.Dedupe(items, s.sh.cfg.MaxValueSize)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		return nil
	}
	cctx, cancel, st, err := s.call(ctx, "set many")
	if err != nil {
		return err
	}
	defer cancel()
	err = s.write(cctx, func(tx *sql.Tx) error {
		v, err := versions(cctx, tx, st, len(items))
		if err != nil {
			return err
		}
		now := time.Now()
		for i, it := range items {
			if err := s.put(cctx, tx, st, it, v+cache.Version(i), now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return s.fail(cctx, "set many", err)
	}
	return nil
}

// errConflict marks a failed comparison inside the write transaction.
var errConflict = errors.New("conflict")

// CompareAndSet implements [cache.Backend]: inside one write transaction it reads
// the stored version (an expired entry counts as absent) and writes only when it
// is expected.
func (s *Store) CompareAndSet(ctx context.Context, it cache.Item, expected cache.Version) (cache.Version, error) {
	if err := cache.ValidateItem(it, s.sh.cfg.MaxValueSize); err != nil {
		return 0, err
	}
	cctx, cancel, st, err := s.call(ctx, "compare and set")
	if err != nil {
		return 0, err
	}
	defer cancel()
	var v cache.Version
	err = s.write(cctx, func(tx *sql.Tx) error {
		now := time.Now()
		var cur int64
		err := tx.StmtContext(cctx, st.state).QueryRowContext(cctx, s.ns, it.Key, now.UnixNano()).Scan(&cur)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			cur = 0
		case err != nil:
			return err
		}
		if cache.Version(cur) != expected {
			return errConflict
		}
		if v, err = versions(cctx, tx, st, 1); err != nil {
			return err
		}
		return s.put(cctx, tx, st, it, v, now)
	})
	if errors.Is(err, errConflict) {
		return 0, fmt.Errorf("sqlitestore: compare and set %q against version %d: %w", it.Key, expected, cache.ErrConflict)
	}
	if err != nil {
		return 0, s.fail(cctx, "compare and set", err)
	}
	return v, nil
}

// Delete implements [cache.Backend]. It reports false for an entry that had
// already expired (and removes it).
func (s *Store) Delete(ctx context.Context, key string) (bool, error) {
	if err := cache.ValidateKey(key); err != nil {
		return false, err
	}
	cctx, cancel, st, err := s.call(ctx, "delete")
	if err != nil {
		return false, err
	}
	defer cancel()
	var exp sql.NullInt64
	err = st.del.QueryRowContext(cctx, s.ns, key).Scan(&exp)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, s.fail(cctx, "delete", err)
	}
	return !exp.Valid || exp.Int64 > time.Now().UnixNano(), nil
}

// Flush implements [cache.Backend].
func (s *Store) Flush(ctx context.Context) error {
	cctx, cancel, _, err := s.call(ctx, "flush")
	if err != nil {
		return err
	}
	defer cancel()
	err = s.write(cctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(cctx, `DELETE FROM fxcache_tags WHERE namespace = ?`, s.ns); err != nil {
			return err
		}
		_, err := tx.ExecContext(cctx, `DELETE FROM fxcache_entries WHERE namespace = ?`, s.ns)
		return err
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
	cctx, cancel, _, err := s.call(ctx, "flush by tag")
	if err != nil {
		return 0, err
	}
	defer cancel()
	n := 0
	err = s.write(cctx, func(tx *sql.Tx) error {
		n = 0
		rows, err := tx.QueryContext(cctx, `DELETE FROM fxcache_entries
			WHERE namespace = ? AND key IN (SELECT key FROM fxcache_tags WHERE namespace = ? AND tag = ?)
			RETURNING expires_at`, s.ns, s.ns, tag)
		if err != nil {
			return err
		}
		defer rows.Close()
		now := time.Now().UnixNano()
		for rows.Next() {
			var exp sql.NullInt64
			if err := rows.Scan(&exp); err != nil {
				return err
			}
			if !exp.Valid || exp.Int64 > now {
				n++
			}
		}
		return rows.Err()
	})
	if err != nil {
		return 0, s.fail(cctx, "flush by tag", err)
	}
	return n, nil
}

// Tagged implements [cache.Backend], in pages of Options.PageSize keys.
func (s *Store) Tagged(ctx context.Context, tag string) iter.Seq2[string, error] {
	if err := cache.ValidateKey(tag); err != nil {
		return func(yield func(string, error) bool) { yield("", fmt.Errorf("tag: %w", err)) }
	}
	size := s.sh.cfg.PageSize
	return sqlcommon.Pages(ctx, size, func(ctx context.Context, after string) ([]string, string, error) {
		cctx, cancel, st, err := s.call(ctx, "tagged")
		if err != nil {
			return nil, "", err
		}
		defer cancel()
		rows, err := st.tagged.QueryContext(cctx, s.ns, tag, after, time.Now().UnixNano(), size)
		if err != nil {
			return nil, "", s.fail(cctx, "tagged", err)
		}
		defer rows.Close()
		var ks []string
		for rows.Next() {
			var k string
			if err := rows.Scan(&k); err != nil {
				return nil, "", s.fail(cctx, "tagged", err)
			}
			ks = append(ks, k)
		}
		if err := rows.Err(); err != nil {
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
		cctx, cancel, st, err := s.call(ctx, "all")
		if err != nil {
			return nil, "", err
		}
		defer cancel()
		rows, err := st.all.QueryContext(cctx, s.ns, after, time.Now().UnixNano(), size)
		if err != nil {
			return nil, "", s.fail(cctx, "all", err)
		}
		defer rows.Close()
		page := make([]cache.Entry, 0, size)
		for rows.Next() {
			var (
				key     string
				value   []byte
				version int64
				exp     sql.NullInt64
				tags    sql.NullString
			)
			if err := rows.Scan(&key, &value, &version, &exp, &tags); err != nil {
				return nil, "", s.fail(cctx, "all", err)
			}
			page = append(page, entry(key, value, version, exp, tags))
		}
		if err := rows.Err(); err != nil {
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
// batch a short transaction of its own, until none is left; then expired locks.
func (s *Store) CollectGarbage(ctx context.Context) (int, error) {
	total := 0
	batch := s.sh.cfg.GCBatchSize
	for {
		cctx, cancel, _, err := s.call(ctx, "collect garbage")
		if err != nil {
			return total, err
		}
		res, err := s.sh.w.ExecContext(cctx, `DELETE FROM fxcache_entries WHERE rowid IN (
			SELECT rowid FROM fxcache_entries
			WHERE namespace = ? AND expires_at IS NOT NULL AND expires_at <= ?
			ORDER BY expires_at LIMIT ?)`, s.ns, time.Now().UnixNano(), batch)
		var n int64
		if err == nil {
			n, err = res.RowsAffected()
		}
		if err != nil {
			err = s.fail(cctx, "collect garbage", err)
			cancel()
			return total, err
		}
		cancel()
		total += int(n)
		if int(n) < batch {
			break
		}
	}
	cctx, cancel, _, err := s.call(ctx, "collect garbage")
	if err != nil {
		return total, err
	}
	defer cancel()
	if _, err := s.sh.w.ExecContext(cctx, `DELETE FROM fxcache_locks WHERE (namespace, name) IN (
		SELECT namespace, name FROM fxcache_locks WHERE namespace = ? AND expires_at <= ? LIMIT ?)`,
		s.ns, time.Now().UnixNano(), batch); err != nil {
		return total, s.fail(cctx, "collect garbage", err)
	}
	return total, nil
}

// Lock implements [cache.Backend] with a row in fxcache_locks: taken when absent
// or expired.
func (s *Store) Lock(ctx context.Context, name string, ttl time.Duration) (string, error) {
	if err := sqlcommon.ValidateLock(name, ttl); err != nil {
		return "", err
	}
	cctx, cancel, st, err := s.call(ctx, "lock")
	if err != nil {
		return "", err
	}
	defer cancel()
	token := sqlcommon.Token()
	now := time.Now()
	var got string
	err = st.lock.QueryRowContext(cctx, s.ns, name, token, now.Add(ttl).UnixNano(), now.UnixNano()).Scan(&got)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("sqlitestore: lock %q: %w", name, cache.ErrLocked)
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
	cctx, cancel, st, err := s.call(ctx, "unlock")
	if err != nil {
		return false, err
	}
	defer cancel()
	var exp int64
	err = st.unlock.QueryRowContext(cctx, s.ns, name, token).Scan(&exp)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, s.fail(cctx, "unlock", err)
	}
	return exp > time.Now().UnixNano(), nil
}
