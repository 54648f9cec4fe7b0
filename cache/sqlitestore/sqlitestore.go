// Package sqlitestore is the embedded SQLite [cache.Store], built on
// modernc.org/sqlite (pure Go, no cgo) through database/sql: one record per
// session in one database file, shared safely by the processes that open it.
//
// # Schema
//
// The layout is pgstore's (see there why a row per field), in SQLite's types;
// times are Unix microseconds. It is created on first use and its version
// recorded in fxcache_schema; a database holding another version is refused
// with an error saying so. The tables, abridged:
//
//	CREATE TABLE fxcache_records (           -- a record
//		namespace TEXT, key TEXT,
//		version    INTEGER NOT NULL,         -- of its last write
//		expires_at INTEGER,                  -- NULL: never
//		tags       TEXT NOT NULL,            -- sorted, separated by spaces
//		PRIMARY KEY (namespace, key)) WITHOUT ROWID;
//	CREATE INDEX fxcache_records_expiry ON fxcache_records (namespace, expires_at)
//		WHERE expires_at IS NOT NULL;
//	CREATE TABLE fxcache_fields (            -- its fields
//		namespace TEXT, key TEXT, name TEXT,
//		version INTEGER NOT NULL, value BLOB NOT NULL,
//		PRIMARY KEY (namespace, key, name),
//		FOREIGN KEY (namespace, key) REFERENCES fxcache_records ON DELETE CASCADE);
//	CREATE TABLE fxcache_tags (              -- the tag index
//		namespace TEXT, tag TEXT, key TEXT,
//		PRIMARY KEY (namespace, tag, key),
//		FOREIGN KEY (namespace, key) REFERENCES fxcache_records ON DELETE CASCADE)
//		WITHOUT ROWID;
//	CREATE INDEX fxcache_tags_record ON fxcache_tags (namespace, key);
//	CREATE TABLE fxcache_locks (namespace, name, token, expires_at,
//		PRIMARY KEY (namespace, name)) WITHOUT ROWID;
//	CREATE TABLE fxcache_seq (id, v);        -- the last version given
//	CREATE TABLE fxcache_schema (id, version);
//
// # Connections and transactions
//
// The database is in WAL mode: readers never wait for the writer. Reads use a
// pool of read-only connections (Options.Readers); every change goes through
// one writer connection, in a BEGIN IMMEDIATE transaction, which takes the
// file's write lock at once. While another connection (another process, or
// another store on the same file) holds it, the store tries again after short
// jittered pauses until the call's deadline, instead of sleeping in SQLite's
// busy handler, whose pauses grow to 100 ms and starve a waiter.
//
//   - Read and ReadMany: one SELECT of the record rows joined to their fields
//     (keys and field names bound as JSON arrays).
//   - Write: one transaction: the record's state and the versions of the
//     checked fields in one statement, then (if every condition holds) the
//     version counter, the record, its fields and, when they change, its tags.
//     A failed condition commits nothing and is reported as
//     [cache.ErrConflict] or [cache.ErrNotFound].
//   - Delete and DeleteMany: one DELETE per BatchSize keys; fields and tags go
//     with the record (ON DELETE CASCADE).
//   - Keys and Tagged: keyset pagination in key order, BatchSize keys a
//     statement.
//   - CollectGarbage: one transaction reads up to GCOptions.Max expired records
//     through the expiry index, with the fields asked for, and deletes them;
//     the write lock makes each record reported by one caller, across
//     processes too.
//
// Versions come from fxcache_seq, bumped in each write transaction: never 0,
// never given twice, also across a delete, a re-creation and a restart.
// Expiry is decided by the clock of the process that calls.
//
// # Failures
//
// Every call runs under a deadline (Options.StatementTimeout, default 2 s). A
// write lock held elsewhere for longer, an unreadable file or a full disk give
// an error matching [cache.ErrUnavailable]; a cancelled context gives one
// matching context.Canceled. SQLite's write lock has no queue: while another
// process writes without pause, a write of this one may wait until its
// deadline.
package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/internal/sqlcommon"
	"github.com/fxsession/fxsession/internal/backoff"
)

// Options configure a [Store]. The zero value is usable.
type Options struct {
	// Namespace is the store's namespace (default "default").
	Namespace string
	// MaxValueSize is the largest field value accepted (default
	// cache.DefaultMaxValueSize, 1 MiB).
	MaxValueSize int
	// StatementTimeout bounds every call, including waiting for the write lock
	// held by another process; default 2 s. The schema check on first use
	// takes several statements, each bounded by it. The caller's context may
	// end a call sooner.
	StatementTimeout time.Duration
	// BatchSize is how many keys one statement of Keys, Tagged and DeleteMany
	// handles (default 500).
	BatchSize int
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
		BatchSize:        o.BatchSize,
		Logger:           o.Logger,
	}.Normalize()
}

// engine is the database-independent part of the store.
type engine = sqlcommon.Store

// Store is one namespace of a SQLite record store; it implements [cache.Store]
// and is safe for concurrent use. Its Subs share its connections.
type Store struct {
	*engine
	d *driver
}

var _ cache.Store = (*Store)(nil)

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

// open validates the arguments and sets up the connection pools without
// touching the file.
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
	base := "file:" + (&url.URL{Path: abs}).EscapedPath() + "?_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"
	// The writer waits for the write lock in begin, not in SQLite's busy
	// handler (busy timeout 0).
	w, err := sql.Open("sqlite", base+"&_pragma=busy_timeout(0)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	busy := strconv.FormatInt(cfg.StatementTimeout.Milliseconds(), 10)
	r, err := sql.Open("sqlite", base+"&_pragma=busy_timeout("+busy+")&_pragma=query_only(1)")
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
	d := &driver{path: abs, w: w, r: r}
	return &Store{engine: sqlcommon.New("sqlitestore", d, cfg), d: d}, nil
}

// Path is the database file's absolute path.
func (s *Store) Path() string { return s.d.path }

// driver is the SQL of the store.
type driver struct {
	path     string
	w, r     *sql.DB     // one writer connection, a pool of readers
	st       stmts       // prepared by Migrate
	prepared []*sql.Stmt // what Close closes
}

// stmts are the prepared statements. The write transaction's go through
// tx.StmtContext, which reuses them on the writer's one connection.
type stmts struct {
	read, readFields, keys, tagged                                    *sql.Stmt // readers
	state, bump, create, update, drop                                 *sql.Stmt // writer: a write
	setField, removeFields, addTags, removeTags                       *sql.Stmt
	del, collect, collectFields, collectDelete, lock, unlock, gcLocks *sql.Stmt // writer: the rest
}

// in is the SQL of "one of the strings of the JSON array bound as ?n".
func in(n int) string { return `(SELECT value FROM json_each(?` + strconv.Itoa(n) + `))` }

const readColumns = `r.key, r.version, r.expires_at, r.tags, f.name, f.value, f.version`

func (d *driver) Migrate(ctx context.Context, timeout time.Duration) (bool, error) {
	if err := os.MkdirAll(filepath.Dir(d.path), 0o750); err != nil {
		return false, err
	}
	begin := func(ctx context.Context) (*sql.Tx, error) { return d.begin(ctx, time.Now().Add(timeout)) }
	created, err := migrate(ctx, begin, timeout)
	if err != nil {
		return false, err
	}
	queries := map[**sql.Stmt]struct {
		db *sql.DB
		q  string
	}{
		// ?1 namespace, ?2 keys (JSON), ?3 now, ?4 field names (JSON)
		&d.st.read: {d.r, `SELECT ` + readColumns + ` FROM fxcache_records r
			LEFT JOIN fxcache_fields f ON f.namespace = r.namespace AND f.key = r.key
			WHERE r.namespace = ?1 AND r.key IN ` + in(2) + ` AND (r.expires_at IS NULL OR r.expires_at > ?3)`},
		&d.st.readFields: {d.r, `SELECT ` + readColumns + ` FROM fxcache_records r
			LEFT JOIN fxcache_fields f ON f.namespace = r.namespace AND f.key = r.key AND f.name IN ` + in(4) + `
			WHERE r.namespace = ?1 AND r.key IN ` + in(2) + ` AND (r.expires_at IS NULL OR r.expires_at > ?3)`},
		&d.st.keys: {d.r, `SELECT key FROM fxcache_records
			WHERE namespace = ? AND key > ? AND (expires_at IS NULL OR expires_at > ?)
			ORDER BY key LIMIT ?`},
		&d.st.tagged: {d.r, `SELECT t.key FROM fxcache_tags t
			JOIN fxcache_records r ON r.namespace = t.namespace AND r.key = t.key
			WHERE t.namespace = ? AND t.tag = ? AND t.key > ? AND (r.expires_at IS NULL OR r.expires_at > ?)
			ORDER BY t.key LIMIT ?`},

		// The record's state and the versions of the fields a write checks.
		&d.st.state: {d.w, `SELECT r.expires_at, r.tags, f.name, f.version FROM fxcache_records r
			LEFT JOIN fxcache_fields f ON f.namespace = r.namespace AND f.key = r.key AND f.name IN ` + in(3) + `
			WHERE r.namespace = ?1 AND r.key = ?2`},
		&d.st.bump:   {d.w, `UPDATE fxcache_seq SET v = v + 1 WHERE id = 1 RETURNING v`},
		&d.st.create: {d.w, `INSERT INTO fxcache_records (namespace, key, version, expires_at, tags) VALUES (?, ?, ?, ?, ?)`},
		&d.st.update: {d.w, `UPDATE fxcache_records SET version = ?, expires_at = ?, tags = ? WHERE namespace = ? AND key = ?`},
		&d.st.drop:   {d.w, `DELETE FROM fxcache_records WHERE namespace = ? AND key = ?`},
		&d.st.setField: {d.w, `INSERT INTO fxcache_fields (namespace, key, name, version, value) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (namespace, key, name) DO UPDATE SET version = excluded.version, value = excluded.value`},
		&d.st.removeFields: {d.w, `DELETE FROM fxcache_fields WHERE namespace = ?1 AND key = ?2 AND name IN ` + in(3)},
		&d.st.addTags: {d.w, `INSERT INTO fxcache_tags (namespace, tag, key)
			SELECT ?1, value, ?2 FROM json_each(?3) WHERE true ON CONFLICT DO NOTHING`},
		&d.st.removeTags: {d.w, `DELETE FROM fxcache_tags WHERE namespace = ?1 AND key = ?2 AND tag IN ` + in(3)},

		&d.st.del: {d.w, `DELETE FROM fxcache_records WHERE namespace = ?1 AND key IN ` + in(2) + ` RETURNING expires_at`},
		// ?1 namespace, ?2 before, ?3 limit, ?4 field names (JSON)
		&d.st.collect: {d.w, `SELECT r.key, r.version, r.expires_at, r.tags, NULL, NULL, NULL FROM fxcache_records r
			WHERE r.namespace = ?1 AND r.expires_at IS NOT NULL AND r.expires_at <= ?2
			ORDER BY r.expires_at LIMIT ?3`},
		&d.st.collectFields: {d.w, `SELECT ` + readColumns + ` FROM (
				SELECT namespace, key, version, expires_at, tags FROM fxcache_records
				WHERE namespace = ?1 AND expires_at IS NOT NULL AND expires_at <= ?2
				ORDER BY expires_at LIMIT ?3) r
			LEFT JOIN fxcache_fields f ON f.namespace = r.namespace AND f.key = r.key AND f.name IN ` + in(4)},
		&d.st.collectDelete: {d.w, `DELETE FROM fxcache_records WHERE namespace = ?1 AND key IN ` + in(2)},
		&d.st.gcLocks:       {d.w, `DELETE FROM fxcache_locks WHERE namespace = ? AND expires_at <= ?`},
		&d.st.lock: {d.w, `INSERT INTO fxcache_locks (namespace, name, token, expires_at) VALUES (?1, ?2, ?3, ?4)
			ON CONFLICT (namespace, name) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at
			WHERE fxcache_locks.expires_at <= ?5`},
		&d.st.unlock: {d.w, `DELETE FROM fxcache_locks WHERE namespace = ? AND name = ? AND token = ? AND expires_at > ?`},
	}
	for dst, p := range queries {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		stmt, err := p.db.PrepareContext(pctx, p.q)
		cancel()
		if err != nil {
			d.closeStmts()
			return false, fmt.Errorf("prepare: %w", err)
		}
		*dst = stmt
		d.prepared = append(d.prepared, stmt)
	}
	return created, nil
}

func (d *driver) closeStmts() {
	for _, stmt := range d.prepared {
		_ = stmt.Close()
	}
	d.prepared = nil
}

func (d *driver) Close() error {
	d.closeStmts()
	return errors.Join(d.r.Close(), d.w.Close())
}

// Unavailable tells errors of reaching the database file (locked for too
// long, unreadable, full disk, read-only, interrupted by a deadline) from
// errors about a statement.
func (d *driver) Unavailable(err error) bool {
	if errors.Is(err, sql.ErrConnDone) {
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

// now is the store's clock, in the unit of expires_at.
func now() int64 { return time.Now().UnixMicro() }

// jsonList is keys as a JSON array of strings. Keys, field names and tags
// never hold a character JSON escapes.
func jsonList(keys []string) string {
	if len(keys) == 0 {
		return `[]`
	}
	return `["` + strings.Join(keys, `","`) + `"]`
}

// expiry is an expires_at column value.
func expiry(t time.Time) sql.NullInt64 {
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: !t.IsZero()}
}

// scanRows scans result rows of readColumns' shape into row.
func scanRows(rows *sql.Rows, row func(*sqlcommon.Row)) error {
	defer rows.Close()
	var (
		r                     sqlcommon.Row
		key, tags, name, val  sql.RawBytes
		version               int64
		expires, fieldVersion sql.NullInt64
	)
	for rows.Next() {
		if err := rows.Scan(&key, &version, &expires, &tags, &name, &val, &fieldVersion); err != nil {
			return err
		}
		r = sqlcommon.Row{Key: key, Version: version, Tags: tags, Field: name, Value: val, FieldVersion: fieldVersion.Int64}
		if expires.Valid {
			r.Expires = time.UnixMicro(expires.Int64)
		}
		row(&r)
	}
	return rows.Err()
}

func (d *driver) Read(ctx context.Context, ns string, keys, fields []string, row func(*sqlcommon.Row)) error {
	var (
		rows *sql.Rows
		err  error
	)
	if len(fields) == 0 {
		rows, err = d.st.read.QueryContext(ctx, ns, jsonList(keys), now())
	} else {
		rows, err = d.st.readFields.QueryContext(ctx, ns, jsonList(keys), now(), jsonList(fields))
	}
	if err != nil {
		return err
	}
	return scanRows(rows, row)
}

// begin starts a write transaction: BEGIN IMMEDIATE on the writer connection,
// which takes the database's write lock. While another connection (another
// process, or another store on the same file) holds it, begin tries again
// after short jittered pauses until ctx ends or the deadline (if not zero)
// passes, rather than sleeping in SQLite's busy handler, whose pauses grow to
// 100 ms and starve a waiter under contention. The transaction lives in ctx.
func (d *driver) begin(ctx context.Context, deadline time.Time) (*sql.Tx, error) {
	b := backoff.Backoff{Min: 50 * time.Microsecond, Max: 5 * time.Millisecond, Deadline: deadline}
	for {
		tx, err := d.w.BeginTx(ctx, nil)
		var se *sqlite.Error
		if err == nil || !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY {
			return tx, err
		}
		if !b.Wait(ctx) {
			return nil, err
		}
	}
}

// tx runs f in a write transaction and commits it when f returns nil. Every
// change goes through it.
func (d *driver) tx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := d.begin(ctx, time.Time{})
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Write checks and applies p in one write transaction: SQLite's write lock
// orders it after every other writer, also of other processes.
func (d *driver) Write(ctx context.Context, ns, key string, p *sqlcommon.Plan) (out sqlcommon.Outcome, err error) {
	err = d.tx(ctx, func(tx *sql.Tx) error {
		stmt := func(s *sql.Stmt) *sql.Stmt { return tx.StmtContext(ctx, s) }
		st, err := d.state(ctx, stmt(d.st.state), ns, key, p.CheckNames)
		if err != nil {
			return err
		}
		var refused bool
		if out, refused = st.refuse(p); refused {
			return nil
		}
		v, err := d.apply(ctx, stmt, ns, key, p, st)
		out.Version = cache.Version(v)
		return err
	})
	return out, err
}

// refuse checks p's conditions against the record's state and reports why it
// must not be applied, if it must not.
func (st *state) refuse(p *sqlcommon.Plan) (out sqlcommon.Outcome, refused bool) {
	live := st.found && (!st.expires.Valid || st.expires.Int64 > now())
	switch {
	case p.Create && live:
		return sqlcommon.Outcome{Exists: true}, true
	case !p.Create && !live:
		return sqlcommon.Outcome{}, true
	}
	for i, name := range p.CheckNames {
		var have int64
		if live {
			have = st.versions[name]
		}
		if have != p.CheckVersions[i] {
			return sqlcommon.Outcome{Field: name, Have: cache.Version(have)}, true
		}
	}
	return sqlcommon.Outcome{}, false
}

// apply makes p's changes to the record in state st and returns its new
// version.
func (d *driver) apply(ctx context.Context, stmt func(*sql.Stmt) *sql.Stmt, ns, key string, p *sqlcommon.Plan, st state) (v int64, err error) {
	if err := stmt(d.st.bump).QueryRowContext(ctx).Scan(&v); err != nil {
		return 0, err
	}
	old, expires := sqlcommon.SplitTags(st.tags), st.expires
	if p.Create { // a fresh record, also over an expired one
		old, expires = nil, sql.NullInt64{}
		if st.found {
			if _, err := stmt(d.st.drop).ExecContext(ctx, ns, key); err != nil {
				return 0, err
			}
		}
	}
	switch p.Expiry {
	case sqlcommon.ExpiryClear:
		expires = sql.NullInt64{}
	case sqlcommon.ExpirySet:
		expires = expiry(p.Expires)
	}
	tags := p.NewTags(old)
	if p.Create {
		_, err = stmt(d.st.create).ExecContext(ctx, ns, key, v, expires, sqlcommon.JoinTags(tags))
	} else {
		_, err = stmt(d.st.update).ExecContext(ctx, v, expires, sqlcommon.JoinTags(tags), ns, key)
	}
	if err != nil {
		return 0, err
	}
	if len(p.Remove) > 0 {
		if _, err := stmt(d.st.removeFields).ExecContext(ctx, ns, key, jsonList(p.Remove)); err != nil {
			return 0, err
		}
	}
	if len(p.SetNames) > 0 {
		set := stmt(d.st.setField)
		for i, name := range p.SetNames {
			if _, err := set.ExecContext(ctx, ns, key, name, v, p.SetValues[i]); err != nil {
				return 0, err
			}
		}
	}
	return v, d.retag(ctx, stmt, ns, key, old, tags)
}

// state is what a write finds of a record.
type state struct {
	found    bool
	expires  sql.NullInt64
	tags     string
	versions map[string]int64 // of the fields checked that the record has
}

// state reads the record under key and the versions of its fields named in
// checks.
func (d *driver) state(ctx context.Context, stmt *sql.Stmt, ns, key string, checks []string) (st state, err error) {
	rows, err := stmt.QueryContext(ctx, ns, key, jsonList(checks))
	if err != nil {
		return st, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			name    sql.NullString
			version sql.NullInt64
		)
		if err := rows.Scan(&st.expires, &st.tags, &name, &version); err != nil {
			return st, err
		}
		st.found = true
		if name.Valid {
			if st.versions == nil {
				st.versions = map[string]int64{}
			}
			st.versions[name.String] = version.Int64
		}
	}
	return st, rows.Err()
}

// retag changes the tag index from old to new tags; it does nothing when they
// are the same.
func (d *driver) retag(ctx context.Context, stmt func(*sql.Stmt) *sql.Stmt, ns, key string, old, new []string) error {
	var gone, added []string
	for _, t := range old {
		if !slices.Contains(new, t) {
			gone = append(gone, t)
		}
	}
	for _, t := range new {
		if !slices.Contains(old, t) {
			added = append(added, t)
		}
	}
	if len(gone) > 0 {
		if _, err := stmt(d.st.removeTags).ExecContext(ctx, ns, key, jsonList(gone)); err != nil {
			return err
		}
	}
	if len(added) > 0 {
		if _, err := stmt(d.st.addTags).ExecContext(ctx, ns, key, jsonList(added)); err != nil {
			return err
		}
	}
	return nil
}

func (d *driver) Delete(ctx context.Context, ns string, keys []string) (n int, err error) {
	err = d.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.StmtContext(ctx, d.st.del).QueryContext(ctx, ns, jsonList(keys))
		if err != nil {
			return err
		}
		defer rows.Close()
		t := now()
		for rows.Next() {
			var exp sql.NullInt64
			if err := rows.Scan(&exp); err != nil {
				return err
			}
			if !exp.Valid || exp.Int64 > t {
				n++
			}
		}
		return rows.Err()
	})
	return n, err
}

func (d *driver) Page(ctx context.Context, ns, tag, after string, limit int) ([]string, error) {
	var (
		rows *sql.Rows
		err  error
	)
	if tag == "" {
		rows, err = d.st.keys.QueryContext(ctx, ns, after, now(), limit)
	} else {
		rows, err = d.st.tagged.QueryContext(ctx, ns, tag, after, now(), limit)
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	keys := make([]string, 0, limit)
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

func (d *driver) Flush(ctx context.Context, ns string) error {
	return d.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM fxcache_locks WHERE namespace = ?`, ns); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM fxcache_records WHERE namespace = ?`, ns)
		return err
	})
}

// Collect reads the records to remove and deletes them in one write
// transaction: no other writer, of this process or another, runs in between,
// so each is removed and reported once.
func (d *driver) Collect(ctx context.Context, ns string, before time.Time, max int, fields []string, row func(*sqlcommon.Row)) error {
	at := now()
	if !before.IsZero() {
		at = before.UnixMicro()
	}
	return d.tx(ctx, func(tx *sql.Tx) error {
		var keys []string
		seen := map[string]bool{}
		add := func(r *sqlcommon.Row) {
			if !seen[string(r.Key)] {
				seen[string(r.Key)] = true
				keys = append(keys, string(r.Key))
			}
			row(r)
		}
		var (
			rows *sql.Rows
			err  error
		)
		if len(fields) == 0 {
			rows, err = tx.StmtContext(ctx, d.st.collect).QueryContext(ctx, ns, at, max)
		} else {
			rows, err = tx.StmtContext(ctx, d.st.collectFields).QueryContext(ctx, ns, at, max, jsonList(fields))
		}
		if err != nil {
			return err
		}
		if err := scanRows(rows, add); err != nil {
			return err
		}
		if len(keys) > 0 {
			if _, err := tx.StmtContext(ctx, d.st.collectDelete).ExecContext(ctx, ns, jsonList(keys)); err != nil {
				return err
			}
		}
		_, err = tx.StmtContext(ctx, d.st.gcLocks).ExecContext(ctx, ns, now())
		return err
	})
}

func (d *driver) Lock(ctx context.Context, ns, name, token string, ttl time.Duration) (bool, error) {
	t := time.Now()
	return d.change(ctx, d.st.lock, ns, name, token, t.Add(ttl).UnixMicro(), t.UnixMicro())
}

func (d *driver) Unlock(ctx context.Context, ns, name, token string) (bool, error) {
	return d.change(ctx, d.st.unlock, ns, name, token, now())
}

// change runs stmt in a write transaction and reports whether it changed one
// row.
func (d *driver) change(ctx context.Context, stmt *sql.Stmt, args ...any) (changed bool, err error) {
	err = d.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, stmt).ExecContext(ctx, args...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		changed = n == 1
		return err
	})
	return changed, err
}
