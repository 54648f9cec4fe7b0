// Package sqlcommon is the part of the SQL record stores (pgstore and
// sqlitestore) that does not depend on the database: option defaults, input
// validation, the plan of a write, building records from result rows, keyset
// paging, error wrapping, the life of a store (schema check on first use,
// Subs, Close) and the fx module. A backend supplies a [Driver]: its SQL.
//
// Both backends store the same layout, one schema version for both (see
// [SchemaVersion]):
//
//	fxcache_records (namespace, key) PRIMARY KEY, version, expires_at, tags
//	fxcache_fields  (namespace, key, name) PRIMARY KEY, version, value
//	                (namespace, key) REFERENCES fxcache_records ON DELETE CASCADE
//	fxcache_tags    (namespace, tag, key) PRIMARY KEY
//	                (namespace, key) REFERENCES fxcache_records ON DELETE CASCADE
//	fxcache_locks   (namespace, name) PRIMARY KEY, token, expires_at
//	fxcache_schema  (id = 1) PRIMARY KEY, version
//
// A record's tags are kept twice on purpose: in its own row (what a read
// returns, without touching another table) and in fxcache_tags (the index
// Tagged walks), which a write changes only when the record's tags change.
package sqlcommon

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// SchemaVersion is the version of the layout this release writes and reads.
// Version 1 was the key/value layout of earlier development builds (one value
// per key); it was never released and is not migrated.
const SchemaVersion = 2

// Migrate is the schema check both stores make, in a transaction of theirs:
// exec runs a statement and version the query that reads the recorded schema
// version (0 when it finds no row). It creates the version table when missing,
// refuses another version than this release's with an error saying what to do
// (which [Store] does not count as a failure to reach the database), and runs
// schema on a database that has none. It reports whether it did.
func Migrate(exec func(query string) error, version func(query string) (int, error), schema []string) (created bool, err error) {
	if err := exec(`CREATE TABLE IF NOT EXISTS fxcache_schema (
		id      int PRIMARY KEY CHECK (id = 1),
		version int NOT NULL
	)`); err != nil {
		return false, err
	}
	found, err := version(`SELECT version FROM fxcache_schema WHERE id = 1`)
	switch {
	case err != nil:
		return false, err
	case found == SchemaVersion:
		return false, nil
	case found > SchemaVersion:
		return false, schemaError(fmt.Sprintf("the database holds cache schema version %d, newer than this release understands (%d): upgrade fxsession", found, SchemaVersion))
	case found != 0:
		return false, schemaError(fmt.Sprintf("the database holds cache schema version %d, the unreleased key/value layout, which this release (schema %d) does not migrate: drop the fxcache_* tables or use another database", found, SchemaVersion))
	}
	for _, stmt := range schema {
		if err := exec(stmt); err != nil {
			return false, fmt.Errorf("creating the schema: %w", err)
		}
	}
	return true, exec(fmt.Sprintf(`INSERT INTO fxcache_schema (id, version) VALUES (1, %d)`, SchemaVersion))
}

// schemaError is a schema version this release cannot use.
type schemaError string

func (e schemaError) Error() string { return string(e) }

// Defaults of the options both SQL backends have.
const (
	DefaultNamespace        = "default"
	DefaultStatementTimeout = 2 * time.Second
	DefaultBatchSize        = 500
)

// Config is the normalised form of a backend's options.
type Config struct {
	Namespace        string
	MaxValueSize     int
	StatementTimeout time.Duration
	BatchSize        int
	Logger           *slog.Logger
}

// Normalize fills in defaults and validates the namespace.
func (c Config) Normalize() (Config, error) {
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if err := cache.ValidateKey(c.Namespace); err != nil {
		return c, fmt.Errorf("namespace: %w", err)
	}
	if c.MaxValueSize <= 0 {
		c.MaxValueSize = cache.DefaultMaxValueSize
	}
	if c.StatementTimeout <= 0 {
		c.StatementTimeout = DefaultStatementTimeout
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// token returns a fresh lock owner token: 128 random bits in hex.
func token() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// tags returns tags sorted and without duplicates, as a fresh non-nil slice.
func tags(ts []string) []string {
	out := slices.Clone(ts)
	if out == nil {
		out = []string{}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// unique returns keys without duplicates (the first of each kept, order kept).
func unique(keys []string) []string {
	seen := make(map[string]struct{}, len(keys))
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if _, dup := seen[k]; !dup {
			seen[k] = struct{}{}
			out = append(out, k)
		}
	}
	return out
}
