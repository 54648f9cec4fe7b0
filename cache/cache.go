// Package cache is fxsession's storage layer: a record store with per-field
// versions, tags, expiry, locks, streaming iteration and garbage collection. Sessions
// are stored through it, one record per session, but it is usable on its own.
//
// # Records
//
// A record is a set of named fields under one key, with the record's tags and its
// expiry. Each field has its own [Version]. A [Store] reads a record (all of it, or
// the fields named) in one round trip, and changes it with one [Write] in one round
// trip: fields set or removed, each optionally only if its version is still the
// one the caller saw (compare-and-set per field), tags added or removed, the expiry
// moved. A Write is atomic: when one condition fails, nothing changes. A Write
// that does not create the record needs the record to exist, so a write racing a
// [Store.Delete] never brings a deleted record back: nothing is orphaned.
//
// The backends live in their own packages so that an application only links what
// it uses:
//
//   - [github.com/fxsession/fxsession/cache/memstore]: in process, for tests and single-process use.
//   - [github.com/fxsession/fxsession/cache/filestore]: the default; one file per record, crash safe, shared by processes.
//   - [github.com/fxsession/fxsession/cache/redisstore]: one hash per record; go-redis UniversalClient (single node, Sentinel, Cluster).
//   - [github.com/fxsession/fxsession/cache/pgstore] and [github.com/fxsession/fxsession/cache/sqlitestore]: SQL.
//
// Every backend passes the conformance suite in
// [github.com/fxsession/fxsession/cache/cachetest].
//
// # Keys, fields, tags and namespaces
//
// Keys, field names, tags, lock names and namespaces are 1 to [MaxKeyLen] bytes from
// the set [A-Za-z0-9] and "-_.:@". Anything else is refused with [ErrInvalidKey]
// before the store is touched. A field value larger than the backend's limit
// (default [DefaultMaxValueSize], 1 MiB) is refused with [ErrValueTooLarge].
//
// A [Store] is bound to one namespace: two stores opened on the same folder or
// Redis server with different namespaces never see each other's records (Flow's
// per-context cache directories). [Store.Sub] derives a child namespace that shares
// the parent's connection.
//
// # Versions
//
// Every Write gives the record a new [Version], and every field it sets carries it.
// A present record or field never has version 0, and versions never repeat within
// a key, even across a delete and a re-creation, so compare-and-set is safe against
// the ABA problem.
//
// # Expiry
//
// A record may have an expiry ([Write.Expires]). From then on it is absent for
// every read and write, and [Store.CollectGarbage] removes it, reporting each
// removed record to exactly one caller across the processes sharing the store.
// Backends with native expiry (Redis) also drop expired records on their own after a
// documented retention, as a backstop when no collector runs.
//
// # Tags
//
// Tags group records ([Store.Tagged]). A record's own tags ([Record.Tags]) are
// authoritative; the per-tag index a backend keeps is changed only when a record's
// tags change, never on other writes.
package cache

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/fxsession/fxsession/internal/backoff"
)

// Sentinel errors. Backends wrap them with %w; match them with [errors.Is].
var (
	// ErrNotFound: the record does not exist or has expired (also: a Write that
	// needs an existing record found none).
	ErrNotFound = errors.New("cache: record not found")
	// ErrConflict: a condition of a Write failed: a field's version is not the
	// expected one, or a record to create exists already.
	ErrConflict = errors.New("cache: version conflict")
	// ErrLocked: the lock is held by another owner.
	ErrLocked = errors.New("cache: lock held by another owner")
	// ErrInvalidKey: a key, field name, tag, lock name or namespace is empty, too
	// long or has a character outside the documented set.
	ErrInvalidKey = errors.New("cache: invalid key")
	// ErrValueTooLarge: a field value is larger than the backend's MaxValueSize.
	ErrValueTooLarge = errors.New("cache: value too large")
	// ErrUnavailable: the store could not be reached or did not answer in time
	// (server down, timeout, unwritable folder, too few replicas acknowledged a
	// write). The underlying error is wrapped too.
	ErrUnavailable = errors.New("cache: store unavailable")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("cache: store closed")
)

// MaxKeyLen is the longest key, field name, tag, lock name or namespace accepted.
const MaxKeyLen = 250

// DefaultMaxValueSize is the field value size limit used when a backend's options
// leave it 0.
const DefaultMaxValueSize = 1 << 20

// DefaultGCBatchSize is how many expired records one [Store.CollectGarbage] call
// removes when [GCOptions.Max] is 0.
const DefaultGCBatchSize = 1000

// Version identifies one write of a record. 0 means "absent": a [FieldWrite]
// expecting version 0 needs the field to be absent.
type Version uint64

// Field is one named value of a record, as read.
type Field struct {
	Name    string
	Value   []byte
	Version Version
}

// Record is what is read back: the fields asked for (those present), the
// record's tags and expiry, and the version of its last write.
type Record struct {
	Key    string
	Fields []Field
	Tags   []string
	// Expires is the moment the record expires; the zero time means never.
	Expires time.Time
	// Version is the version of the record's last write; 0 when the record is
	// absent ([Store.ReadMany] yields absent records with only Key set).
	Version Version
}

// Exists reports whether the record was found.
func (r Record) Exists() bool { return r.Version != 0 }

// Field returns the field called name, if the record has it.
func (r Record) Field(name string) (Field, bool) {
	for _, f := range r.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// Write is one change of a record, applied atomically by [Store.Write].
type Write struct {
	// Create makes a new record: the write fails with an error matching
	// ErrConflict when a live record exists under the key. Without Create the
	// record must exist (an error matching ErrNotFound otherwise), so a write
	// never recreates a deleted or expired record.
	Create bool
	// Fields are the fields to set or remove, in any order, each name at most
	// once.
	Fields []FieldWrite
	// Expires moves the record's expiry: the zero time keeps it (a created
	// record then never expires), [NoExpiry] removes it, any other time sets it.
	// A time in the past makes the record absent at once.
	Expires time.Time
	// AddTags and RemoveTags change the record's tags (adding a present tag or
	// removing an absent one does nothing). A tag in both is an error.
	AddTags, RemoveTags []string
}

// NoExpiry, as [Write.Expires], makes the record never expire.
var NoExpiry = time.Unix(0, 0).UTC()

// FieldWrite sets or removes one field.
type FieldWrite struct {
	Name string
	// Value is the new value (an empty value is a value); ignored with Remove.
	Value []byte
	// Remove deletes the field (removing an absent field does nothing).
	Remove bool
	// Check makes the write conditional: the whole Write fails with an error
	// matching ErrConflict unless the field's version is Expect (0: the field
	// must be absent).
	Check  bool
	Expect Version
}

// Set returns a FieldWrite that sets name to value unconditionally.
func Set(name string, value []byte) FieldWrite { return FieldWrite{Name: name, Value: value} }

// SetIf returns a FieldWrite that sets name to value if its version is expect
// (0: only if absent).
func SetIf(name string, value []byte, expect Version) FieldWrite {
	return FieldWrite{Name: name, Value: value, Check: true, Expect: expect}
}

// Remove returns a FieldWrite that removes name unconditionally.
func Remove(name string) FieldWrite { return FieldWrite{Name: name, Remove: true} }

// GCOptions tunes one [Store.CollectGarbage] call.
type GCOptions struct {
	// Before: records whose expiry is at or before it are collected (the zero
	// time: the store's current time).
	Before time.Time
	// Max bounds the records removed by the call (0: DefaultGCBatchSize).
	Max int
	// Fields names the fields each removed record is reported with (none: only
	// its key, tags and expiry).
	Fields []string
	// Removed, when set, is called with each record the call removed, after it is
	// gone. A record is reported by exactly one caller, whatever the processes
	// collecting at the same time.
	Removed func(Record)
}

// Store is one namespace of a record store. All methods are safe for concurrent
// use, honour the context's deadline and cancellation, and cost one round trip
// to the store unless documented otherwise (iterations cost one per batch).
type Store interface {
	// Read reads the record under key: the fields named (those present), or all
	// fields when none is named. An absent or expired record is ErrNotFound.
	Read(ctx context.Context, key string, fields ...string) (Record, error)
	// ReadMany reads several records in one round trip (a pipeline or one
	// statement). The result has one Record per key, in the order of keys; an
	// absent one has only Key set (Exists reports false).
	ReadMany(ctx context.Context, keys []string, fields ...string) ([]Record, error)
	// Write applies w to the record under key, atomically, and returns the
	// record's new version, which every field it set carries.
	Write(ctx context.Context, key string, w Write) (Version, error)
	// Delete removes the record, its fields and its tags at once, and reports
	// whether a live record was removed.
	Delete(ctx context.Context, key string) (bool, error)
	// DeleteMany removes several records (in batches of round trips) and returns
	// how many live ones went.
	DeleteMany(ctx context.Context, keys []string) (int, error)
	// Keys streams the keys of the live records of the namespace, in no
	// particular order, without loading the namespace into memory. Records may be
	// deleted while it runs; records written meanwhile may or may not be seen.
	Keys(ctx context.Context) iter.Seq2[string, error]
	// Tagged streams the keys of the live records carrying tag.
	Tagged(ctx context.Context, tag string) iter.Seq2[string, error]
	// Flush removes every record, tag and lock of this namespace. Sub
	// namespaces are separate and are flushed on their own.
	Flush(ctx context.Context) error
	// CollectGarbage removes expired records, at most o.Max of them, reports
	// each to o.Removed, and returns how many it removed. It also removes the
	// store's leftovers (stale index entries, files of interrupted writes).
	CollectGarbage(ctx context.Context, o GCOptions) (int, error)
	// Lock takes the lock called name for ttl and returns the owner token, or an
	// error wrapping ErrLocked while another owner holds it. An expired lock can
	// be taken by anyone. Locks live apart from records.
	Lock(ctx context.Context, name string, ttl time.Duration) (token string, err error)
	// Unlock releases the lock if token still owns it and reports whether it did.
	// After the lock expired and was taken by another, the old owner's Unlock
	// returns false and leaves the new owner's lock alone.
	Unlock(ctx context.Context, name, token string) (bool, error)
	// Sub returns the child namespace name, sharing this store's connection. Its
	// full namespace is this namespace, a ".", and name.
	Sub(name string) (Store, error)
	// Namespace is this store's full namespace.
	Namespace() string
	// Close releases the store's resources. Closing a Sub is a no-op; closing the
	// root closes every Sub. A second Close returns nil.
	Close() error
}

// ValidateKey checks a key, field name, tag, lock name or namespace against the
// documented rules and returns an error wrapping ErrInvalidKey when it breaks
// them.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %d bytes, longer than %d", ErrInvalidKey, len(key), MaxKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if !keyChar[key[i]] {
			return fmt.Errorf("%w: %q has byte %q at %d (allowed: A-Z a-z 0-9 - _ . : @)", ErrInvalidKey, key, key[i], i)
		}
	}
	return nil
}

// ValidateWrite checks a Write against the documented rules: the key, every field
// name and tag, value sizes against maxValue (0 means DefaultMaxValueSize), each
// field named once, no tag both added and removed. Backends call it before they
// touch the store.
func ValidateWrite(key string, w Write, maxValue int) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if maxValue <= 0 {
		maxValue = DefaultMaxValueSize
	}
	for i, f := range w.Fields {
		if err := ValidateKey(f.Name); err != nil {
			return fmt.Errorf("field: %w", err)
		}
		if !f.Remove && len(f.Value) > maxValue {
			return fmt.Errorf("%w: field %q of %q is %d bytes, limit %d", ErrValueTooLarge, f.Name, key, len(f.Value), maxValue)
		}
		for _, g := range w.Fields[:i] {
			if g.Name == f.Name {
				return fmt.Errorf("%w: field %q written twice in one write", ErrInvalidKey, f.Name)
			}
		}
	}
	for _, t := range w.AddTags {
		if err := ValidateKey(t); err != nil {
			return fmt.Errorf("tag: %w", err)
		}
		if slices.Contains(w.RemoveTags, t) {
			return fmt.Errorf("%w: tag %q both added and removed", ErrInvalidKey, t)
		}
	}
	for _, t := range w.RemoveTags {
		if err := ValidateKey(t); err != nil {
			return fmt.Errorf("tag: %w", err)
		}
	}
	return nil
}

// ValidateKeys checks a key and the field names of a read.
func ValidateKeys(key string, fields []string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	for _, f := range fields {
		if err := ValidateKey(f); err != nil {
			return fmt.Errorf("field: %w", err)
		}
	}
	return nil
}

// keyChar is a constant lookup table (never written after initialisation).
var keyChar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-_.:@" {
		t[c] = true
	}
	return t
}()

// JoinNamespace returns the full namespace of child name under parent, validated.
func JoinNamespace(parent, name string) (string, error) {
	if err := ValidateKey(name); err != nil {
		return "", fmt.Errorf("namespace: %w", err)
	}
	if parent == "" {
		return name, nil
	}
	full := parent + "." + name
	if err := ValidateKey(full); err != nil {
		return "", fmt.Errorf("namespace: %w", err)
	}
	return full, nil
}

// Unavailable wraps err, a failure to reach the store during operation op, so that
// it matches both ErrUnavailable and err. A cancelled context is the caller's doing,
// not the store's: it is wrapped without ErrUnavailable. A deadline that ran out
// while waiting for the store counts as unavailable.
func Unavailable(op string, err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
}

// Expired reports whether a record with expiry expires has expired at now (the
// zero time never expires).
func Expired(expires, now time.Time) bool {
	return !expires.IsZero() && !expires.After(now)
}

// NextVersion returns the version a write made at now gives a record whose last
// version was last: larger than last, and at least now in microseconds since the
// Unix epoch, so that a record deleted and created again never repeats a version
// of its earlier life. Backends use it to number their writes.
func NextVersion(last Version, now time.Time) Version {
	v := Version(now.UnixMicro())
	if v <= last {
		v = last + 1
	}
	return v
}

// WaitLock takes the lock called name on s, retrying with a growing, jittered
// pause while another owner holds it, until wait has passed or ctx ends. It
// returns the owner token or an error wrapping ErrLocked.
func WaitLock(ctx context.Context, s Store, name string, ttl, wait time.Duration) (string, error) {
	b := backoff.Backoff{Min: 2 * time.Millisecond, Max: 100 * time.Millisecond, Deadline: time.Now().Add(wait)}
	for {
		token, err := s.Lock(ctx, name, ttl)
		if err == nil || !errors.Is(err, ErrLocked) {
			return token, err
		}
		if !b.Wait(ctx) {
			if ctx.Err() != nil {
				return "", fmt.Errorf("cache: waiting for lock %q: %w", name, ctx.Err())
			}
			return "", err
		}
	}
}
