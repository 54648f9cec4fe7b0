// Package pgstore is the PostgreSQL [cache.Store], built on pgx/v5's connection
// pool: one record per session, read in one statement and changed by one
// conditional write in one round trip.
//
// # Schema
//
// The store creates its tables on first use (under an advisory lock, so
// processes starting together do not race) and records the schema's version
// in fxcache_schema. A database holding another version is refused with an
// error saying so: a newer one needs a newer fxsession; version 1, the
// unreleased key/value layout of development builds, is not migrated. The
// tables, abridged:
//
//	CREATE TABLE fxcache_records (           -- a record
//		namespace  text COLLATE "C",
//		key        text COLLATE "C",
//		version    bigint NOT NULL,          -- of its last write
//		expires_at timestamptz,              -- NULL: never
//		tags       text[] COLLATE "C" NOT NULL,
//		PRIMARY KEY (namespace, key));
//	CREATE INDEX fxcache_records_expiry ON fxcache_records (namespace, expires_at)
//		WHERE expires_at IS NOT NULL;
//	CREATE TABLE fxcache_fields (            -- its fields
//		namespace, key, name text COLLATE "C",
//		version bigint NOT NULL,             -- of the write that set it
//		value   bytea NOT NULL,
//		PRIMARY KEY (namespace, key, name),
//		FOREIGN KEY (namespace, key) REFERENCES fxcache_records ON DELETE CASCADE);
//	CREATE TABLE fxcache_tags (              -- the tag index
//		namespace, tag, key text COLLATE "C",
//		PRIMARY KEY (namespace, tag, key),
//		FOREIGN KEY (namespace, key) REFERENCES fxcache_records ON DELETE CASCADE);
//	CREATE INDEX fxcache_tags_record ON fxcache_tags (namespace, key);
//	CREATE TABLE fxcache_locks (
//		namespace, name text COLLATE "C", token text, expires_at timestamptz,
//		PRIMARY KEY (namespace, name));
//	CREATE SEQUENCE fxcache_version;         -- versions of every write
//	CREATE FUNCTION fxcache_write(...);      -- a whole Write, see below
//	CREATE TABLE fxcache_schema (id, version);
//
// A record's tags are in its row (what a read returns) and in fxcache_tags
// (what Tagged walks); a write changes the index only when the record's tags
// change. Identifiers use the "C" collation: bytewise, cheap, and independent
// of the database's locale, which keyset pagination relies on.
//
// # Why a row per field
//
// The alternative is one row per record holding its fields in a map column
// (parallel arrays of names, versions and values). BenchmarkDesign measures
// both on one connection, in server CPU time per operation (medians of three
// runs on a loaded 2-core machine; run it with FXSESSION_BENCH_DESIGN=1):
//
//	                                   row per field   map column
//	8 fields of 512 B   read all              41 µs        41 µs
//	                    read one field        59 µs        37 µs
//	                    write one field      146 µs       188 µs
//	64 KiB + 7 x 64 B   read all             193 µs       171 µs
//	                    read one field        87 µs        85 µs
//	                    write one field      219 µs      1540 µs
//
// A map column reads a small record a little cheaper, but every write rewrites
// (and re-compresses, re-TOASTs and logs) all of the record's values: a session
// holding a large object pays for it on each request that only touches its
// metadata. With a row per field a write costs what it changes, which is what
// a session store does most.
//
// # One statement, one round trip
//
//   - Read and ReadMany: one SELECT of the record rows joined to their fields
//     (ReadMany probes each key's rows, whatever the plan expects of the number
//     of keys).
//   - Write: SELECT ... FROM fxcache_write(...), a PL/pgSQL function installed
//     with the schema. It locks the record's row (FOR NO KEY UPDATE), checks
//     that the record exists live (or, for a create, does not: an expired one is
//     replaced), checks the expected field versions with a fresh snapshot taken
//     after the lock, draws the version from fxcache_version, and applies the
//     fields, tags and expiry; or, when a condition fails, changes nothing and
//     says which one, which the store reports as [cache.ErrConflict] or
//     [cache.ErrNotFound]. Measured against a pgx batch in an explicit
//     transaction carrying the check's outcome in a transaction-local setting
//     (also one round trip), the function costs the same (146 against 143 µs
//     of server CPU for the small record, 219 against 183 µs for the large one,
//     with the batch doing less: no creation, tags or expiry), keeps the
//     conditions in one place and reports which field failed without aborting
//     a transaction.
//   - Delete and DeleteMany: one DELETE per BatchSize keys; fields and tags go
//     with the record (ON DELETE CASCADE), whatever races it.
//   - Keys and Tagged: keyset pagination in key order, BatchSize keys a
//     statement; no connection is held while the caller's loop runs.
//   - CollectGarbage: one statement deletes up to GCOptions.Max expired records
//     through the expiry index, locked FOR UPDATE SKIP LOCKED, and returns them
//     with the fields asked for, so that collectors in several processes share
//     the work and each record is reported once.
//   - Lock and Unlock: a row of fxcache_locks with an owner token and an
//     expiry. Advisory locks belong to a database session and do not expire;
//     a cache lock must expire when its owner dies and be releasable from any
//     connection of the pool.
//
// The first use of each statement on a connection prepares it (one more round
// trip, once); after that, each call above is one. The pool Open creates runs
// its sessions with plan_cache_mode = force_generic_plan (unless the
// connection string sets it): the statements are written so that their
// generic plans probe indexes whatever the statistics say, which saves
// planning them on every call; a pool given to New is used as it is. (pgxpool also pings a
// connection that has been idle for over a second before handing it out: a
// store under steady load does not pay for it; one created with New on a pool
// configured otherwise does what that pool does.)
//
// # Time and versions
//
// Expiry is decided by the database's clock (now()), so application servers
// agree on it. Versions come from the sequence: never 0, never given twice,
// also across a delete and a re-creation, and growing for each record (drawn
// after its row is locked).
//
// # Failures
//
// Every call runs under a deadline (Options.StatementTimeout, default 2 s),
// which is also the server's statement_timeout, and a call whose deadline
// passes asks the server to cancel its statement. A database that is down or
// does not answer in time gives an error matching [cache.ErrUnavailable]; the
// pool dials again on the next call, so the store recovers by itself once the
// database is back. A cancelled context is the caller's doing: its error
// matches context.Canceled, not ErrUnavailable.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/internal/sqlcommon"
)

// Options configure a [Store]. The zero value is usable.
type Options struct {
	// Namespace is the store's namespace (default "default").
	Namespace string
	// MaxValueSize is the largest field value accepted (default
	// cache.DefaultMaxValueSize, 1 MiB).
	MaxValueSize int
	// StatementTimeout bounds every call's time in the database, including
	// waiting for a connection and for row locks (default 2 s); the schema
	// check on first use takes several statements, each bounded by it. It is
	// also the server's statement_timeout of the pool's sessions, unless the
	// connection string sets one. The caller's context may end a call sooner.
	StatementTimeout time.Duration
	// BatchSize is how many keys one statement of Keys, Tagged and DeleteMany
	// handles (default 500).
	BatchSize int
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

// cancelGrace is how long a cancelled statement's connection waits for the
// server's answer to the cancel request before it is dropped.
const cancelGrace = 500 * time.Millisecond

// engine is the database-independent part of the store.
type engine = sqlcommon.Store

// Store is one namespace of a PostgreSQL record store; it implements
// [cache.Store] and is safe for concurrent use. Its Subs share its pool.
type Store struct {
	*engine
	d *driver
}

var _ cache.Store = (*Store)(nil)

// New returns a store on pool, creating the schema when it is missing. The pool
// stays the caller's: Close does not close it.
func New(ctx context.Context, pool *pgxpool.Pool, o Options) (*Store, error) {
	if pool == nil {
		return nil, errors.New("pgstore: nil pool")
	}
	cfg, err := o.config()
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	s := newStore(pool, false, cfg)
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
	// The statements are written so that their generic plans are good
	// (TestPlans checks them, and the server plans them again when a table's
	// statistics change); planning each call afresh, as the server does for a
	// while and then whenever a custom plan looks cheaper, costs a quarter to a
	// third of a read's server time.
	if _, ok := params["plan_cache_mode"]; !ok {
		params["plan_cache_mode"] = "force_generic_plan"
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
	return newStore(pool, true, cfg), nil
}

func newStore(pool *pgxpool.Pool, own bool, cfg sqlcommon.Config) *Store {
	d := &driver{pool: pool, own: own}
	return &Store{engine: sqlcommon.New("pgstore", d, cfg), d: d}
}

// Pool is the connection pool the store uses.
func (s *Store) Pool() *pgxpool.Pool { return s.d.pool }

// driver is the SQL of the store.
type driver struct {
	pool *pgxpool.Pool
	own  bool // Close closes the pool
}

func (d *driver) Migrate(ctx context.Context, timeout time.Duration) (bool, error) {
	return migrate(ctx, d.pool, timeout)
}

func (d *driver) Close() error {
	if d.own {
		d.pool.Close()
	}
	return nil
}

// Unavailable tells errors of reaching the database (connection refused or
// lost, server shutting down, too many connections, timeouts) from errors the
// database reports about a statement.
func (d *driver) Unavailable(err error) bool {
	if pgconn.Timeout(err) {
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

// retry runs f until it succeeds, fails otherwise than with a deadlock or a
// serialization failure (the transaction was rolled back as a whole and can
// simply run again), or three attempts were made.
func retry(f func() error) error {
	var err error
	for range 3 {
		err = f()
		var pe *pgconn.PgError
		if err == nil || !errors.As(err, &pe) || (pe.Code != "40P01" && pe.Code != "40001") {
			return err
		}
	}
	return err
}

const live = `(expires_at IS NULL OR expires_at > now())`

const (
	// A record and its fields, in one statement: one row per field, or one
	// without a field.
	readColumns = `r.key, r.version, r.expires_at, array_to_string(r.tags, ' '), f.name, f.value, f.version`
	qRead       = `SELECT ` + readColumns + ` FROM fxcache_records r
		LEFT JOIN fxcache_fields f ON f.namespace = r.namespace AND f.key = r.key
			AND (cardinality($3::text[]) = 0 OR f.name = ANY ($3))
		WHERE r.namespace = $1 AND r.key = $2 AND (r.expires_at IS NULL OR r.expires_at > now())`
	// Many records: one probe of each table's primary key per key, whatever
	// the plan expects of the number of keys (OFFSET 0 keeps the planner from
	// turning the lateral subqueries into joins that may walk a table).
	qReadMany = `SELECT ` + readColumns + ` FROM unnest($2::text[]) AS k(key)
		CROSS JOIN LATERAL (SELECT * FROM fxcache_records r
			WHERE r.namespace = $1 AND r.key = k.key AND (r.expires_at IS NULL OR r.expires_at > now())
			OFFSET 0) r
		LEFT JOIN LATERAL (SELECT * FROM fxcache_fields f
			WHERE f.namespace = r.namespace AND f.key = r.key AND (cardinality($3::text[]) = 0 OR f.name = ANY ($3))
			OFFSET 0) f ON true`
	qWrite = `SELECT o_version, o_field, o_have FROM fxcache_write($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`
	// The records go with their fields and tags (ON DELETE CASCADE).
	qDelete = `WITH d AS (
			DELETE FROM fxcache_records WHERE namespace = $1 AND key = ANY ($2) RETURNING expires_at)
		SELECT count(*) FROM d WHERE ` + live
	qKeys = `SELECT key FROM fxcache_records
		WHERE namespace = $1 AND key > $2 AND ` + live + `
		ORDER BY key LIMIT $3`
	qTagged = `SELECT t.key FROM fxcache_tags t
		JOIN fxcache_records r ON r.namespace = t.namespace AND r.key = t.key
		WHERE t.namespace = $1 AND t.tag = $2 AND t.key > $3
			AND (r.expires_at IS NULL OR r.expires_at > now())
		ORDER BY t.tag, t.key LIMIT $4`
	qFlush = `WITH l AS (DELETE FROM fxcache_locks WHERE namespace = $1)
		DELETE FROM fxcache_records WHERE namespace = $1`
	// A bounded batch through the expiry index, oldest first (the ORDER BY makes
	// the index the plan whatever the statistics say). FOR UPDATE SKIP LOCKED
	// lets collectors of several processes share the work: a record one of
	// them locked is skipped by the others, and one it deleted is gone for
	// them, so each is returned once. The rows are deleted by their ctid (a
	// TID scan, not a join that may walk the table); the fields are read from
	// the statement's snapshot, which still has them.
	qCollect = `WITH d AS (
			DELETE FROM fxcache_records WHERE ctid = ANY (ARRAY(
				SELECT ctid FROM fxcache_records
				WHERE namespace = $1 AND expires_at <= coalesce($2, now())
				ORDER BY expires_at LIMIT $3
				FOR UPDATE SKIP LOCKED))
			RETURNING namespace, key, version, expires_at, tags
		), l AS (
			DELETE FROM fxcache_locks WHERE namespace = $1 AND expires_at <= now()
		)
		SELECT r.key, r.version, r.expires_at, array_to_string(r.tags, ' '), f.name, f.value, f.version
		FROM d AS r LEFT JOIN LATERAL (SELECT * FROM fxcache_fields f
			WHERE f.namespace = r.namespace AND f.key = r.key AND f.name = ANY ($4)
			OFFSET 0) f ON true`
	qLock = `INSERT INTO fxcache_locks AS l (namespace, name, token, expires_at)
		VALUES ($1, $2, $3, now() + $4::bigint * interval '1 microsecond')
		ON CONFLICT (namespace, name) DO UPDATE
		SET token = EXCLUDED.token, expires_at = EXCLUDED.expires_at
		WHERE l.expires_at <= now()`
	qUnlock = `DELETE FROM fxcache_locks WHERE namespace = $1 AND name = $2 AND token = $3 AND ` + live
)

// rows scans result rows of qRead's shape into row.
func scanRows(rows pgx.Rows, row func(*sqlcommon.Row)) error {
	defer rows.Close()
	var (
		r                 sqlcommon.Row
		key, tags, name   pgtype.DriverBytes
		value             pgtype.DriverBytes
		version, fversion pgtype.Int8
		expires           pgtype.Timestamptz
	)
	for rows.Next() {
		if err := rows.Scan(&key, &version, &expires, &tags, &name, &value, &fversion); err != nil {
			return err
		}
		r = sqlcommon.Row{Key: key, Version: version.Int64, Tags: tags, Field: name, Value: value, FieldVersion: fversion.Int64}
		if expires.Valid {
			r.Expires = expires.Time
		}
		row(&r)
	}
	return rows.Err()
}

func (d *driver) Read(ctx context.Context, ns string, keys, fields []string, row func(*sqlcommon.Row)) error {
	if fields == nil {
		fields = []string{}
	}
	var (
		rows pgx.Rows
		err  error
	)
	if len(keys) == 1 {
		rows, err = d.pool.Query(ctx, qRead, ns, keys[0], fields)
	} else {
		rows, err = d.pool.Query(ctx, qReadMany, ns, keys, fields)
	}
	if err != nil {
		return err
	}
	return scanRows(rows, row)
}

func (d *driver) Write(ctx context.Context, ns, key string, p *sqlcommon.Plan) (sqlcommon.Outcome, error) {
	var expires any // NULL unless set
	if p.Expiry == sqlcommon.ExpirySet {
		expires = p.Expires
	}
	var (
		version int64
		field   pgtype.Text
		have    pgtype.Int8
	)
	err := retry(func() error {
		return d.pool.QueryRow(ctx, qWrite, ns, key, p.Create, p.SetNames, p.SetValues, p.Remove,
			p.CheckNames, p.CheckVersions, p.AddTags, p.RemoveTags, int32(p.Expiry), expires).
			Scan(&version, &field, &have)
	})
	if err != nil {
		return sqlcommon.Outcome{}, err
	}
	out := sqlcommon.Outcome{Version: cache.Version(version)}
	if version == 0 && field.Valid {
		out.Exists = field.String == ""
		out.Field, out.Have = field.String, cache.Version(have.Int64)
	}
	return out, nil
}

func (d *driver) Delete(ctx context.Context, ns string, keys []string) (int, error) {
	var n int64
	err := retry(func() error { return d.pool.QueryRow(ctx, qDelete, ns, keys).Scan(&n) })
	return int(n), err
}

func (d *driver) Page(ctx context.Context, ns, tag, after string, limit int) ([]string, error) {
	var (
		rows pgx.Rows
		err  error
	)
	if tag == "" {
		rows, err = d.pool.Query(ctx, qKeys, ns, after, limit)
	} else {
		rows, err = d.pool.Query(ctx, qTagged, ns, tag, after, limit)
	}
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func (d *driver) Flush(ctx context.Context, ns string) error {
	return retry(func() error {
		_, err := d.pool.Exec(ctx, qFlush, ns)
		return err
	})
}

func (d *driver) Collect(ctx context.Context, ns string, before time.Time, max int, fields []string, row func(*sqlcommon.Row)) error {
	var at any // NULL: the database's now()
	if !before.IsZero() {
		at = before
	}
	if fields == nil {
		fields = []string{}
	}
	// Not retried: a failure may come after rows went to row.
	rows, err := d.pool.Query(ctx, qCollect, ns, at, max, fields)
	if err != nil {
		return err
	}
	return scanRows(rows, row)
}

func (d *driver) Lock(ctx context.Context, ns, name, token string, ttl time.Duration) (bool, error) {
	micros := (ttl + time.Microsecond - 1) / time.Microsecond
	var tag pgconn.CommandTag
	err := retry(func() error {
		var err error
		tag, err = d.pool.Exec(ctx, qLock, ns, name, token, int64(micros))
		return err
	})
	return tag.RowsAffected() == 1, err
}

func (d *driver) Unlock(ctx context.Context, ns, name, token string) (bool, error) {
	tag, err := d.pool.Exec(ctx, qUnlock, ns, name, token)
	return tag.RowsAffected() == 1, err
}
