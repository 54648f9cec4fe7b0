package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fxsession/fxsession/cache/internal/sqlcommon"
)

// schemaLockKey is the transaction-scoped advisory lock that serialises schema
// creation between processes starting at the same time ("fxcache" in ASCII).
const schemaLockKey = 0x66786361636865

// schemaV1 creates version 1 of the schema. Every identifier column uses the "C"
// collation: keys are ASCII, comparisons are bytewise and cheap, and keyset
// pagination does not depend on the database's locale.
var schemaV1 = []string{
	`CREATE SEQUENCE IF NOT EXISTS fxcache_version AS bigint MINVALUE 1`,
	`CREATE TABLE IF NOT EXISTS fxcache_entries (
		namespace  text COLLATE "C" NOT NULL,
		key        text COLLATE "C" NOT NULL,
		value      bytea NOT NULL,
		version    bigint NOT NULL,
		expires_at timestamptz,
		PRIMARY KEY (namespace, key)
	)`,
	// Garbage collection walks this index; entries that never expire are not in it.
	`CREATE INDEX IF NOT EXISTS fxcache_entries_expiry ON fxcache_entries (namespace, expires_at)
		WHERE expires_at IS NOT NULL`,
	`CREATE TABLE IF NOT EXISTS fxcache_tags (
		namespace text COLLATE "C" NOT NULL,
		tag       text COLLATE "C" NOT NULL,
		key       text COLLATE "C" NOT NULL,
		PRIMARY KEY (namespace, tag, key),
		FOREIGN KEY (namespace, key) REFERENCES fxcache_entries (namespace, key) ON DELETE CASCADE
	)`,
	// An entry's tags, in order: for reads, for replacing them, for the cascade.
	`CREATE INDEX IF NOT EXISTS fxcache_tags_entry ON fxcache_tags (namespace, key, tag)`,
	`CREATE TABLE IF NOT EXISTS fxcache_locks (
		namespace  text COLLATE "C" NOT NULL,
		name       text COLLATE "C" NOT NULL,
		token      text NOT NULL,
		expires_at timestamptz NOT NULL,
		PRIMARY KEY (namespace, name)
	)`,
}

// migrate creates the schema when it is missing and checks its version. It runs
// in one transaction under an advisory lock, so concurrent first starts are safe.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(schemaLockKey)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS fxcache_schema (
			id      int PRIMARY KEY CHECK (id = 1),
			version int NOT NULL
		)`); err != nil {
			return err
		}
		var v int
		err := tx.QueryRow(ctx, `SELECT version FROM fxcache_schema WHERE id = 1`).Scan(&v)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			v = 0
		case err != nil:
			return err
		}
		switch {
		case v == sqlcommon.SchemaVersion:
			return nil
		case v > sqlcommon.SchemaVersion:
			return fmt.Errorf("pgstore: the database holds cache schema version %d, newer than this release understands (%d): upgrade fxsession", v, sqlcommon.SchemaVersion)
		}
		// v == 0: a fresh database. Later releases add "case v == 1: migrate to 2".
		for _, stmt := range schemaV1 {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `INSERT INTO fxcache_schema (id, version) VALUES (1, $1)
			ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version`, sqlcommon.SchemaVersion)
		return err
	})
}
