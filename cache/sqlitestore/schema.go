package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/fxsession/fxsession/cache/internal/sqlcommon"
)

// schemaV1 creates version 1 of the schema. Times are Unix nanoseconds; NULL
// means "never expires". Text comparisons are SQLite's default BINARY (bytewise),
// which keyset pagination relies on.
var schemaV1 = []string{
	// The version counter: one row, bumped inside each write transaction, so
	// versions grow strictly and are never given twice, across processes too.
	`CREATE TABLE IF NOT EXISTS fxcache_seq (
		id INTEGER PRIMARY KEY CHECK (id = 1),
		v  INTEGER NOT NULL
	)`,
	`INSERT INTO fxcache_seq (id, v) VALUES (1, 0) ON CONFLICT (id) DO NOTHING`,
	`CREATE TABLE IF NOT EXISTS fxcache_entries (
		namespace  TEXT NOT NULL,
		key        TEXT NOT NULL,
		value      BLOB NOT NULL,
		version    INTEGER NOT NULL,
		expires_at INTEGER,
		PRIMARY KEY (namespace, key)
	)`,
	// Garbage collection walks this index; entries that never expire are not in it.
	`CREATE INDEX IF NOT EXISTS fxcache_entries_expiry ON fxcache_entries (namespace, expires_at)
		WHERE expires_at IS NOT NULL`,
	`CREATE TABLE IF NOT EXISTS fxcache_tags (
		namespace TEXT NOT NULL,
		tag       TEXT NOT NULL,
		key       TEXT NOT NULL,
		PRIMARY KEY (namespace, tag, key),
		FOREIGN KEY (namespace, key) REFERENCES fxcache_entries (namespace, key) ON DELETE CASCADE
	) WITHOUT ROWID`,
	`CREATE INDEX IF NOT EXISTS fxcache_tags_entry ON fxcache_tags (namespace, key)`,
	`CREATE TABLE IF NOT EXISTS fxcache_locks (
		namespace  TEXT NOT NULL,
		name       TEXT NOT NULL,
		token      TEXT NOT NULL,
		expires_at INTEGER NOT NULL,
		PRIMARY KEY (namespace, name)
	) WITHOUT ROWID`,
}

// migrate creates the schema when it is missing and checks its version, in one
// BEGIN IMMEDIATE transaction on the writer, so concurrent first starts (several
// processes) are serialised by SQLite's write lock.
func migrate(ctx context.Context, w *sql.DB) (err error) {
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS fxcache_schema (
		id      INTEGER PRIMARY KEY CHECK (id = 1),
		version INTEGER NOT NULL
	)`); err != nil {
		return err
	}
	var v int
	err = tx.QueryRowContext(ctx, `SELECT version FROM fxcache_schema WHERE id = 1`).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		v = 0
	case err != nil:
		return err
	}
	switch {
	case v == sqlcommon.SchemaVersion:
		return tx.Commit()
	case v > sqlcommon.SchemaVersion:
		return fmt.Errorf("sqlitestore: the database holds cache schema version %d, newer than this release understands (%d): upgrade fxsession", v, sqlcommon.SchemaVersion)
	}
	// v == 0: a fresh database. Later releases add "case v == 1: migrate to 2".
	for _, stmt := range schemaV1 {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO fxcache_schema (id, version) VALUES (1, ?)
		ON CONFLICT (id) DO UPDATE SET version = excluded.version`, sqlcommon.SchemaVersion); err != nil {
		return err
	}
	return tx.Commit()
}
