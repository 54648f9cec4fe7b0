package inject

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// askedRepo is a batch repository of products that records what it was asked.
type askedRepo struct {
	*repo[*Product]
	mu    sync.Mutex
	asked [][]string
}

func (r *askedRepo) FindMany(ctx context.Context, ids []string) (map[string]*Product, error) {
	r.mu.Lock()
	r.asked = append(r.asked, slices.Clone(ids))
	r.mu.Unlock()
	return batchRepo[*Product]{r.repo}.FindMany(ctx, ids)
}

func (r *askedRepo) calls() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.asked)
}

func newAskedRepo() *askedRepo {
	r := &askedRepo{repo: newRepo[*Product]()}
	for i, sku := range []string{"apple", "pear", "plum"} {
		r.put(sku, func() *Product {
			return &Product{SKU: sku, Name: fmt.Sprint("product ", i), Price: i, Supplier: &Supplier{ID: "acme", Name: "ACME"}}
		})
	}
	return r
}

// cachedBasket registers an entity cache in front of repo and returns it, the
// basket plan and a stored basket of the products named (found through the
// cache, which fills it).
func cachedBasket(t *testing.T, repo *askedRepo, opts CacheOptions, skus ...string) (*Cache[*Product], *Plan, []byte) {
	t.Helper()
	ctx := context.Background()
	products := NewCache[*Product](repo, opts)
	reg := NewRegistry()
	if _, err := reg.AddRepository(products); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.AddRepository(newRepo[*Supplier]()); err != nil {
		t.Fatal(err)
	}
	p := basketPlan(t, reg)
	b := newBasket(nil)
	for _, sku := range skus {
		e, err := products.Find(ctx, sku)
		if err != nil {
			t.Fatal(err)
		}
		b.Items = append(b.Items, LineItem{Product: e, Qty: 1})
	}
	data, err := p.Encode(ctx, b, NewTracker())
	if err != nil {
		t.Fatal(err)
	}
	return products, p, data
}

// TestCacheLoads: N loads of a basket ask the repository once within the TTL;
// invalidation and expiry fetch again; references stay references.
func TestCacheLoads(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: time.Unix(1000, 0)}
	repo := newAskedRepo()
	products, p, data := cachedBasket(t, repo, CacheOptions{TTL: time.Minute, Now: clk.Now}, "apple", "pear", "apple")
	if n := len(repo.calls()); n != 2 { // the two Finds that filled the cache
		t.Fatalf("repository calls before the loads: %d", n)
	}
	load := func() *Basket {
		t.Helper()
		got := newBasket(nil)
		tr := NewTracker()
		if err := p.Decode(ctx, data, got, tr); err != nil {
			t.Fatal(err)
		}
		if len(got.Items) != 3 || got.Items[1].Product.SKU != "pear" || got.Items[0].Product != got.Items[2].Product {
			t.Fatalf("loaded %+v", got.Items)
		}
		again, err := p.Encode(ctx, got, tr)
		if err != nil || string(again) != string(data) {
			t.Fatalf("re-encoding an unchanged load: %v, changed %v", err, string(again) != string(data))
		}
		return got
	}
	for range 20 {
		load()
	}
	if n := len(repo.calls()); n != 2 {
		t.Fatalf("20 loads within the TTL asked the repository %d times: %v", n-2, repo.calls()[2:])
	}
	// 1 hit while filling the basket, 2 while encoding it, 2 per load.
	if st := products.Stats(); st.Misses != 2 || st.Hits != 43 {
		t.Fatalf("stats %+v", st)
	}

	// A load's entity is a copy: changing it changes neither the cache nor the next load.
	got := load()
	got.Items[1].Product.Name = "changed in a session"
	got.Items[1].Product.Supplier.Name = "changed too"
	if again := load(); again.Items[1].Product.Name == "changed in a session" || again.Items[1].Product.Supplier.Name == "changed too" {
		t.Fatal("a change to a loaded entity reached the cache")
	}

	// Invalidation: the next load fetches the invalidated entity, only it.
	clk.add(30 * time.Second)
	repo.put("pear", func() *Product { return &Product{SKU: "pear", Name: "NEW PEAR"} })
	if load().Items[1].Product.Name == "NEW PEAR" {
		t.Fatal("the cache asked the repository within the TTL")
	}
	products.Invalidate("pear")
	if load().Items[1].Product.Name != "NEW PEAR" {
		t.Fatal("an invalidated entity was served from the cache")
	}
	if calls := repo.calls(); len(calls) != 3 || !slices.Equal(calls[2], []string{"pear"}) {
		t.Fatalf("calls after the invalidation: %v", calls)
	}
	load()
	if n := len(repo.calls()); n != 3 {
		t.Fatalf("after refetching: %d calls", n)
	}

	// Expiry: apple after its TTL, pear (fetched 30 s later) not yet.
	clk.add(29 * time.Second)
	load()
	if n := len(repo.calls()); n != 3 {
		t.Fatal("an entity expired before its TTL")
	}
	clk.add(2 * time.Second)
	load()
	if calls := repo.calls(); len(calls) != 4 || len(calls[3]) != 1 || calls[3][0] != "apple" {
		t.Fatalf("calls after the TTL of apple: %v", calls)
	}
	products.InvalidateAll()
	load()
	if calls := repo.calls(); len(calls) != 5 || len(calls[4]) != 2 {
		t.Fatalf("calls after InvalidateAll: %v", calls)
	}
}

func TestCacheMissingAndErrors(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: time.Unix(1000, 0)}
	repo := newAskedRepo()
	c := NewCache[*Product](repo, CacheOptions{Now: clk.Now})
	if _, err := c.Find(ctx, "kiwi"); !errors.Is(err, ErrEntityNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if _, err := c.Find(ctx, "kiwi"); !errors.Is(err, ErrEntityNotFound) || len(repo.calls()) != 1 {
		t.Fatalf("a missing entity is remembered: %v, %d calls", err, len(repo.calls()))
	}
	got, err := c.FindMany(ctx, []string{"apple", "kiwi", "pear", "apple"})
	if err != nil || len(got) != 2 || got["apple"] == nil || got["pear"] == nil {
		t.Fatalf("FindMany = %v, %v", got, err)
	}
	if calls := repo.calls(); len(calls) != 2 || !slices.Equal(calls[1], []string{"apple", "pear"}) {
		t.Fatalf("FindMany asked %v, want the misses once", calls)
	}
	clk.add(DefaultCacheTTL)
	boom := errors.New("database down")
	repo.fail = boom
	if _, err := c.FindMany(ctx, []string{"apple"}); !errors.Is(err, boom) {
		t.Fatalf("repository failure: %v", err)
	}
	repo.fail = nil
	if _, err := c.Find(ctx, "apple"); err != nil {
		t.Fatalf("a failure is not cached: %v", err)
	}
}

// TestCacheWithoutFindMany: a repository with Find only is asked per miss.
func TestCacheWithoutFindMany(t *testing.T) {
	ctx := context.Background()
	r := newRepo[*Product]()
	r.put("apple", func() *Product { return &Product{SKU: "apple"} })
	c := NewCache[*Product](r, CacheOptions{})
	got, err := c.FindMany(ctx, []string{"apple", "kiwi"})
	if err != nil || len(got) != 1 {
		t.Fatalf("FindMany = %v, %v", got, err)
	}
	if _, err := c.FindMany(ctx, []string{"apple", "kiwi"}); err != nil {
		t.Fatal(err)
	}
	if finds, _ := r.counts(); finds != 2 {
		t.Fatalf("Find calls = %d, want 2", finds)
	}
}

func TestCacheSize(t *testing.T) {
	ctx := context.Background()
	repo := newAskedRepo()
	for i := range 10 {
		id := fmt.Sprint("p", i)
		repo.put(id, func() *Product { return &Product{SKU: id} })
	}
	c := NewCache[*Product](repo, CacheOptions{Size: 3})
	for _, id := range []string{"p0", "p1", "p2", "p0", "p3"} { // p1 is the least recently used
		if _, err := c.Find(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if c.Len() != 3 {
		t.Fatalf("Len = %d", c.Len())
	}
	before := len(repo.calls())
	for _, id := range []string{"p0", "p2", "p3"} {
		if _, err := c.Find(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if len(repo.calls()) != before {
		t.Fatal("a recently used entity was evicted")
	}
	if _, err := c.Find(ctx, "p1"); err != nil || len(repo.calls()) != before+1 {
		t.Fatal("the least recently used entity was not evicted")
	}
}

// slowRepo blocks FindMany until released.
type slowRepo struct {
	*askedRepo
	started chan struct{}
	release chan struct{}
}

func (r *slowRepo) FindMany(ctx context.Context, ids []string) (map[string]*Product, error) {
	r.started <- struct{}{}
	<-r.release
	return r.askedRepo.FindMany(ctx, ids)
}

// TestCacheInvalidationDuringFetch: a fetch that an invalidation overtook is
// not cached.
func TestCacheInvalidationDuringFetch(t *testing.T) {
	ctx := context.Background()
	r := &slowRepo{askedRepo: newAskedRepo(), started: make(chan struct{}), release: make(chan struct{})}
	c := NewCache[*Product](r, CacheOptions{})
	done := make(chan error)
	go func() {
		_, err := c.Find(ctx, "apple")
		done <- err
	}()
	<-r.started
	c.Invalidate("apple")
	close(r.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c.Len() != 0 {
		t.Fatal("a fetch overtaken by an invalidation was cached")
	}
	go func() { <-r.started }()
	if _, err := c.Find(ctx, "apple"); err != nil || c.Len() != 1 {
		t.Fatalf("then: %v, Len %d", err, c.Len())
	}
}

func TestCacheConcurrent(t *testing.T) {
	ctx := context.Background()
	repo := newAskedRepo()
	c := NewCache[*Product](repo, CacheOptions{Size: 2})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				ids := []string{"apple", "pear", "plum"}[j%3:]
				got, err := c.FindMany(ctx, ids)
				if err != nil || len(got) != len(ids) {
					t.Errorf("FindMany(%v) = %v, %v", ids, got, err)
					return
				}
				got[ids[0]].Name = "mine"
				if (i+j)%17 == 0 {
					c.Invalidate("pear")
				}
			}
		})
	}
	wg.Wait()
	if p, _ := c.Find(ctx, "plum"); p.Name == "mine" {
		t.Fatal("a change to a copy reached the cache")
	}
}

// ---- copies ----

type cyclic struct {
	Name   string
	Next   *cyclic
	Any    any
	hidden *Supplier
	m      map[string][]*Supplier
	arr    [2]*Supplier
	fn     func()
}

func (c *cyclic) EntityID() string { return c.Name }

func TestCacheCopies(t *testing.T) {
	a := &cyclic{Name: "a", hidden: &Supplier{Name: "h"}, m: map[string][]*Supplier{"k": {{Name: "m"}}}, arr: [2]*Supplier{{Name: "x"}}, fn: func() {}}
	a.Next = a
	a.Any = &cyclic{Name: "inner", Next: a}
	cl := clonerOf(reflect.TypeFor[*cyclic]())
	b := a
	cl(reflect.ValueOf(&b).Elem())
	switch {
	case b == a:
		t.Fatal("not copied")
	case b.Next != b:
		t.Fatal("a cycle was not copied as a cycle")
	case b.hidden == a.hidden || b.hidden.Name != "h":
		t.Fatal("an unexported pointer is shared")
	case &b.m["k"][0] == &a.m["k"][0] || b.m["k"][0] == a.m["k"][0] || b.m["k"][0].Name != "m":
		t.Fatal("a map of slices of pointers is shared")
	case b.arr[0] == a.arr[0] || b.arr[0].Name != "x" || b.arr[1] != nil:
		t.Fatal("an array of pointers is shared")
	case b.Any.(*cyclic) == a.Any.(*cyclic) || b.Any.(*cyclic).Next != b:
		t.Fatal("an interface value was not copied (or its cycle lost)")
	case b.fn == nil:
		t.Fatal("a func was dropped")
	}
}

type withClone struct{ ID string }

func (w *withClone) EntityID() string  { return w.ID }
func (w *withClone) Clone() *withClone { return &withClone{ID: w.ID + "'"} }

func TestCacheUsesCloneMethod(t *testing.T) {
	r := newRepo[*withClone]()
	r.put("x", func() *withClone { return &withClone{ID: "x"} })
	c := NewCache[*withClone](r, CacheOptions{})
	if _, err := c.Find(context.Background(), "x"); err != nil {
		t.Fatal(err)
	}
	got, err := c.Find(context.Background(), "x")
	if err != nil || got.ID != "x''" { // cloned into the cache, cloned out of it
		t.Fatalf("got %+v, %v", got, err)
	}
}

// TestCacheMemoizesSnapshots: a load through an entity cache takes the
// snapshot of a cached entity (and of the entities nested in it) once per cache
// entry; a changed entity is still stored whole, an unchanged one as a reference.
func TestCacheMemoizesSnapshots(t *testing.T) {
	ctx := context.Background()
	repo := newAskedRepo()
	products, p, data := cachedBasket(t, repo, CacheOptions{}, "apple", "pear")
	load := func() (*Basket, *Tracker) {
		t.Helper()
		got, tr := newBasket(nil), NewTracker()
		if err := p.Decode(ctx, data, got, tr); err != nil {
			t.Fatal(err)
		}
		return got, tr
	}
	whole := func(b *Basket, tr *Tracker) []bool {
		t.Helper()
		out, err := p.Encode(ctx, b, tr)
		if err != nil {
			t.Fatal(err)
		}
		var kinds []bool
		for _, it := range decoded(t, out)["items"].([]any) {
			kinds = append(kinds, it.(map[string]any)["product"].([]any)[0] == int8(entityWholeTag))
		}
		return kinds
	}

	got, tr := load()
	if k := whole(got, tr); !slices.Equal(k, []bool{false, false}) {
		t.Fatalf("unchanged entities stored whole: %v", k)
	}
	products.mu.Lock()
	apple := products.entries["apple"]
	memo := apple.snap
	products.mu.Unlock()
	if memo == nil || len(memo.nested) != 1 {
		t.Fatalf("no snapshot memoized for apple, or not its supplier's: %+v", memo)
	}
	// The memoized snapshot is what the next load records: a stand-in for it
	// makes apple look changed since its load, and it is stored whole.
	products.mu.Lock()
	apple.snap = &snapMemo{by: memo.by, hash: memo.hash + 1, nested: memo.nested}
	products.mu.Unlock()
	got, tr = load()
	if k := whole(got, tr); !slices.Equal(k, []bool{true, false}) {
		t.Fatalf("a load took a new snapshot instead of the memoized one: %v", k)
	}
	products.mu.Lock()
	apple.snap = memo
	products.mu.Unlock()

	// Changes after a load: to an entity, and to the entity nested in it.
	got, tr = load()
	got.Items[0].Product.Name = "changed"
	if k := whole(got, tr); !slices.Equal(k, []bool{true, false}) {
		t.Fatalf("a changed entity: %v", k)
	}
	got, tr = load()
	got.Items[1].Product.Supplier.Name = "changed"
	out, err := p.Encode(ctx, got, tr)
	if err != nil {
		t.Fatal(err)
	}
	if k := whole(got, tr); !slices.Equal(k, []bool{false, true}) || !bytes.Contains(out, []byte("changed")) {
		t.Fatalf("a changed nested entity: %v, stored: %v", k, bytes.Contains(out, []byte("changed")))
	}

	// A new version in the cache gets its own snapshot.
	repo.put("apple", func() *Product { return &Product{SKU: "apple", Name: "new apple"} })
	products.Invalidate("apple")
	got, _ = load()
	if got.Items[0].Product.Name != "new apple" {
		t.Fatalf("loaded %+v after the invalidation", got.Items[0].Product)
	}
	got, tr = load() // served from the cache: its snapshot is the new version's
	if k := whole(got, tr); !slices.Equal(k, []bool{false, false}) {
		t.Fatalf("after a new version: %v", k)
	}
}

// sharingEnt's Clone is shallow: its copies share the map with the cached entity.
type sharingEnt struct {
	ID    string
	Attrs map[string]string
}

func (s *sharingEnt) EntityID() string   { return s.ID }
func (s *sharingEnt) Clone() *sharingEnt { c := *s; return &c }

// selfEnt's Clone returns its receiver.
type selfEnt struct{ ID, Name string }

func (s *selfEnt) EntityID() string { return s.ID }
func (s *selfEnt) Clone() *selfEnt  { return s }

// valueEnt holds only values: a shallow Clone is a deep one.
type valueEnt struct {
	ID    string
	Price int
	At    time.Time
	Dims  [3]float64
}

func (v *valueEnt) EntityID() string { return v.ID }
func (v *valueEnt) Clone() *valueEnt { c := *v; return &c }

type entHolder[E Entity] struct {
	Item E `msgpack:"item"`
}

// restoredAfterSharedChange: one session changes its copy of an entity in
// place (which, through a copy that shares state with the cache, changes the
// cached entity), another loads it and sets it back; what the second stores
// must reload as it set it.
func restoredAfterSharedChange[E Entity](t *testing.T, c *Cache[E], change, restore func(E), get func(E) string, want string) {
	t.Helper()
	ctx := context.Background()
	p, data := holderOf(t, c)
	load := func() (*entHolder[E], *Tracker) { return loadHolder[E](t, p, data) }
	h1, _ := load()
	change(h1.Item)
	h2, tr2 := load()
	restore(h2.Item)
	out, err := p.Encode(ctx, h2, tr2)
	if err != nil {
		t.Fatal(err)
	}
	back := &entHolder[E]{}
	if err := p.Decode(ctx, out, back, NewTracker()); err != nil {
		t.Fatal(err)
	}
	if got := get(back.Item); got != want {
		t.Fatalf("the second session stored %q, it reloads %q: stored as a reference to the changed cached entity", want, got)
	}
}

// TestCacheSnapshotsAndSharingClones: an entity whose copies may share state
// with the cached one (a shallow Clone of an entity holding a map, a Clone
// returning its receiver) gets no kept snapshot, so that a change made in place
// through a shared part is never stored as a reference; one holding only
// values keeps its snapshot.
func TestCacheSnapshotsAndSharingClones(t *testing.T) {
	sharing := newRepo[*sharingEnt]()
	sharing.put("a", func() *sharingEnt { return &sharingEnt{ID: "a", Attrs: map[string]string{"k": "v0"}} })
	sc := NewCache[*sharingEnt](sharing, CacheOptions{})
	restoredAfterSharedChange(t, sc,
		func(e *sharingEnt) { e.Attrs["k"] = "v1" },
		func(e *sharingEnt) { e.Attrs = map[string]string{"k": "v0"} },
		func(e *sharingEnt) string { return e.Attrs["k"] }, "v0")

	self := newRepo[*selfEnt]()
	self.put("a", func() *selfEnt { return &selfEnt{ID: "a", Name: "v0"} })
	cs := NewCache[*selfEnt](self, CacheOptions{})
	restoredAfterSharedChange(t, cs,
		func(e *selfEnt) { e.Name = "v1" },
		func(e *selfEnt) { e.Name = "v0" },
		func(e *selfEnt) string { return e.Name }, "v0")
	for _, c := range []interface{ kept(string) bool }{sc, cs} {
		if c.kept("a") {
			t.Errorf("%T kept a snapshot", c)
		}
	}

	values := newRepo[*valueEnt]()
	values.put("a", func() *valueEnt { return &valueEnt{ID: "a", Price: 1, At: time.Unix(5, 0)} })
	vc := NewCache[*valueEnt](values, CacheOptions{})
	restoredAfterSharedChange(t, vc,
		func(e *valueEnt) { e.Price = 2 },
		func(e *valueEnt) { e.Price = 1 },
		func(e *valueEnt) string { return fmt.Sprint(e.Price) }, "1")
	if !vc.kept("a") {
		t.Error("an entity holding only values kept no snapshot")
	}
}

func (c *Cache[E]) kept(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[id]
	return e != nil && e.snap != nil
}

// valueStruct is valueEnt as a value type: the entity is the struct itself.
type valueStruct struct {
	ID    string
	Price int
}

func (v valueStruct) EntityID() string { return v.ID }

// deepValueEnt holds only values and has no Clone: the cache copies it deeply.
type deepValueEnt struct {
	ID   string
	Size int16
	Tags [2]string
}

func (v *deepValueEnt) EntityID() string { return v.ID }

// TestCacheUnchangedNotEncoded: an entity holding only values, loaded through
// the cache, is compared with the cached value its kept snapshot was made from;
// an identical copy is stored as a reference without being encoded (a stand-in
// hash that no encoding matches does not change that), any change is stored
// whole, and a copy that differs from the kept value falls back to the hash.
func TestCacheUnchangedNotEncoded(t *testing.T) {
	values := newRepo[*valueEnt]()
	values.put("a", func() *valueEnt {
		return &valueEnt{ID: "a", Price: 1, At: time.Unix(5, 0), Dims: [3]float64{1, 2, 3}}
	})
	unchangedNotEncoded(t, NewCache[*valueEnt](values, CacheOptions{}), map[string]func(*valueEnt){
		"price": func(v *valueEnt) { v.Price = 2 },
		"time":  func(v *valueEnt) { v.At = v.At.Add(time.Nanosecond) },
		"array": func(v *valueEnt) { v.Dims[2] = -3 },
	}, func(v *valueEnt) { v.ID = strings.Clone(v.ID) }, func(v *valueEnt) *valueEnt { c := *v; c.Price = 99; return &c })

	deep := newRepo[*deepValueEnt]()
	deep.put("a", func() *deepValueEnt { return &deepValueEnt{ID: "a", Size: 3, Tags: [2]string{"x", "y"}} })
	unchangedNotEncoded(t, NewCache[*deepValueEnt](deep, CacheOptions{}), map[string]func(*deepValueEnt){
		"int16":  func(v *deepValueEnt) { v.Size = -3 },
		"string": func(v *deepValueEnt) { v.Tags[1] = "z" },
	}, func(v *deepValueEnt) { v.Tags[0] = strings.Clone(v.Tags[0]) }, func(v *deepValueEnt) *deepValueEnt { c := *v; c.Size = 9; return &c })

	// A value-type entity: the cache keeps a copy of the value it compares with.
	vs := newRepo[valueStruct]()
	vs.put("a", func() valueStruct { return valueStruct{ID: "a", Price: 7} })
	vc := NewCache[valueStruct](vs, CacheOptions{})
	p, data := holderOf(t, vc)
	for _, price := range []int{7, 7, 8} {
		h, tr := loadHolder[valueStruct](t, p, data)
		h.Item.Price = price
		if whole := storedWhole(t, p, h, tr); whole != (price != 7) {
			t.Errorf("value entity with price %d: stored whole %v", price, whole)
		}
	}
	if !vc.kept("a") {
		t.Error("the value entity kept no snapshot")
	}
}

// holderOf returns the plan of an entHolder[E] on a registry of c and a stored
// holder of c's entity "a".
func holderOf[E Entity](t *testing.T, c *Cache[E]) (*Plan, []byte) {
	t.Helper()
	ctx := context.Background()
	reg := NewRegistry()
	if _, err := reg.AddRepository(c); err != nil {
		t.Fatal(err)
	}
	p, err := reg.Plan(reflect.TypeFor[*entHolder[E]]())
	if err != nil {
		t.Fatal(err)
	}
	e, err := c.Find(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	data, err := p.Encode(ctx, &entHolder[E]{Item: e}, NewTracker())
	if err != nil {
		t.Fatal(err)
	}
	return p, data
}

// loadHolder decodes data, an entHolder's encoding made by holderOf, with p
// and a new tracker, as a request loading it does.
func loadHolder[E Entity](t *testing.T, p *Plan, data []byte) (*entHolder[E], *Tracker) {
	t.Helper()
	h, tr := &entHolder[E]{}, NewTracker()
	if err := p.Decode(context.Background(), data, h, tr); err != nil {
		t.Fatal(err)
	}
	return h, tr
}

func storedWhole[E Entity](t *testing.T, p *Plan, h *entHolder[E], tr *Tracker) bool {
	t.Helper()
	out, err := p.Encode(context.Background(), h, tr)
	if err != nil {
		t.Fatal(err)
	}
	return decoded(t, out)["item"].([]any)[0] == int8(entityWholeTag)
}

// unchangedNotEncoded checks TestCacheUnchangedNotEncoded's promises for the
// pointer entity "a" of c: changes are stored whole, same (a change to equal
// content) is not; other returns a value unlike the cached one.
func unchangedNotEncoded[E Entity](t *testing.T, c *Cache[E], changes map[string]func(E), same func(E), other func(E) E) {
	t.Helper()
	p, data := holderOf(t, c)
	stored := func(change func(E)) bool {
		t.Helper()
		h, tr := loadHolder[E](t, p, data)
		change(h.Item)
		return storedWhole(t, p, h, tr)
	}
	if stored(same) {
		t.Fatal("an unchanged entity stored whole")
	}
	c.mu.Lock()
	entry := c.entries["a"]
	memo := entry.snap
	c.mu.Unlock()
	if memo == nil || memo.base != reflect.ValueOf(entry.value).UnsafePointer() {
		t.Fatalf("the snapshot does not keep the cached value (never handed out): %+v", memo)
	}
	c.mu.Lock()
	entry.snap = &snapMemo{by: memo.by, hash: memo.hash + 1, base: memo.base}
	c.mu.Unlock()
	if stored(same) {
		t.Fatal("an identical copy was encoded and hashed instead of compared")
	}
	for name, change := range changes {
		if !stored(change) {
			t.Errorf("%s changed: stored as a reference", name)
		}
	}
	c.mu.Lock()
	entry.snap = &snapMemo{by: memo.by, hash: memo.hash, base: reflect.ValueOf(other(entry.value)).UnsafePointer()}
	c.mu.Unlock()
	if stored(same) {
		t.Fatal("a copy unlike the kept value did not fall back to its hash")
	}
}

// TestCacheRefillDropsKeptValue: an expired entry fetched again is the same
// cache entry with a new value; its kept snapshot (the hash and the value the
// commit compares with) goes with the old value. A session that sets the new
// version back to the old one has changed it, and stores it whole.
func TestCacheRefillDropsKeptValue(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	values := newRepo[*valueEnt]()
	values.put("a", func() *valueEnt { return &valueEnt{ID: "a", Price: 1} })
	c := NewCache[*valueEnt](values, CacheOptions{TTL: time.Minute, Now: clk.Now})
	p, data := holderOf(t, c)
	load := func() (*entHolder[*valueEnt], *Tracker) { return loadHolder[*valueEnt](t, p, data) }
	if h, tr := load(); storedWhole(t, p, h, tr) || !c.kept("a") { // served from the cache: kept {Price 1}
		t.Fatal("an unchanged entity stored whole, or no snapshot kept")
	}
	clk.add(2 * time.Minute)
	values.put("a", func() *valueEnt { return &valueEnt{ID: "a", Price: 2} })
	if h, _ := load(); h.Item.Price != 2 { // expired: fetched again into the same entry
		t.Fatalf("loaded %+v after the TTL", h.Item)
	}
	if c.kept("a") {
		t.Fatal("the refilled entry kept the old value's snapshot")
	}
	h, tr := load()
	h.Item.Price = 1
	if !storedWhole(t, p, h, tr) {
		t.Fatal("the new version set back to the old value was stored as a reference: the change is lost")
	}
	if h, tr := load(); h.Item.Price != 2 || storedWhole(t, p, h, tr) {
		t.Fatalf("the new version: loaded %+v, or stored whole unchanged", h.Item)
	}
}

// refusedMoney encodes through a method of its own (on the pointer).
type refusedMoney struct{ Cents int64 }

func (m *refusedMoney) MarshalMsgpack() ([]byte, error) { return []byte{0xc0}, nil }

// refusedCat is a value entity, nested by value.
type refusedCat struct{ ID string }

func (c refusedCat) EntityID() string { return c.ID }

// refusedStamp embeds time.Time, and with it time.Time's MarshalBinary.
type refusedStamp struct {
	time.Time
	Note string
}

// TestContentEqualRefuses: an entity type is compared field by field only when
// everything in it encodes as its fields: a nested type with a marshalling
// method of its own (also on the pointer, also promoted by embedding) or a
// nested entity (stored as a reference) leaves it to the hash.
func TestContentEqualRefuses(t *testing.T) {
	if contentEqual(reflect.TypeFor[*valueEnt]()) == nil || contentEqual(reflect.TypeFor[valueStruct]()) == nil ||
		contentEqual(reflect.TypeFor[*struct {
			valueEnt
			N [2]int
		}]()) == nil {
		t.Fatal("an entity holding only values is not compared")
	}
	for _, typ := range []reflect.Type{
		reflect.TypeFor[*struct {
			valueEnt
			M refusedMoney
		}](),
		reflect.TypeFor[*struct {
			valueEnt
			C [1]refusedCat
		}](),
		reflect.TypeFor[*struct {
			valueEnt
			S refusedStamp
		}](),
	} {
		if contentEqual(typ) != nil {
			t.Errorf("%v is compared field by field", typ.Elem().Field(1).Type)
		}
	}
}

// hookedEnt encodes through methods of its own; its MarshalMsgpack runs the
// hook of its test (TestCacheRefillDuringSnapshot).
type hookedEnt struct {
	ID    string
	Price int
}

type hookedFields hookedEnt // hookedEnt's fields, without its methods

func (h *hookedEnt) EntityID() string  { return h.ID }
func (h *hookedEnt) Clone() *hookedEnt { c := *h; return &c }
func (h *hookedEnt) MarshalMsgpack() ([]byte, error) {
	marshalHook.run(h)
	return msgpack.Marshal((*hookedFields)(h))
}
func (h *hookedEnt) UnmarshalMsgpack(b []byte) error {
	return msgpack.Unmarshal(b, (*hookedFields)(h))
}

// onceHook runs the function it was armed with on the marshalling of one
// value, once.
type onceHook struct {
	mu sync.Mutex
	on *hookedEnt
	fn func()
}

func (o *onceHook) arm(on *hookedEnt, fn func()) { o.mu.Lock(); o.on, o.fn = on, fn; o.mu.Unlock() }

func (o *onceHook) run(h *hookedEnt) {
	o.mu.Lock()
	fn := o.fn
	if h != o.on {
		fn = nil
	} else {
		o.on, o.fn = nil, nil
	}
	o.mu.Unlock()
	if fn != nil {
		fn()
	}
}

// marshalHook is hookedEnt's hook (test-only state, one test uses it).
var marshalHook onceHook

// TestCacheRefillDuringSnapshot: a load's snapshot of a cached entity is made
// outside the cache's lock; when the entry is fetched again meanwhile (expired,
// refilled with a new version), the snapshot, made of the old value, is not
// kept for the new one. Kept, a session setting the new version back to the old
// would have it stored as a reference: the change lost.
func TestCacheRefillDuringSnapshot(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: time.Unix(1000, 0)}
	values := newRepo[*hookedEnt]()
	values.put("a", func() *hookedEnt { return &hookedEnt{ID: "a", Price: 1} })
	c := NewCache[*hookedEnt](values, CacheOptions{TTL: time.Minute, Now: clk.Now})
	reg := NewRegistry()
	if _, err := reg.AddRepository(c); err != nil {
		t.Fatal(err)
	}
	p, err := reg.Plan(reflect.TypeFor[*entHolder[*hookedEnt]]())
	if err != nil {
		t.Fatal(err)
	}
	e, err := c.Find(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	cached := c.entries["a"].value
	c.mu.Unlock()
	refilled := false
	marshalHook.arm(cached, func() { // inside the first snapshot of {Price 1}
		clk.add(2 * time.Minute)
		values.put("a", func() *hookedEnt { return &hookedEnt{ID: "a", Price: 2} })
		e, err := c.Find(ctx, "a")
		refilled = err == nil && e.Price == 2
	})
	// The encoding learns the entity's version from the cache: its snapshot.
	data, err := p.Encode(ctx, &entHolder[*hookedEnt]{Item: e}, NewTracker())
	if err != nil || !refilled {
		t.Fatalf("encode: %v; refilled during the snapshot: %v", err, refilled)
	}
	if c.kept("a") {
		t.Fatal("the refilled entry kept the snapshot of the value before it")
	}
	load := func() (*entHolder[*hookedEnt], *Tracker) { return loadHolder[*hookedEnt](t, p, data) }
	h, tr := load()
	if h.Item.Price != 2 {
		t.Fatalf("loaded %+v after the refill", h.Item)
	}
	h.Item.Price = 1
	if !storedWhole(t, p, h, tr) {
		t.Fatal("the new version set back to the old value was stored as a reference: the change is lost")
	}
	if h, tr := load(); storedWhole(t, p, h, tr) {
		t.Fatal("the new version, unchanged, stored whole")
	}
}
