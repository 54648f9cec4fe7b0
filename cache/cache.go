// Package cache is fxsession's storage layer: a small key/value store with tags,
// lifetimes, versioned writes, locks, streaming iteration and garbage collection,
// modelled on Neos Flow's caching framework. Sessions are stored through it, but it
// is usable on its own.
//
// A [Backend] is bound to one namespace: two backends opened on the same folder or
// Redis server with different namespaces never see each other's entries (Flow's
// per-context cache directories). [Backend.Sub] derives a child namespace that shares
// the parent's connection.
//
// The backends live in their own packages so that an application only links what
// it uses:
//
//   - [github.com/fxsession/fxsession/cache/memstore]: in process, for tests and single-process use.
//   - [github.com/fxsession/fxsession/cache/filestore]: the default; one file per entry, crash safe, shared by processes.
//   - [github.com/fxsession/fxsession/cache/redisstore]: go-redis UniversalClient (single node, Sentinel, Cluster).
//   - [github.com/fxsession/fxsession/cache/pgstore] and [github.com/fxsession/fxsession/cache/sqlitestore]: SQL.
//
// Every backend passes the conformance suite in
// [github.com/fxsession/fxsession/cache/cachetest].
//
// # Keys, tags and namespaces
//
// Keys and tags are 1 to [MaxKeyLen] bytes from the set [A-Za-z0-9] and "-_.:@".
// Namespaces use the same set. Anything else is refused with [ErrInvalidKey] before
// the store is touched. Values larger than the backend's limit (default
// [DefaultMaxValueSize], 1 MiB) are refused with [ErrValueTooLarge].
//
// # Versions
//
// Every write gives an entry a new [Version]. A present entry never has version 0,
// and a deleted and re-created entry does not get its old version back, so
// [Backend.CompareAndSet] is safe against the ABA problem.
package cache

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"time"
)

// Sentinel errors. Backends wrap them with %w; match them with [errors.Is].
var (
	// ErrNotFound: the entry does not exist or has expired.
	ErrNotFound = errors.New("cache: entry not found")
	// ErrConflict: a CompareAndSet found a version other than the expected one.
	ErrConflict = errors.New("cache: version conflict")
	// ErrLocked: the lock is held by another owner.
	ErrLocked = errors.New("cache: lock held by another owner")
	// ErrInvalidKey: a key, tag or namespace is empty, too long or has a character
	// outside the documented set.
	ErrInvalidKey = errors.New("cache: invalid key")
	// ErrValueTooLarge: a value is larger than the backend's MaxValueSize.
	ErrValueTooLarge = errors.New("cache: value too large")
	// ErrUnavailable: the store could not be reached or did not answer in time
	// (server down, timeout, unwritable folder). The underlying error is wrapped too.
	ErrUnavailable = errors.New("cache: store unavailable")
	// ErrClosed: the backend was closed.
	ErrClosed = errors.New("cache: backend closed")
)

// MaxKeyLen is the longest key, tag or namespace accepted.
const MaxKeyLen = 250

// DefaultMaxValueSize is the value size limit used when a backend's options leave it 0.
const DefaultMaxValueSize = 1 << 20

// Version identifies one write of an entry. 0 means "absent": pass it to
// [Backend.CompareAndSet] to create an entry that must not exist yet.
type Version uint64

// Item is what is written: a key, its value, its tags and its lifetime.
type Item struct {
	Key   string
	Value []byte
	// Tags group entries for [Backend.FlushByTag] and [Backend.Tagged].
	Tags []string
	// TTL is the lifetime; 0 means the entry never expires.
	TTL time.Duration
}

// Entry is what is read back.
type Entry struct {
	Key     string
	Value   []byte
	Tags    []string
	Version Version
	// Expires is the moment the entry expires; the zero time means never.
	Expires time.Time
}

// Exists reports whether the entry was found (GetMany yields absent entries with
// version 0 in the place of missing keys).
func (e Entry) Exists() bool { return e.Version != 0 }

// Backend is one namespace of a store. All methods are safe for concurrent use and
// honour the context's deadline and cancellation.
type Backend interface {
	// Get reads one entry; a missing or expired one is ErrNotFound.
	Get(ctx context.Context, key string) (Entry, error)
	// GetMany reads many entries in one round trip. The result has one Entry per key,
	// in the order of keys; a missing key yields an Entry with only Key set
	// (Exists reports false).
	GetMany(ctx context.Context, keys []string) ([]Entry, error)
	// Set writes an entry, replacing the old one, its tags and its lifetime.
	// It returns the entry's new version.
	Set(ctx context.Context, item Item) (Version, error)
	// SetMany writes many entries in one round trip (or one transaction). It is not
	// atomic across keys unless the backend documents so.
	SetMany(ctx context.Context, items []Item) error
	// CompareAndSet writes item only when the stored version equals expected
	// (0: only when the key is absent). It returns the new version, or an error
	// wrapping ErrConflict.
	CompareAndSet(ctx context.Context, item Item, expected Version) (Version, error)
	// Delete removes an entry; removing a missing one is not an error. It reports
	// whether an entry was removed.
	Delete(ctx context.Context, key string) (bool, error)
	// Has reports whether an unexpired entry exists.
	Has(ctx context.Context, key string) (bool, error)
	// Flush removes every entry of this namespace. Sub namespaces are separate
	// namespaces and are flushed on their own.
	Flush(ctx context.Context) error
	// FlushByTag removes every entry carrying tag and returns how many went.
	FlushByTag(ctx context.Context, tag string) (int, error)
	// Tagged streams the keys of the unexpired entries carrying tag.
	Tagged(ctx context.Context, tag string) iter.Seq2[string, error]
	// All streams the unexpired entries of the namespace in no particular order,
	// without loading the namespace into memory. Entries may be deleted while the
	// iteration runs; entries written meanwhile may or may not be seen.
	All(ctx context.Context) iter.Seq2[Entry, error]
	// CollectGarbage removes expired entries (in bounded batches) and returns how
	// many went. Backends with native expiry return 0, nil.
	CollectGarbage(ctx context.Context) (int, error)
	// Lock takes the lock called name for ttl and returns the owner token, or an
	// error wrapping ErrLocked while another owner holds it. An expired lock can be
	// taken by anyone. Locks live apart from entries: they are never returned by
	// Get, All or Tagged.
	Lock(ctx context.Context, name string, ttl time.Duration) (token string, err error)
	// Unlock releases the lock if token still owns it and reports whether it did.
	// After the lock expired and was taken by another, the old owner's Unlock
	// returns false and leaves the new owner's lock alone.
	Unlock(ctx context.Context, name, token string) (bool, error)
	// Sub returns the child namespace name, sharing this backend's connection.
	// Its full namespace is this namespace, a ".", and name.
	Sub(name string) (Backend, error)
	// Namespace is this backend's full namespace.
	Namespace() string
	// Close releases the backend's resources. Closing a Sub is a no-op; closing
	// the root closes every Sub.
	Close() error
}

// ValidateKey checks a key, tag, lock name or namespace against the documented
// rules and returns an error wrapping ErrInvalidKey when it breaks them.
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

// ValidateItem checks an item's key, tags, lifetime and value size against maxValue
// (0 means DefaultMaxValueSize).
func ValidateItem(it Item, maxValue int) error {
	if err := ValidateKey(it.Key); err != nil {
		return err
	}
	for _, t := range it.Tags {
		if err := ValidateKey(t); err != nil {
			return fmt.Errorf("tag: %w", err)
		}
	}
	if it.TTL < 0 {
		return fmt.Errorf("cache: negative TTL %v for %q", it.TTL, it.Key)
	}
	if maxValue <= 0 {
		maxValue = DefaultMaxValueSize
	}
	if len(it.Value) > maxValue {
		return fmt.Errorf("%w: %q is %d bytes, limit %d", ErrValueTooLarge, it.Key, len(it.Value), maxValue)
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

// WaitLock takes the lock called name on b, retrying with a growing, jittered pause
// while another owner holds it, until wait has passed or ctx ends. It returns the
// owner token or an error wrapping ErrLocked.
func WaitLock(ctx context.Context, b Backend, name string, ttl, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	pause := 2 * time.Millisecond
	for {
		token, err := b.Lock(ctx, name, ttl)
		if err == nil || !errors.Is(err, ErrLocked) {
			return token, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return "", err
		}
		d := min(pause/2+rand.N(pause), left)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", fmt.Errorf("cache: waiting for lock %q: %w", name, ctx.Err())
		case <-t.C:
		}
		pause = min(pause*2, 100*time.Millisecond)
	}
}
