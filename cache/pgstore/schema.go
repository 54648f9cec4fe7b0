package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fxsession/fxsession/cache/internal/sqlcommon"
)

// schemaLockKey is the transaction-scoped advisory lock that serialises schema
// creation between processes starting at the same time ("fxcache" in ASCII).
const schemaLockKey = 0x66786361636865

// schema returns the statements that create the current version of the schema. Every identifier column
// uses the "C" collation: keys are ASCII, comparisons are bytewise and cheap,
// and keyset pagination does not depend on the database's locale.
func schema() []string {
	return []string{
		// Versions of every write: never 0, never given twice, growing.
		`CREATE SEQUENCE fxcache_version AS bigint MINVALUE 1`,
		`CREATE TABLE fxcache_records (
		namespace  text COLLATE "C" NOT NULL,
		key        text COLLATE "C" NOT NULL,
		version    bigint NOT NULL,
		expires_at timestamptz,
		tags       text[] COLLATE "C" NOT NULL,
		PRIMARY KEY (namespace, key)
	)`,
		// Garbage collection walks this index; records that never expire are not in it.
		`CREATE INDEX fxcache_records_expiry ON fxcache_records (namespace, expires_at)
		WHERE expires_at IS NOT NULL`,
		`CREATE TABLE fxcache_fields (
		namespace text COLLATE "C" NOT NULL,
		key       text COLLATE "C" NOT NULL,
		name      text COLLATE "C" NOT NULL,
		version   bigint NOT NULL,
		value     bytea NOT NULL,
		PRIMARY KEY (namespace, key, name),
		FOREIGN KEY (namespace, key) REFERENCES fxcache_records (namespace, key) ON DELETE CASCADE
	)`,
		`CREATE TABLE fxcache_tags (
		namespace text COLLATE "C" NOT NULL,
		tag       text COLLATE "C" NOT NULL,
		key       text COLLATE "C" NOT NULL,
		PRIMARY KEY (namespace, tag, key),
		FOREIGN KEY (namespace, key) REFERENCES fxcache_records (namespace, key) ON DELETE CASCADE
	)`,
		// For the cascade: a record's tag rows without walking the tag's keys.
		`CREATE INDEX fxcache_tags_record ON fxcache_tags (namespace, key)`,
		`CREATE TABLE fxcache_locks (
		namespace  text COLLATE "C" NOT NULL,
		name       text COLLATE "C" NOT NULL,
		token      text NOT NULL,
		expires_at timestamptz NOT NULL,
		PRIMARY KEY (namespace, name)
	)`,
		writeFunction,
	}
}

// writeFunction is a whole Write, checked and applied in one call, so that a
// Write is one statement and one round trip. It locks the record's row first;
// every later statement of the function takes a fresh snapshot, so the field
// versions it checks are the latest committed ones and stay so until it
// commits (every writer of a record holds that row lock). The version is drawn
// after the lock, so a record's versions grow.
//
// It returns o_version > 0 when it wrote; otherwise it changed nothing, and
// o_field says why: NULL, no live record to change; ”, a live record is in the
// way of a create; a field name, that field's version is o_have, not the one
// expected.
const writeFunction = `CREATE FUNCTION fxcache_write(
	p_ns text, p_key text, p_create boolean,
	p_set_names text[], p_set_values bytea[], p_remove text[],
	p_check_names text[], p_check_versions bigint[],
	p_add_tags text[], p_remove_tags text[],
	p_expiry int, p_expires timestamptz,
	OUT o_version bigint, OUT o_field text, OUT o_have bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
	cur_expires timestamptz;
	cur_tags    text[];
	found_row   boolean;
	live        boolean;
	new_tags    text[];
BEGIN
	o_version := 0;
	SELECT r.expires_at, r.tags INTO cur_expires, cur_tags
		FROM fxcache_records r
		WHERE r.namespace = p_ns AND r.key = p_key
		FOR NO KEY UPDATE;
	found_row := FOUND;
	live := found_row AND (cur_expires IS NULL OR cur_expires > now());
	IF p_create AND live THEN
		o_field := '';
		RETURN;
	ELSIF NOT p_create AND NOT live THEN
		RETURN;
	END IF;

	IF cardinality(p_check_names) > 0 THEN
		SELECT c.name, coalesce(f.version, 0) INTO o_field, o_have
			FROM unnest(p_check_names, p_check_versions) AS c(name, want)
			LEFT JOIN fxcache_fields f
				ON live AND f.namespace = p_ns AND f.key = p_key AND f.name = c.name
			WHERE coalesce(f.version, 0) <> c.want
			LIMIT 1;
		IF FOUND THEN
			RETURN;
		END IF;
	END IF;

	IF p_create THEN
		IF found_row THEN -- an expired record: replaced, fields and tags too
			DELETE FROM fxcache_records WHERE namespace = p_ns AND key = p_key;
		END IF;
		INSERT INTO fxcache_records (namespace, key, version, expires_at, tags)
			VALUES (p_ns, p_key, nextval('fxcache_version'), CASE WHEN p_expiry = 2 THEN p_expires END, p_add_tags)
			ON CONFLICT DO NOTHING
			RETURNING version INTO o_version;
		IF NOT FOUND THEN -- created meanwhile by another writer
			o_version := 0;
			o_field := '';
			RETURN;
		END IF;
		INSERT INTO fxcache_fields (namespace, key, name, version, value)
			SELECT p_ns, p_key, u.n, o_version, u.v FROM unnest(p_set_names, p_set_values) AS u(n, v);
		INSERT INTO fxcache_tags (namespace, tag, key)
			SELECT p_ns, t, p_key FROM unnest(p_add_tags) AS t;
		RETURN;
	END IF;

	new_tags := cur_tags;
	IF cardinality(p_add_tags) > 0 OR cardinality(p_remove_tags) > 0 THEN
		new_tags := ARRAY(SELECT DISTINCT t COLLATE "C" FROM unnest(cur_tags || p_add_tags) AS t
			WHERE t <> ALL (p_remove_tags) ORDER BY 1);
	END IF;
	UPDATE fxcache_records SET
			version = nextval('fxcache_version'),
			expires_at = CASE p_expiry WHEN 0 THEN expires_at WHEN 1 THEN NULL ELSE p_expires END,
			tags = new_tags
		WHERE namespace = p_ns AND key = p_key
		RETURNING version INTO o_version;
	IF cardinality(p_remove) > 0 THEN
		DELETE FROM fxcache_fields WHERE namespace = p_ns AND key = p_key AND name = ANY (p_remove);
	END IF;
	IF cardinality(p_set_names) > 0 THEN
		INSERT INTO fxcache_fields (namespace, key, name, version, value)
			SELECT p_ns, p_key, u.n, o_version, u.v FROM unnest(p_set_names, p_set_values) AS u(n, v)
			ON CONFLICT (namespace, key, name) DO UPDATE SET version = EXCLUDED.version, value = EXCLUDED.value;
	END IF;
	IF new_tags <> cur_tags THEN -- the tag index changes only with the record's tags
		DELETE FROM fxcache_tags
			WHERE namespace = p_ns AND key = p_key AND tag = ANY (cur_tags) AND tag <> ALL (new_tags);
		INSERT INTO fxcache_tags (namespace, tag, key)
			SELECT p_ns, t, p_key FROM unnest(new_tags) AS t WHERE t <> ALL (cur_tags);
	END IF;
END
$fn$`

// migrate creates the schema when it is missing and checks its version. It runs
// in one transaction under an advisory lock, so concurrent first starts are
// safe; each statement is bounded by timeout.
func migrate(ctx context.Context, pool *pgxpool.Pool, timeout time.Duration) (created bool, err error) {
	step := func(f func(ctx context.Context) error) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return f(ctx)
	}
	var tx pgx.Tx
	if err := step(func(ctx context.Context) (err error) { tx, err = pool.Begin(ctx); return err }); err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			_ = step(tx.Rollback)
		}
	}()
	exec := func(query string) error {
		return step(func(ctx context.Context) error { _, err := tx.Exec(ctx, query); return err })
	}
	version := func(query string) (v int, err error) {
		err = step(func(ctx context.Context) error { return tx.QueryRow(ctx, query).Scan(&v) })
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, nil
		}
		return v, err
	}
	if err := exec(fmt.Sprintf(`SELECT pg_advisory_xact_lock(%d)`, schemaLockKey)); err != nil {
		return false, err
	}
	if created, err = sqlcommon.Migrate(exec, version, schema()); err != nil {
		return false, err
	}
	return created, step(tx.Commit)
}
