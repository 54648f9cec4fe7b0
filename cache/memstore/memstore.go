// Package memstore is the in-process [cache.Store]: maps guarded by a lock, for
// tests and single-process applications. Records live as long as the process.
// Reads hand out the stored values themselves, without a copy (writes store
// copies and never change them afterwards): do not modify a value read.
//
// Expired records are never returned; [Store.CollectGarbage] removes them (the
// session collector calls it). Sub namespaces share the root's maps and lock but
// never see each other's records.
package memstore

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"iter"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
)

// Options configure a [Store]. The zero value works.
type Options struct {
	// Namespace of the root store; empty means "default".
	Namespace string
	// MaxValueSize is the largest field value accepted; 0 means
	// cache.DefaultMaxValueSize.
	MaxValueSize int
	// Now is the clock that decides expiry (default time.Now); tests that move a
	// session's clock give the store the same one.
	Now func() time.Time
}

// Store is one namespace of an in-memory store. It implements [cache.Store].
type Store struct {
	sh     *shared
	ns     string
	closed *atomic.Bool // shared by a root and its Subs
	root   bool
}

var _ cache.Store = (*Store)(nil)

// shared is the memory a root store, its Subs and its [Store.Namespaced]
// siblings have in common.
type shared struct {
	mu       sync.RWMutex
	spaces   map[string]*space
	last     cache.Version // the last version handed out, store-wide
	maxValue int
	now      func() time.Time
}

// space is one namespace's data.
type space struct {
	records map[string]*record
	tags    map[string]map[string]struct{}
	locks   map[string]lock
}

type record struct {
	fields  []field
	tags    []string
	expires time.Time
	version cache.Version
}

type field struct {
	name    string
	value   []byte
	version cache.Version
}

type lock struct {
	token   string
	expires time.Time
}

// New returns a root store on fresh memory. Close it when done.
func New(opts Options) *Store {
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if opts.MaxValueSize <= 0 {
		opts.MaxValueSize = cache.DefaultMaxValueSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	sh := &shared{spaces: map[string]*space{}, maxValue: opts.MaxValueSize, now: opts.Now}
	return &Store{sh: sh, ns: opts.Namespace, closed: new(atomic.Bool), root: true}
}

// Namespaced returns another root store on the same memory, in namespace ns: two
// handles on one store, as two processes sharing a server have. Closing it does
// not close s.
func (s *Store) Namespaced(ns string) (*Store, error) {
	if err := cache.ValidateKey(ns); err != nil {
		return nil, fmt.Errorf("memstore: namespace: %w", err)
	}
	return &Store{sh: s.sh, ns: ns, closed: new(atomic.Bool), root: true}, nil
}

// Module provides a memory [cache.Store], closed when the fx app stops.
func Module(opts Options) fx.Option {
	return fx.Module("fxsession.cache.memory",
		fx.Provide(func(lc fx.Lifecycle) (cache.Store, error) {
			if opts.Namespace != "" {
				if err := cache.ValidateKey(opts.Namespace); err != nil {
					return nil, fmt.Errorf("memstore: namespace: %w", err)
				}
			}
			s := New(opts)
			lc.Append(fx.StopHook(s.Close))
			return s, nil
		}),
	)
}

// Namespace is the store's full namespace.
func (s *Store) Namespace() string { return s.ns }

// Sub returns the child namespace name, sharing this store's memory.
func (s *Store) Sub(name string) (cache.Store, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("memstore: sub %q: %w", name, cache.ErrClosed)
	}
	ns, err := cache.JoinNamespace(s.ns, name)
	if err != nil {
		return nil, fmt.Errorf("memstore: %w", err)
	}
	return &Store{sh: s.sh, ns: ns, closed: s.closed}, nil
}

// Close closes a root store and its Subs; closing a Sub does nothing.
func (s *Store) Close() error {
	if s.root {
		s.closed.Store(true)
	}
	return nil
}

// check fails a call on a closed store or an ended context.
func (s *Store) check(ctx context.Context, op string) error {
	if s.closed.Load() {
		return fmt.Errorf("memstore: %s: %w", op, cache.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return cache.Unavailable("memstore: "+op, err)
	}
	return nil
}

// space returns namespace ns's data, creating it. Lock held for writing.
func (sh *shared) space(ns string) *space {
	sp := sh.spaces[ns]
	if sp == nil {
		sp = &space{records: map[string]*record{}, tags: map[string]map[string]struct{}{}, locks: map[string]lock{}}
		sh.spaces[ns] = sp
	}
	return sp
}

// live returns the unexpired record under key. Lock held.
func (sh *shared) live(ns, key string, now time.Time) *record {
	sp := sh.spaces[ns]
	if sp == nil {
		return nil
	}
	r := sp.records[key]
	if r == nil || cache.Expired(r.expires, now) {
		return nil
	}
	return r
}

// copyOut returns the record as read: the named fields (all when none). The
// values are the stored slices themselves, which the store never changes (a
// write stores new ones): a read costs nothing per byte, so a session's
// untouched objects cost nothing. Callers must not modify them.
func (r *record) copyOut(key string, names []string) cache.Record {
	out := cache.Record{Key: key, Expires: r.expires, Version: r.version, Tags: slices.Clone(r.tags)}
	n := len(r.fields)
	if len(names) > 0 {
		n = min(n, len(names))
	}
	out.Fields = make([]cache.Field, 0, n)
	for i := range r.fields {
		f := &r.fields[i]
		if len(names) == 0 || slices.Contains(names, f.name) {
			out.Fields = append(out.Fields, cache.Field{Name: f.name, Value: f.value[:len(f.value):len(f.value)], Version: f.version})
		}
	}
	return out
}

// Read reads the record under key.
func (s *Store) Read(ctx context.Context, key string, fields ...string) (cache.Record, error) {
	if err := cache.ValidateKeys(key, fields); err != nil {
		return cache.Record{}, fmt.Errorf("memstore: read: %w", err)
	}
	if err := s.check(ctx, "read"); err != nil {
		return cache.Record{}, err
	}
	s.sh.mu.RLock()
	defer s.sh.mu.RUnlock()
	r := s.sh.live(s.ns, key, s.sh.now())
	if r == nil {
		return cache.Record{}, fmt.Errorf("memstore: read %q: %w", key, cache.ErrNotFound)
	}
	return r.copyOut(key, fields), nil
}

// ReadMany reads several records.
func (s *Store) ReadMany(ctx context.Context, keys []string, fields ...string) ([]cache.Record, error) {
	for _, k := range keys {
		if err := cache.ValidateKeys(k, fields); err != nil {
			return nil, fmt.Errorf("memstore: read: %w", err)
		}
	}
	if err := s.check(ctx, "read"); err != nil {
		return nil, err
	}
	out := make([]cache.Record, len(keys))
	s.sh.mu.RLock()
	defer s.sh.mu.RUnlock()
	now := s.sh.now()
	for i, k := range keys {
		if r := s.sh.live(s.ns, k, now); r != nil {
			out[i] = r.copyOut(k, fields)
		} else {
			out[i] = cache.Record{Key: k}
		}
	}
	return out, nil
}

// Write applies w to the record under key, atomically.
func (s *Store) Write(ctx context.Context, key string, w cache.Write) (cache.Version, error) {
	if err := cache.ValidateWrite(key, w, s.sh.maxValue); err != nil {
		return 0, fmt.Errorf("memstore: write: %w", err)
	}
	if err := s.check(ctx, "write"); err != nil {
		return 0, err
	}
	sh := s.sh
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := sh.now()
	r := sh.live(s.ns, key, now)
	switch {
	case w.Create && r != nil:
		return 0, fmt.Errorf("memstore: create %q: it exists: %w", key, cache.ErrConflict)
	case !w.Create && r == nil:
		return 0, fmt.Errorf("memstore: write %q: %w", key, cache.ErrNotFound)
	}
	sp := sh.space(s.ns)
	if w.Create {
		if old := sp.records[key]; old != nil { // an expired one: replace it
			sp.untag(key, old.tags)
		}
		r = &record{}
	}
	for _, fw := range w.Fields {
		if !fw.Check {
			continue
		}
		var cur cache.Version
		if i := r.index(fw.Name); i >= 0 {
			cur = r.fields[i].version
		}
		if cur != fw.Expect {
			return 0, fmt.Errorf("memstore: write %q: field %q has version %d, not %d: %w", key, fw.Name, cur, fw.Expect, cache.ErrConflict)
		}
	}
	sh.last = cache.NextVersion(sh.last, now)
	v := sh.last
	for _, fw := range w.Fields {
		i := r.index(fw.Name)
		switch {
		case fw.Remove && i >= 0:
			r.fields = slices.Delete(r.fields, i, i+1)
		case fw.Remove:
		case i >= 0:
			r.fields[i].value, r.fields[i].version = slices.Clone(fw.Value), v
		default:
			r.fields = append(r.fields, field{name: fw.Name, value: slices.Clone(fw.Value), version: v})
		}
	}
	for _, t := range w.AddTags {
		if !slices.Contains(r.tags, t) {
			r.tags = append(r.tags, t)
			set := sp.tags[t]
			if set == nil {
				set = map[string]struct{}{}
				sp.tags[t] = set
			}
			set[key] = struct{}{}
		}
	}
	for _, t := range w.RemoveTags {
		if i := slices.Index(r.tags, t); i >= 0 {
			r.tags = slices.Delete(r.tags, i, i+1)
			sp.untag(key, []string{t})
		}
	}
	switch {
	case w.Expires.Equal(cache.NoExpiry):
		r.expires = time.Time{}
	case !w.Expires.IsZero():
		r.expires = w.Expires
	}
	r.version = v
	sp.records[key] = r
	return v, nil
}

// index returns the position of field name, or -1.
func (r *record) index(name string) int {
	for i := range r.fields {
		if r.fields[i].name == name {
			return i
		}
	}
	return -1
}

// untag removes key from the index of tags. Lock held.
func (sp *space) untag(key string, tags []string) {
	for _, t := range tags {
		if set := sp.tags[t]; set != nil {
			delete(set, key)
			if len(set) == 0 {
				delete(sp.tags, t)
			}
		}
	}
}

// remove deletes the record under key and reports whether it was live. Lock held.
func (sp *space) remove(key string, now time.Time) bool {
	r := sp.records[key]
	if r == nil {
		return false
	}
	delete(sp.records, key)
	sp.untag(key, r.tags)
	return !cache.Expired(r.expires, now)
}

// Delete removes the record under key.
func (s *Store) Delete(ctx context.Context, key string) (bool, error) {
	n, err := s.DeleteMany(ctx, []string{key})
	return n > 0, err
}

// DeleteMany removes several records.
func (s *Store) DeleteMany(ctx context.Context, keys []string) (int, error) {
	for _, k := range keys {
		if err := cache.ValidateKey(k); err != nil {
			return 0, fmt.Errorf("memstore: delete: %w", err)
		}
	}
	if err := s.check(ctx, "delete"); err != nil {
		return 0, err
	}
	s.sh.mu.Lock()
	defer s.sh.mu.Unlock()
	sp := s.sh.spaces[s.ns]
	if sp == nil {
		return 0, nil
	}
	n, now := 0, s.sh.now()
	for _, k := range keys {
		if sp.remove(k, now) {
			n++
		}
	}
	return n, nil
}

// snapshot returns the keys of the live records for which keep is true.
func (s *Store) snapshot(ctx context.Context, op string, from func(*space) map[string]struct{}) ([]string, error) {
	if err := s.check(ctx, op); err != nil {
		return nil, err
	}
	s.sh.mu.RLock()
	defer s.sh.mu.RUnlock()
	sp := s.sh.spaces[s.ns]
	if sp == nil {
		return nil, nil
	}
	now := s.sh.now()
	var out []string
	for k := range from(sp) {
		if r := sp.records[k]; r != nil && !cache.Expired(r.expires, now) {
			out = append(out, k)
		}
	}
	return out, nil
}

// stream yields a snapshot of keys, checking the context between batches.
func (s *Store) stream(ctx context.Context, op string, from func(*space) map[string]struct{}) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		keys, err := s.snapshot(ctx, op, from)
		if err != nil {
			yield("", err)
			return
		}
		for i, k := range keys {
			if i%1000 == 999 {
				if err := s.check(ctx, op); err != nil {
					yield("", err)
					return
				}
			}
			if !yield(k, nil) {
				return
			}
		}
	}
}

// Keys streams the keys of the live records.
func (s *Store) Keys(ctx context.Context) iter.Seq2[string, error] {
	return s.stream(ctx, "keys", func(sp *space) map[string]struct{} {
		all := make(map[string]struct{}, len(sp.records))
		for k := range sp.records {
			all[k] = struct{}{}
		}
		return all
	})
}

// Tagged streams the keys of the live records carrying tag.
func (s *Store) Tagged(ctx context.Context, tag string) iter.Seq2[string, error] {
	if err := cache.ValidateKey(tag); err != nil {
		return func(yield func(string, error) bool) { yield("", fmt.Errorf("memstore: tagged: %w", err)) }
	}
	return s.stream(ctx, "tagged", func(sp *space) map[string]struct{} { return sp.tags[tag] })
}

// Flush removes every record, tag and lock of the namespace.
func (s *Store) Flush(ctx context.Context) error {
	if err := s.check(ctx, "flush"); err != nil {
		return err
	}
	s.sh.mu.Lock()
	delete(s.sh.spaces, s.ns)
	s.sh.mu.Unlock()
	return nil
}

// CollectGarbage removes expired records, at most o.Max, and reports them.
func (s *Store) CollectGarbage(ctx context.Context, o cache.GCOptions) (int, error) {
	for _, f := range o.Fields {
		if err := cache.ValidateKey(f); err != nil {
			return 0, fmt.Errorf("memstore: collect garbage: field: %w", err)
		}
	}
	if err := s.check(ctx, "collect garbage"); err != nil {
		return 0, err
	}
	max := o.Max
	if max <= 0 {
		max = cache.DefaultGCBatchSize
	}
	s.sh.mu.Lock()
	sp := s.sh.spaces[s.ns]
	if sp == nil {
		s.sh.mu.Unlock()
		return 0, nil
	}
	now := s.sh.now()
	before := o.Before
	if before.IsZero() {
		before = now
	}
	var removed []cache.Record
	for k, r := range sp.records {
		if len(removed) >= max {
			break
		}
		if !cache.Expired(r.expires, before) {
			continue
		}
		names := o.Fields
		if len(names) == 0 {
			names = []string{""} // no field matches: key, tags and expiry only
		}
		removed = append(removed, r.copyOut(k, names))
		sp.remove(k, now)
	}
	for name, l := range sp.locks {
		if !l.expires.After(now) {
			delete(sp.locks, name)
		}
	}
	s.sh.mu.Unlock()
	if o.Removed != nil {
		for _, r := range removed {
			o.Removed(r)
		}
	}
	return len(removed), nil
}

// Lock takes the lock called name for ttl.
func (s *Store) Lock(ctx context.Context, name string, ttl time.Duration) (string, error) {
	if err := cache.ValidateKey(name); err != nil {
		return "", fmt.Errorf("memstore: lock: %w", err)
	}
	if err := s.check(ctx, "lock"); err != nil {
		return "", err
	}
	var b [16]byte
	_, _ = crand.Read(b[:])
	token := hex.EncodeToString(b[:])
	s.sh.mu.Lock()
	defer s.sh.mu.Unlock()
	sp := s.sh.space(s.ns)
	now := s.sh.now()
	if l, ok := sp.locks[name]; ok && l.expires.After(now) {
		return "", fmt.Errorf("memstore: lock %q: %w", name, cache.ErrLocked)
	}
	sp.locks[name] = lock{token: token, expires: now.Add(ttl)}
	return token, nil
}

// Unlock releases the lock if token owns it.
func (s *Store) Unlock(ctx context.Context, name, token string) (bool, error) {
	if err := cache.ValidateKey(name); err != nil {
		return false, fmt.Errorf("memstore: unlock: %w", err)
	}
	if err := s.check(ctx, "unlock"); err != nil {
		return false, err
	}
	s.sh.mu.Lock()
	defer s.sh.mu.Unlock()
	sp := s.sh.spaces[s.ns]
	if sp == nil {
		return false, nil
	}
	l, ok := sp.locks[name]
	if !ok || l.token != token || !l.expires.After(s.sh.now()) {
		return false, nil
	}
	delete(sp.locks, name)
	return true, nil
}
