package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/fxsession/fxsession/cache/internal/sqlcommon"
)

// schema returns the statements that create the current version of the schema. Times are Unix
// microseconds; NULL means "never expires". Text comparisons are SQLite's
// default BINARY (bytewise), which keyset pagination relies on.
func schema() []string {
	return []string{
		// The version counter: one row, bumped inside each write transaction, so
		// versions grow and are never given twice, across processes too.
		`CREATE TABLE fxcache_seq (
		id INTEGER PRIMARY KEY CHECK (id = 1),
		v  INTEGER NOT NULL
	)`,
		`INSERT INTO fxcache_seq (id, v) VALUES (1, 0)`,
		// Small rows: stored in the primary key's b-tree.
		`CREATE TABLE fxcache_records (
		namespace  TEXT NOT NULL,
		key        TEXT NOT NULL,
		version    INTEGER NOT NULL,
		expires_at INTEGER,
		tags       TEXT NOT NULL, -- sorted, separated by spaces
		PRIMARY KEY (namespace, key)
	) WITHOUT ROWID`,
		// Garbage collection walks this index; records that never expire are not in it.
		`CREATE INDEX fxcache_records_expiry ON fxcache_records (namespace, expires_at)
		WHERE expires_at IS NOT NULL`,
		// Values up to MaxValueSize: a rowid table, so that large rows do not
		// bloat the key's b-tree.
		`CREATE TABLE fxcache_fields (
		namespace TEXT NOT NULL,
		key       TEXT NOT NULL,
		name      TEXT NOT NULL,
		version   INTEGER NOT NULL,
		value     BLOB NOT NULL,
		PRIMARY KEY (namespace, key, name),
		FOREIGN KEY (namespace, key) REFERENCES fxcache_records (namespace, key) ON DELETE CASCADE
	)`,
		`CREATE TABLE fxcache_tags (
		namespace TEXT NOT NULL,
		tag       TEXT NOT NULL,
		key       TEXT NOT NULL,
		PRIMARY KEY (namespace, tag, key),
		FOREIGN KEY (namespace, key) REFERENCES fxcache_records (namespace, key) ON DELETE CASCADE
	) WITHOUT ROWID`,
		// For the cascade: a record's tag rows without walking the tag's keys.
		`CREATE INDEX fxcache_tags_record ON fxcache_tags (namespace, key)`,
		`CREATE TABLE fxcache_locks (
		namespace  TEXT NOT NULL,
		name       TEXT NOT NULL,
		token      TEXT NOT NULL,
		expires_at INTEGER NOT NULL,
		PRIMARY KEY (namespace, name)
	) WITHOUT ROWID`,
	}
}

// migrate creates the schema when it is missing and checks its version, in one
// write transaction begun by begin, so concurrent first starts (several
// processes) are serialised by SQLite's write lock. Each statement is bounded
// by timeout.
func migrate(ctx context.Context, begin func(context.Context) (*sql.Tx, error), timeout time.Duration) (created bool, err error) {
	tx, err := begin(ctx)
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	exec := func(query string) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		_, err := tx.ExecContext(ctx, query)
		return err
	}
	version := func(query string) (v int, err error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		err = tx.QueryRowContext(ctx, query).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, nil
		}
		return v, err
	}
	if created, err = sqlcommon.Migrate(exec, version, schema()); err != nil {
		return false, err
	}
	return created, tx.Commit()
}
