// Package memstore is the in-process [cache.Backend]: a map guarded by a lock,
// for tests and single-process applications. Entries live as long as the process.
//
// Expired entries are never returned; a janitor goroutine removes them every
// Options.JanitorInterval and [Store.CollectGarbage] removes them on demand. The
// janitor stops with [Store.Close] (with [Module], when the fx app stops).
//
// Sub namespaces share the root's maps, lock and janitor but never see each
// other's entries.
package memstore

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"iter"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
)

// DefaultJanitorInterval is how often the janitor removes expired entries when
// Options.JanitorInterval is 0.
const DefaultJanitorInterval = time.Minute

// gcBatch bounds how many expired entries are removed under one hold of the lock.
const gcBatch = 1000

// Options configure a [Store].
type Options struct {
	// Namespace of the root store; empty means "default".
	Namespace string
	// MaxValueSize is the largest value accepted; 0 means cache.DefaultMaxValueSize.
	MaxValueSize int
	// JanitorInterval is how often expired entries are removed in the background;
	// 0 means DefaultJanitorInterval, a negative value disables the janitor.
	JanitorInterval time.Duration
	// Logger receives the janitor's reports; nil means slog.Default().
	Logger *slog.Logger
}

// Store is one namespace of an in-memory store. It implements [cache.Backend].
type Store struct {
	sh *shared
	ns string
	// root is true for the store returned by New; closing a Sub is a no-op.
	root bool
}

var _ cache.Backend = (*Store)(nil)

// shared is what a root store and its Subs have in common.
type shared struct {
	mu      sync.RWMutex
	spaces  map[string]*space
	version atomic.Uint64
	closed  atomic.Bool

	maxValue int
	interval time.Duration
	log      *slog.Logger

	janitorOnce sync.Once
	stop        chan struct{}
	done        chan struct{}
	closeOnce   sync.Once
}

// space is one namespace's data.
type space struct {
	entries map[string]*entry
	tags    map[string]map[string]struct{}
	locks   map[string]lock
}

type entry struct {
	value   []byte
	tags    []string
	version cache.Version
	expires int64 // unix nanoseconds; 0 = never
}

type lock struct {
	token   string
	expires int64
}

func (e *entry) expired(now int64) bool { return e.expires != 0 && e.expires <= now }

// New returns a root store and starts its janitor (unless disabled). Close it
// when done.
func New(opts Options) *Store {
	s := newStore(opts)
	s.sh.startJanitor()
	return s
}

func newStore(opts Options) *Store {
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if opts.MaxValueSize <= 0 {
		opts.MaxValueSize = cache.DefaultMaxValueSize
	}
	if opts.JanitorInterval == 0 {
		opts.JanitorInterval = DefaultJanitorInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	sh := &shared{
		spaces:   map[string]*space{},
		maxValue: opts.MaxValueSize,
		interval: opts.JanitorInterval,
		log:      opts.Logger.With("cache", "memory"),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	sh.version.Store(rand.Uint64N(1 << 62))
	return &Store{sh: sh, ns: opts.Namespace, root: true}
}

// Module provides a memory [cache.Backend] whose janitor starts and stops with
// the fx app; the store is closed when the app stops.
func Module(opts Options) fx.Option {
	return fx.Module("fxsession.cache.memory",
		fx.Provide(func(lc fx.Lifecycle) (cache.Backend, error) {
			if err := validNamespace(opts.Namespace); err != nil {
				return nil, err
			}
			s := newStore(opts)
			lc.Append(fx.Hook{
				OnStart: func(context.Context) error { s.sh.startJanitor(); return nil },
				OnStop:  func(context.Context) error { return s.Close() },
			})
			return s, nil
		}),
	)
}

func validNamespace(ns string) error {
	if ns == "" {
		return nil
	}
	if err := cache.ValidateKey(ns); err != nil {
		return fmt.Errorf("memstore: namespace: %w", err)
	}
	return nil
}

func (sh *shared) startJanitor() {
	sh.janitorOnce.Do(func() {
		if sh.interval < 0 || sh.closed.Load() {
			close(sh.done)
			return
		}
		go sh.janitor()
	})
}

func (sh *shared) janitor() {
	defer close(sh.done)
	t := time.NewTicker(sh.interval)
	defer t.Stop()
	for {
		select {
		case <-sh.stop:
			return
		case <-t.C:
			sh.mu.RLock()
			names := make([]string, 0, len(sh.spaces))
			for ns := range sh.spaces {
				names = append(names, ns)
			}
			sh.mu.RUnlock()
			total := 0
			for _, ns := range names {
				total += sh.collect(ns)
			}
			if total > 0 {
				sh.log.Debug("cache janitor removed expired entries", "count", total)
			}
		}
	}
}

// collect removes the expired entries and locks of namespace ns in batches and
// returns how many entries went.
func (sh *shared) collect(ns string) int {
	total := 0
	for {
		n := 0
		sh.mu.Lock()
		sp := sh.spaces[ns]
		if sp == nil {
			sh.mu.Unlock()
			return total
		}
		now := time.Now().UnixNano()
		for k, e := range sp.entries {
			if e.expired(now) {
				sp.remove(k, e)
				n++
				if n == gcBatch {
					break
				}
			}
		}
		if n < gcBatch {
			for name, l := range sp.locks {
				if l.expires <= now {
					delete(sp.locks, name)
				}
			}
		}
		sh.mu.Unlock()
		total += n
		if n < gcBatch {
			return total
		}
	}
}

func (sh *shared) nextVersion() cache.Version {
	for {
		if v := sh.version.Add(1); v != 0 {
			return cache.Version(v)
		}
	}
}

// space returns namespace ns's data, creating it when create is set (the write
// lock must be held then).
func (sh *shared) space(ns string, create bool) *space {
	sp := sh.spaces[ns]
	if sp == nil && create {
		sp = &space{entries: map[string]*entry{}, tags: map[string]map[string]struct{}{}, locks: map[string]lock{}}
		sh.spaces[ns] = sp
	}
	return sp
}

// remove deletes entry k (whose record is e) and its tag index records.
func (sp *space) remove(k string, e *entry) {
	for _, t := range e.tags {
		if set := sp.tags[t]; set != nil {
			delete(set, k)
			if len(set) == 0 {
				delete(sp.tags, t)
			}
		}
	}
	delete(sp.entries, k)
}

// put stores it with version v. Replacing an entry with the same tags keeps its
// record, its tag index records and (when it fits) its value's buffer: entries
// are only reached under the store's lock, and export copies what it returns.
func (sp *space) put(it cache.Item, v cache.Version) {
	e := sp.entries[it.Key]
	if e == nil || !slices.Equal(e.tags, it.Tags) {
		if e != nil {
			sp.remove(it.Key, e)
		}
		e = &entry{}
		if len(it.Tags) > 0 {
			e.tags = make([]string, 0, len(it.Tags))
			for _, t := range it.Tags {
				if slices.Contains(e.tags, t) {
					continue
				}
				e.tags = append(e.tags, t)
				set := sp.tags[t]
				if set == nil {
					set = map[string]struct{}{}
					sp.tags[t] = set
				}
				set[it.Key] = struct{}{}
			}
		}
	}
	if n := len(it.Value); cap(e.value) >= n && cap(e.value) <= 2*n+64 {
		e.value = e.value[:n]
	} else {
		e.value = make([]byte, n)
	}
	copy(e.value, it.Value)
	e.version = v
	e.expires = 0
	if it.TTL > 0 {
		e.expires = time.Now().Add(it.TTL).UnixNano()
	}
	sp.entries[it.Key] = e
}

// live returns entry k when present and unexpired (reading the clock only for
// entries with a lifetime).
func (sp *space) live(k string) *entry {
	if sp == nil {
		return nil
	}
	e := sp.entries[k]
	if e == nil || e.expires != 0 && e.expired(time.Now().UnixNano()) {
		return nil
	}
	return e
}

func (e *entry) export(key string) cache.Entry {
	out := cache.Entry{Key: key, Value: make([]byte, len(e.value)), Version: e.version}
	copy(out.Value, e.value)
	if len(e.tags) > 0 {
		out.Tags = slices.Clone(e.tags)
	}
	if e.expires != 0 {
		out.Expires = time.Unix(0, e.expires)
	}
	return out
}

// check reports a closed store or an ended context.
func (s *Store) check(ctx context.Context, op string) error {
	if s.sh.closed.Load() {
		return fmt.Errorf("memstore: %s: %w", op, cache.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %s: %w", op, err)
	}
	return nil
}

// Namespace returns the store's full namespace.
func (s *Store) Namespace() string { return s.ns }

// Get reads one entry.
func (s *Store) Get(ctx context.Context, key string) (cache.Entry, error) {
	if err := cache.ValidateKey(key); err != nil {
		return cache.Entry{}, err
	}
	if err := s.check(ctx, "get"); err != nil {
		return cache.Entry{}, err
	}
	s.sh.mu.RLock()
	defer s.sh.mu.RUnlock()
	e := s.sh.space(s.ns, false).live(key)
	if e == nil {
		return cache.Entry{}, fmt.Errorf("memstore: get %q: %w", key, cache.ErrNotFound)
	}
	return e.export(key), nil
}

// GetMany reads many entries; missing ones come back with only Key set.
func (s *Store) GetMany(ctx context.Context, keys []string) ([]cache.Entry, error) {
	for _, k := range keys {
		if err := cache.ValidateKey(k); err != nil {
			return nil, err
		}
	}
	if err := s.check(ctx, "get many"); err != nil {
		return nil, err
	}
	out := make([]cache.Entry, len(keys))
	s.sh.mu.RLock()
	defer s.sh.mu.RUnlock()
	sp := s.sh.space(s.ns, false)
	for i, k := range keys {
		if e := sp.live(k); e != nil {
			out[i] = e.export(k)
		} else {
			out[i] = cache.Entry{Key: k}
		}
	}
	return out, nil
}

// Has reports whether an unexpired entry exists.
func (s *Store) Has(ctx context.Context, key string) (bool, error) {
	if err := cache.ValidateKey(key); err != nil {
		return false, err
	}
	if err := s.check(ctx, "has"); err != nil {
		return false, err
	}
	s.sh.mu.RLock()
	defer s.sh.mu.RUnlock()
	return s.sh.space(s.ns, false).live(key) != nil, nil
}

// Set writes an entry and returns its new version.
func (s *Store) Set(ctx context.Context, it cache.Item) (cache.Version, error) {
	if err := cache.ValidateItem(it, s.sh.maxValue); err != nil {
		return 0, err
	}
	if err := s.check(ctx, "set"); err != nil {
		return 0, err
	}
	v := s.sh.nextVersion()
	s.sh.mu.Lock()
	s.sh.space(s.ns, true).put(it, v)
	s.sh.mu.Unlock()
	return v, nil
}

// SetMany writes many entries; it is atomic (one hold of the store's lock).
func (s *Store) SetMany(ctx context.Context, items []cache.Item) error {
	for _, it := range items {
		if err := cache.ValidateItem(it, s.sh.maxValue); err != nil {
			return err
		}
	}
	if err := s.check(ctx, "set many"); err != nil {
		return err
	}
	if len(items) == 0 {
		return nil
	}
	s.sh.mu.Lock()
	defer s.sh.mu.Unlock()
	sp := s.sh.space(s.ns, true)
	for _, it := range items {
		sp.put(it, s.sh.nextVersion())
	}
	return nil
}

// CompareAndSet writes it when the stored version equals expected (0: absent).
func (s *Store) CompareAndSet(ctx context.Context, it cache.Item, expected cache.Version) (cache.Version, error) {
	if err := cache.ValidateItem(it, s.sh.maxValue); err != nil {
		return 0, err
	}
	if err := s.check(ctx, "compare and set"); err != nil {
		return 0, err
	}
	s.sh.mu.Lock()
	defer s.sh.mu.Unlock()
	sp := s.sh.space(s.ns, true)
	var cur cache.Version
	if e := sp.live(it.Key); e != nil {
		cur = e.version
	}
	if cur != expected {
		return 0, fmt.Errorf("memstore: compare and set %q: expected version %d, found %d: %w", it.Key, expected, cur, cache.ErrConflict)
	}
	v := s.sh.nextVersion()
	sp.put(it, v)
	return v, nil
}

// Delete removes an entry and reports whether an unexpired one was there.
func (s *Store) Delete(ctx context.Context, key string) (bool, error) {
	if err := cache.ValidateKey(key); err != nil {
		return false, err
	}
	if err := s.check(ctx, "delete"); err != nil {
		return false, err
	}
	now := time.Now().UnixNano()
	s.sh.mu.Lock()
	defer s.sh.mu.Unlock()
	sp := s.sh.space(s.ns, false)
	if sp == nil {
		return false, nil
	}
	e := sp.entries[key]
	if e == nil {
		return false, nil
	}
	sp.remove(key, e)
	return !e.expired(now), nil
}

// Flush removes every entry of this namespace (locks stay).
func (s *Store) Flush(ctx context.Context) error {
	if err := s.check(ctx, "flush"); err != nil {
		return err
	}
	s.sh.mu.Lock()
	defer s.sh.mu.Unlock()
	if sp := s.sh.spaces[s.ns]; sp != nil {
		clear(sp.entries)
		clear(sp.tags)
	}
	return nil
}

// FlushByTag removes every entry carrying tag and returns how many unexpired
// ones went (expired ones are removed too, uncounted).
func (s *Store) FlushByTag(ctx context.Context, tag string) (int, error) {
	if err := cache.ValidateKey(tag); err != nil {
		return 0, fmt.Errorf("tag: %w", err)
	}
	if err := s.check(ctx, "flush by tag"); err != nil {
		return 0, err
	}
	now := time.Now().UnixNano()
	s.sh.mu.Lock()
	defer s.sh.mu.Unlock()
	sp := s.sh.space(s.ns, false)
	if sp == nil {
		return 0, nil
	}
	n := 0
	for k := range sp.tags[tag] {
		if e := sp.entries[k]; e != nil {
			if !e.expired(now) {
				n++
			}
			sp.remove(k, e)
		}
	}
	delete(sp.tags, tag)
	return n, nil
}

// Tagged streams the keys of the unexpired entries carrying tag. It takes a
// snapshot of the tag's keys, then checks each key as it goes.
func (s *Store) Tagged(ctx context.Context, tag string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if err := cache.ValidateKey(tag); err != nil {
			yield("", fmt.Errorf("tag: %w", err))
			return
		}
		if err := s.check(ctx, "tagged"); err != nil {
			yield("", err)
			return
		}
		s.sh.mu.RLock()
		var ks []string
		if sp := s.sh.space(s.ns, false); sp != nil {
			ks = make([]string, 0, len(sp.tags[tag]))
			for k := range sp.tags[tag] {
				ks = append(ks, k)
			}
		}
		s.sh.mu.RUnlock()
		for _, k := range ks {
			if err := s.check(ctx, "tagged"); err != nil {
				yield("", err)
				return
			}
			s.sh.mu.RLock()
			sp := s.sh.space(s.ns, false)
			e := sp.live(k)
			ok := e != nil && slices.Contains(e.tags, tag)
			s.sh.mu.RUnlock()
			if ok && !yield(k, nil) {
				return
			}
		}
	}
}

// All streams the unexpired entries. It takes a snapshot of the namespace's
// keys (not values), then reads each entry as it goes, so entries deleted
// meanwhile are skipped.
func (s *Store) All(ctx context.Context) iter.Seq2[cache.Entry, error] {
	return func(yield func(cache.Entry, error) bool) {
		if err := s.check(ctx, "all"); err != nil {
			yield(cache.Entry{}, err)
			return
		}
		s.sh.mu.RLock()
		var ks []string
		if sp := s.sh.space(s.ns, false); sp != nil {
			ks = make([]string, 0, len(sp.entries))
			for k := range sp.entries {
				ks = append(ks, k)
			}
		}
		s.sh.mu.RUnlock()
		for _, k := range ks {
			if err := s.check(ctx, "all"); err != nil {
				yield(cache.Entry{}, err)
				return
			}
			s.sh.mu.RLock()
			e := s.sh.space(s.ns, false).live(k)
			var out cache.Entry
			if e != nil {
				out = e.export(k)
			}
			s.sh.mu.RUnlock()
			if e != nil && !yield(out, nil) {
				return
			}
		}
	}
}

// CollectGarbage removes this namespace's expired entries (and expired locks)
// and returns how many entries went.
func (s *Store) CollectGarbage(ctx context.Context) (int, error) {
	if err := s.check(ctx, "collect garbage"); err != nil {
		return 0, err
	}
	return s.sh.collect(s.ns), nil
}

// Lock takes the lock called name for ttl and returns the owner token.
func (s *Store) Lock(ctx context.Context, name string, ttl time.Duration) (string, error) {
	if err := cache.ValidateKey(name); err != nil {
		return "", fmt.Errorf("lock: %w", err)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("memstore: lock %q: ttl %v is not positive", name, ttl)
	}
	if err := s.check(ctx, "lock"); err != nil {
		return "", err
	}
	now := time.Now()
	s.sh.mu.Lock()
	defer s.sh.mu.Unlock()
	sp := s.sh.space(s.ns, true)
	if l, ok := sp.locks[name]; ok && l.expires > now.UnixNano() {
		return "", fmt.Errorf("memstore: lock %q: %w", name, cache.ErrLocked)
	}
	token := crand.Text()
	sp.locks[name] = lock{token: token, expires: now.Add(ttl).UnixNano()}
	return token, nil
}

// Unlock releases the lock if token still owns it.
func (s *Store) Unlock(ctx context.Context, name, token string) (bool, error) {
	if err := cache.ValidateKey(name); err != nil {
		return false, fmt.Errorf("lock: %w", err)
	}
	if err := s.check(ctx, "unlock"); err != nil {
		return false, err
	}
	now := time.Now().UnixNano()
	s.sh.mu.Lock()
	defer s.sh.mu.Unlock()
	sp := s.sh.space(s.ns, false)
	if sp == nil {
		return false, nil
	}
	l, ok := sp.locks[name]
	if !ok || l.token != token || l.expires <= now {
		return false, nil
	}
	delete(sp.locks, name)
	return true, nil
}

// Sub returns the child namespace name, sharing this store's data.
func (s *Store) Sub(name string) (cache.Backend, error) {
	full, err := cache.JoinNamespace(s.ns, name)
	if err != nil {
		return nil, err
	}
	if s.sh.closed.Load() {
		return nil, fmt.Errorf("memstore: sub %q: %w", name, cache.ErrClosed)
	}
	return &Store{sh: s.sh, ns: full}, nil
}

// Close stops the janitor and drops the data of the root store and all its
// Subs; later calls fail with cache.ErrClosed. Closing a Sub does nothing.
// Closing twice is harmless.
func (s *Store) Close() error {
	if !s.root {
		return nil
	}
	s.sh.closeOnce.Do(func() {
		s.sh.closed.Store(true)
		s.sh.startJanitor() // marks the janitor as never to start if it has not
		close(s.sh.stop)
		<-s.sh.done
		s.sh.mu.Lock()
		s.sh.spaces = map[string]*space{}
		s.sh.mu.Unlock()
	})
	return nil
}
