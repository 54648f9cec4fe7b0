package inject

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/fxsession/fxsession/internal/plain"
)

// Defaults of [CacheOptions].
const (
	DefaultCacheSize = 1024
	DefaultCacheTTL  = time.Minute
)

// CacheOptions bound a [Cache].
type CacheOptions struct {
	// Size is how many entities the cache keeps (found or known to be missing);
	// the least recently used go first. 0 means DefaultCacheSize.
	Size int
	// TTL is how long an entity is served from the cache after it was fetched:
	// the bound on how stale an entity can be when another process changed it
	// (invalidation only reaches this process's cache). 0 means
	// DefaultCacheTTL.
	TTL time.Duration
	// Now is the clock of the TTL (default time.Now).
	Now func() time.Time
}

// CacheStats counts what a [Cache] served.
type CacheStats struct {
	Hits   uint64 // entities served from the cache (found or known missing)
	Misses uint64 // entities asked of the repository
}

// Cache is a repository in front of another one: it keeps the entities it
// fetched, so that loading session state that refers to them asks the
// repository nothing while they are cached. It has the methods of
// [BatchRepository]: register it wherever the repository itself would be
// (scope.Entities, scope.Repository) and use it in application code too.
//
// Bounds: at most Size entities (least recently used evicted), each served for
// TTL after it was fetched. An entity the repository does not have is
// remembered as missing, for the TTL too. [Cache.Invalidate] and
// [Cache.InvalidateAll] drop entries at once: call them where the entities
// change. They reach this process only; every process keeps its own cache, so
// another process sees a change when its entry expires, TTL at most after the
// change.
//
// Every Find and FindMany returns copies, so that a session-scoped object
// that changes its entity changes neither the cache nor another request's
// copy: made by the entity's method Clone() E when it has one, otherwise deep
// (pointees, slices, maps and interface values, in exported and unexported
// fields; channels and funcs are shared).
//
// Registered as a repository, the cache also keeps with each entry the
// snapshot a load records for it (the hash of the entity's encoding, which the
// commit compares the object's copy with), so that loads do not encode the
// cached entity again: when its copies can share nothing with it, that is
// when they are deep (no Clone method), or when E holds only values (numbers,
// strings, times, and arrays and structs of them, behind E's pointer). A Clone
// must return an equal copy; one that returns the entity itself, or copies an
// entity holding maps, slices or pointers (which a shallow copy shares), gets
// no kept snapshot: each load takes its own from its copy, as a change made in
// place through a shared part would change the cached entity and make a kept
// snapshot wrong. For an entity holding only values, the entry keeps the
// cached value the snapshot was made from too: a commit compares the
// object's copy with it, field by field, and stores an identical copy as a
// reference without encoding it.
//
// A Cache is safe for concurrent use. Concurrent misses of one entity may each
// ask the repository; an invalidation during a fetch keeps that fetch's result
// out of the cache.
type Cache[E Entity] struct {
	repo  Repository[E]
	batch BatchRepository[E] // repo, when it has FindMany
	size  int
	ttl   time.Duration
	now   func() time.Time
	clone func(E) E
	keep  bool // entries keep their snapshots: copies share nothing with them
	ptr   bool // E is a pointer (a Clone method may return its receiver)

	mu      sync.Mutex
	entries map[string]*cacheEntry[E]
	head    cacheEntry[E] // sentinel of the recency list: head.next is the most recent
	gen     uint64        // incremented by every invalidation

	hits, misses atomic.Uint64
}

type cacheEntry[E Entity] struct {
	id         string
	value      E // never handed out: callers get clones
	found      bool
	expires    time.Time
	prev, next *cacheEntry[E]

	// snap is the snapshot of value for a registry's entity type, made when a
	// load first needs it: loads of the entry after that take none. fill
	// counts the values the entry held, so that a snapshot made without the
	// lock is kept only for the value it was made from.
	snap *snapMemo
	fill uint64
}

// NewCache returns a cache in front of repo.
func NewCache[E Entity](repo Repository[E], opts CacheOptions) *Cache[E] {
	c := &Cache[E]{repo: repo, size: opts.Size, ttl: opts.TTL, now: opts.Now, entries: map[string]*cacheEntry[E]{}}
	c.batch, _ = repo.(BatchRepository[E])
	if c.size <= 0 {
		c.size = DefaultCacheSize
	}
	if c.ttl <= 0 {
		c.ttl = DefaultCacheTTL
	}
	if c.now == nil {
		c.now = time.Now
	}
	t := reflect.TypeFor[E]()
	if t.Kind() == reflect.Pointer {
		t, c.ptr = t.Elem(), true
	}
	var e E
	if _, ok := any(e).(interface{ Clone() E }); ok {
		c.clone = func(e E) E { return any(e).(interface{ Clone() E }).Clone() }
		c.keep = plain.Type(t)
	} else {
		c.keep = true // deep copies
		cl := clonerOf(reflect.TypeFor[E]())
		c.clone = func(e E) E {
			cl(reflect.ValueOf(&e).Elem())
			return e
		}
	}
	c.head.prev, c.head.next = &c.head, &c.head
	return c
}

// Find returns the entity with the ID: from the cache, or from the repository
// (then cached). A missing entity is an error matching [ErrEntityNotFound].
func (c *Cache[E]) Find(ctx context.Context, id string) (E, error) {
	var zero E
	found, err := c.FindMany(ctx, []string{id})
	if err != nil {
		return zero, err
	}
	e, ok := found[id]
	if !ok {
		return zero, fmt.Errorf("%w: %q", ErrEntityNotFound, id)
	}
	return e, nil
}

// FindMany returns the entities with the IDs that exist: those in the cache
// from it, the others from one call of the repository (FindMany when it has
// it, Find per ID otherwise).
func (c *Cache[E]) FindMany(ctx context.Context, ids []string) (map[string]E, error) {
	out := make(map[string]E, len(ids))
	missing, gen := c.lookup(ids, func(e *cacheEntry[E]) { out[e.id] = c.clone(e.value) })
	if len(missing) == 0 {
		return out, nil
	}
	fetched, err := c.fetch(ctx, missing)
	if err != nil {
		return nil, err
	}
	c.store(missing, fetched, gen)
	for id, e := range fetched {
		out[id] = e // the repository's own value: the cache keeps a copy
	}
	return out, nil
}

// lookup serves the cached IDs to found and returns the others, with the
// invalidation generation they are fetched under.
func (c *Cache[E]) lookup(ids []string, found func(*cacheEntry[E])) (missing []string, gen uint64) {
	now := c.now()
	var asked map[string]bool // the missing IDs, when there are many
	if len(ids) > 32 {
		asked = make(map[string]bool, len(ids))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		if e := c.entries[id]; e != nil && now.Before(e.expires) {
			c.touch(e)
			c.hits.Add(1)
			if e.found {
				found(e)
			}
			continue
		}
		switch {
		case asked != nil:
			if asked[id] {
				continue
			}
			asked[id] = true
		case slices.Contains(missing, id):
			continue
		}
		missing = append(missing, id)
	}
	c.misses.Add(uint64(len(missing)))
	return missing, c.gen
}

// fetch asks the repository for ids.
func (c *Cache[E]) fetch(ctx context.Context, ids []string) (map[string]E, error) {
	if c.batch != nil {
		found, err := c.batch.FindMany(ctx, ids)
		if err != nil {
			return nil, err
		}
		for id, e := range found {
			if isNilEntity(e) {
				delete(found, id)
			}
		}
		return found, nil
	}
	found := make(map[string]E, len(ids))
	for _, id := range ids {
		e, err := c.repo.Find(ctx, id)
		switch {
		case errors.Is(err, ErrEntityNotFound):
		case err != nil:
			return nil, err
		case !isNilEntity(e):
			found[id] = e
		}
	}
	return found, nil
}

func isNilEntity[E Entity](e E) bool {
	return isNilish(reflect.ValueOf(&e).Elem())
}

// store caches the fetch of ids (found or missing) unless an invalidation
// happened since gen.
func (c *Cache[E]) store(ids []string, found map[string]E, gen uint64) {
	copies := make(map[string]E, len(found))
	for id, e := range found {
		copies[id] = c.clone(e)
	}
	expires := c.now().Add(c.ttl)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	for _, id := range ids {
		v, ok := copies[id]
		e := c.entries[id]
		if e == nil {
			e = &cacheEntry[E]{id: id}
			c.entries[id] = e
		} else {
			c.unlink(e)
		}
		e.value, e.found, e.expires = v, ok, expires
		e.snap = nil
		e.fill++
		c.link(e)
	}
	for len(c.entries) > c.size {
		old := c.head.prev
		c.unlink(old)
		delete(c.entries, old.id)
	}
}

// fetchValues is FindMany for a [Registry] (see repository.fetch): the
// entities as reflect values, without calls through reflection.
func (c *Cache[E]) fetchValues(ctx context.Context, ids []string, h *entityHasher) (map[string]entityValue, error) {
	out := make(map[string]entityValue, len(ids))
	type unsnapped struct {
		e     *cacheEntry[E]
		value E
		fill  uint64
	}
	var todo []unsnapped // entries whose snapshot this load makes
	missing, gen := c.lookup(ids, func(e *cacheEntry[E]) {
		cp := c.clone(e.value)
		ev := entityValue{v: reflect.ValueOf(cp)}
		switch {
		case h == nil || !c.keep || c.ptr && any(cp) == any(e.value):
			// The load snapshots its copy (see Cache).
		case e.snap != nil && e.snap.by == h.ent:
			ev.snap = e.snap
		default:
			todo = append(todo, unsnapped{e, e.value, e.fill})
		}
		out[e.id] = ev
	})
	// Snapshots are made without the lock (they run the entity's marshalling
	// methods, which may use the cache): the cached value is never modified,
	// so its snapshot stands while the entry holds it.
	for _, u := range todo {
		hv, nested, err := h.snapshot(reflect.ValueOf(u.value))
		if err != nil {
			return nil, err
		}
		m := &snapMemo{by: h.ent, hash: hv, nested: nested}
		if h.ent.eq != nil {
			m.base = c.content(u.value)
		}
		ev := out[u.e.id]
		ev.snap = m
		out[u.e.id] = ev
		c.mu.Lock()
		if u.e.fill == u.fill {
			u.e.snap = m
		}
		c.mu.Unlock()
	}
	if len(missing) == 0 {
		return out, nil
	}
	fetched, err := c.fetch(ctx, missing)
	if err != nil {
		return nil, err
	}
	c.store(missing, fetched, gen)
	for id, e := range fetched {
		out[id] = entityValue{v: reflect.ValueOf(e)} // the repository's own value: hashed by the caller
	}
	return out, nil
}

// content returns the address of v's content for snapMemo.base: the struct a
// pointer entity points to (the cache never changes it), or a copy of a value.
func (c *Cache[E]) content(v E) unsafe.Pointer {
	if c.ptr {
		return reflect.ValueOf(v).UnsafePointer()
	}
	p := new(E)
	*p = v
	return unsafe.Pointer(p)
}

// Invalidate drops the entities with the IDs from the cache: the next Find
// asks the repository. Only this process's cache is reached.
func (c *Cache[E]) Invalidate(ids ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, id := range ids {
		if e := c.entries[id]; e != nil {
			c.unlink(e)
			delete(c.entries, id)
		}
	}
}

// InvalidateAll empties the cache.
func (c *Cache[E]) InvalidateAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.entries)
	c.head.prev, c.head.next = &c.head, &c.head
}

// Len is the number of cached entries (found or missing, expired or not).
func (c *Cache[E]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Stats counts hits and misses since the cache was made.
func (c *Cache[E]) Stats() CacheStats {
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load()}
}

func (c *Cache[E]) touch(e *cacheEntry[E]) {
	if c.head.next != e {
		c.unlink(e)
		c.link(e)
	}
}

func (c *Cache[E]) link(e *cacheEntry[E]) {
	e.prev, e.next = &c.head, c.head.next
	c.head.next.prev = e
	c.head.next = e
}

func (c *Cache[E]) unlink(e *cacheEntry[E]) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}

// ---- deep copies ----

// clonerOf returns a function that makes the value v (addressable, a shallow
// copy of some value of t) share nothing mutable with the value it was copied
// from: pointees, slices, maps and interface values are copied too, exported
// fields or not. Channels, funcs and unsafe pointers stay shared. Pointer
// cycles are copied as cycles.
func clonerOf(t reflect.Type) func(reflect.Value) {
	c := &cloneCompiler{fns: map[reflect.Type]*cloneFn{}, building: map[reflect.Type]bool{}}
	c.mu.Lock()
	fn := c.of(t)
	c.mu.Unlock()
	if fn == nil {
		return func(reflect.Value) {}
	}
	return func(v reflect.Value) {
		var st cloneState
		fn.f(&st, v)
	}
}

type cloneState struct {
	seen     map[uintptr]reflect.Value // pointees of recursive types: original -> copy
	trackAll bool                      // below an interface value: any type may recur
}

type cloneFn struct {
	f         func(*cloneState, reflect.Value)
	recursive bool // a value of the type can reach another of the type
}

// cloneCompiler builds the fixers of types, once each; the dynamic types of
// interface values are met (and compiled) while copying, under mu.
type cloneCompiler struct {
	mu       sync.Mutex
	fns      map[reflect.Type]*cloneFn
	building map[reflect.Type]bool
}

// of returns the fixer of t, nil when values of t share nothing mutable.
// c.mu held.
func (c *cloneCompiler) of(t reflect.Type) *cloneFn {
	if fn, ok := c.fns[t]; ok {
		if fn != nil && c.building[t] {
			fn.recursive = true
		}
		return fn
	}
	fn := &cloneFn{}
	c.fns[t] = fn // placeholder for recursive types
	c.building[t] = true
	defer delete(c.building, t)
	switch t.Kind() {
	case reflect.Pointer:
		elem := c.of(t.Elem())
		fn.f = func(st *cloneState, v reflect.Value) {
			if v.IsNil() {
				return
			}
			track := st.trackAll || fn.recursive || (elem != nil && elem.recursive)
			key := v.Pointer()
			if track {
				if cp, ok := st.seen[key]; ok {
					v.Set(cp)
					return
				}
			}
			cp := reflect.New(t.Elem())
			cp.Elem().Set(v.Elem())
			if track {
				if st.seen == nil {
					st.seen = map[uintptr]reflect.Value{}
				}
				st.seen[key] = cp
			}
			v.Set(cp)
			if elem != nil && elem.f != nil {
				elem.f(st, cp.Elem())
			}
		}
	case reflect.Slice:
		elem := c.of(t.Elem())
		fn.f = func(st *cloneState, v reflect.Value) {
			if v.IsNil() {
				return
			}
			cp := reflect.MakeSlice(t, v.Len(), v.Len())
			reflect.Copy(cp, v)
			v.Set(cp)
			if elem != nil && elem.f != nil {
				for i := range cp.Len() {
					elem.f(st, cp.Index(i))
				}
			}
		}
	case reflect.Array:
		elem := c.of(t.Elem())
		if elem == nil {
			c.fns[t] = nil
			return nil
		}
		fn.f = func(st *cloneState, v reflect.Value) {
			if elem.f == nil {
				return
			}
			for i := range v.Len() {
				elem.f(st, v.Index(i))
			}
		}
	case reflect.Map:
		kt, et := t.Key(), t.Elem()
		elem := c.of(et)
		fn.f = func(st *cloneState, v reflect.Value) {
			if v.IsNil() {
				return
			}
			cp := reflect.MakeMapWithSize(t, v.Len())
			it := v.MapRange()
			for it.Next() {
				k := reflect.New(kt).Elem()
				k.SetIterKey(it)
				e := reflect.New(et).Elem()
				e.SetIterValue(it)
				if elem != nil && elem.f != nil {
					elem.f(st, e)
				}
				cp.SetMapIndex(k, e)
			}
			v.Set(cp)
		}
	case reflect.Interface:
		fn.f = func(st *cloneState, v reflect.Value) {
			if v.IsNil() {
				return
			}
			dyn := v.Elem()
			c.mu.Lock()
			f := c.of(dyn.Type())
			c.mu.Unlock()
			if f == nil || f.f == nil {
				return
			}
			cp := reflect.New(dyn.Type()).Elem()
			cp.Set(dyn)
			all := st.trackAll
			st.trackAll = true
			f.f(st, cp)
			st.trackAll = all
			v.Set(cp)
		}
	case reflect.Struct:
		type part struct {
			index int
			fn    *cloneFn
		}
		var parts []part
		for i := range t.NumField() {
			if f := c.of(t.Field(i).Type); f != nil {
				parts = append(parts, part{i, f})
			}
		}
		if len(parts) == 0 {
			c.fns[t] = nil
			return nil
		}
		fn.f = func(st *cloneState, v reflect.Value) {
			for _, p := range parts {
				if p.fn.f == nil {
					continue
				}
				f := v.Field(p.index)
				// Unexported fields too: reach them through their address.
				f = reflect.NewAt(f.Type(), f.Addr().UnsafePointer()).Elem()
				p.fn.f(st, f)
			}
		}
	default:
		c.fns[t] = nil
		return nil
	}
	return fn
}
