// Package sqlcommon holds what the SQL backends (pgstore and sqlitestore) share:
// option defaults, input validation, lock tokens, tag normalisation and keyset
// paging.
package sqlcommon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// SchemaVersion is the schema version this release writes and understands. Both
// SQL backends record it in their schema table; a later release that changes the
// tables migrates from the version it finds there.
const SchemaVersion = 1

// Defaults shared by the SQL backends.
const (
	DefaultStatementTimeout = 2 * time.Second
	DefaultGCBatchSize      = 1000
	DefaultPageSize         = 500
	DefaultNamespace        = "default"
)

// Config is the normalised form of a backend's options.
type Config struct {
	Namespace        string
	MaxValueSize     int
	StatementTimeout time.Duration
	GCBatchSize      int
	PageSize         int
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
	if c.GCBatchSize <= 0 {
		c.GCBatchSize = DefaultGCBatchSize
	}
	if c.PageSize <= 0 {
		c.PageSize = DefaultPageSize
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Token returns a fresh lock owner token: 128 random bits in hex.
func Token() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// Tags returns the item's tags sorted and without duplicates (a fresh slice).
func Tags(tags []string) []string {
	if len(tags) == 0 {
		return nil
	}
	out := slices.Clone(tags)
	slices.Sort(out)
	return slices.Compact(out)
}

// ValidateKeys validates every key.
func ValidateKeys(keys []string) error {
	for _, k := range keys {
		if err := cache.ValidateKey(k); err != nil {
			return err
		}
	}
	return nil
}

// ValidateLock validates a lock name and lifetime.
func ValidateLock(name string, ttl time.Duration) error {
	if err := cache.ValidateKey(name); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if ttl <= 0 {
		return fmt.Errorf("cache: lock %q: lifetime %v is not positive", name, ttl)
	}
	return nil
}

// Micros converts a lifetime to whole microseconds, rounding up so that a
// positive lifetime never becomes 0 ("never expires").
func Micros(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Microsecond - 1) / time.Microsecond)
}

// Dedupe returns the items with one item per key, the last one given winning,
// sorted by key (a consistent order in which to lock rows), and validated.
func Dedupe(items []cache.Item, maxValue int) ([]cache.Item, error) {
	for _, it := range items {
		if err := cache.ValidateItem(it, maxValue); err != nil {
			return nil, err
		}
	}
	out := slices.Clone(items)
	// A stable sort keeps the given order among equal keys; keep the last.
	slices.SortStableFunc(out, func(a, b cache.Item) int {
		switch {
		case a.Key < b.Key:
			return -1
		case a.Key > b.Key:
			return 1
		}
		return 0
	})
	w := 0
	for i := range out {
		if i+1 < len(out) && out[i+1].Key == out[i].Key {
			continue
		}
		out[w] = out[i]
		w++
	}
	return out[:w], nil
}

// Pages streams the values of a keyset-paginated query. fetch reads the page
// after the cursor (the empty string before the first page) and returns its
// values and the cursor of its last row; a page shorter than size ends the
// stream. No connection is held while the consumer runs.
func Pages[V any](ctx context.Context, size int, fetch func(ctx context.Context, after string) ([]V, string, error)) iter.Seq2[V, error] {
	return func(yield func(V, error) bool) {
		after := ""
		for {
			page, last, err := fetch(ctx, after)
			if err != nil {
				var zero V
				yield(zero, err)
				return
			}
			for _, v := range page {
				if err := ctx.Err(); err != nil {
					var zero V
					yield(zero, cache.Unavailable("cache: iterate", err))
					return
				}
				if !yield(v, nil) {
					return
				}
			}
			if len(page) < size {
				return
			}
			after = last
		}
	}
}
