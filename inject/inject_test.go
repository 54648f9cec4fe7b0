package inject

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
)

// ---- fixtures ----

type Catalog struct {
	Secret string
}

type Supplier struct {
	ID   string
	Name string
}

func (s *Supplier) EntityID() string { return s.ID }

type Product struct {
	SKU      string
	Name     string
	Price    int
	Supplier *Supplier
}

func (p *Product) EntityID() string { return p.SKU }

// repo is an in-memory repository that returns fresh copies and counts calls.
type repo[E Entity] struct {
	mu       sync.Mutex
	items    map[string]func() E
	finds    int
	findMany int
	fail     error
}

func newRepo[E Entity]() *repo[E] { return &repo[E]{items: map[string]func() E{}} }

func (r *repo[E]) put(id string, f func() E) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.items[id] = f
}

func (r *repo[E]) del(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.items, id)
}

func (r *repo[E]) Find(_ context.Context, id string) (E, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finds++
	var zero E
	if r.fail != nil {
		return zero, r.fail
	}
	f, ok := r.items[id]
	if !ok {
		return zero, fmt.Errorf("no %s: %w", id, ErrEntityNotFound)
	}
	return f(), nil
}

func (r *repo[E]) counts() (int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.finds, r.findMany
}

// batchRepo adds FindMany.
type batchRepo[E Entity] struct{ *repo[E] }

func (r batchRepo[E]) FindMany(_ context.Context, ids []string) (map[string]E, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.findMany++
	if r.fail != nil {
		return nil, r.fail
	}
	out := map[string]E{}
	for _, id := range ids {
		if f, ok := r.items[id]; ok {
			out[id] = f()
		}
	}
	return out, nil
}

type LineItem struct {
	Product *Product `msgpack:"product"`
	Qty     int      `msgpack:"qty"`
}

type Basket struct {
	Items   []LineItem     `msgpack:"items" session:"autostart"`
	Note    string         `msgpack:"note,omitempty"`
	Cat     *Catalog       // a constructor parameter type: a dependency
	Log     *slog.Logger   `inject:""`
	Scratch map[string]int `session:"-"`
	catalog *Catalog
}

type world struct {
	reg       *Registry
	products  *repo[*Product]
	suppliers *repo[*Supplier]
	logs      *bytes.Buffer
}

func newWorld(t testing.TB, batch bool) *world {
	t.Helper()
	logs := &bytes.Buffer{}
	w := &world{
		reg:       NewRegistry(WithLogger(slog.New(slog.NewTextHandler(logs, nil)))),
		products:  newRepo[*Product](),
		suppliers: newRepo[*Supplier](),
		logs:      logs,
	}
	var pr, sr any = w.products, w.suppliers
	if batch {
		pr, sr = batchRepo[*Product]{w.products}, batchRepo[*Supplier]{w.suppliers}
	}
	for _, r := range []any{pr, sr} {
		if _, err := w.reg.AddRepository(r); err != nil {
			t.Fatal(err)
		}
	}
	w.suppliers.put("acme", func() *Supplier { return &Supplier{ID: "acme", Name: "ACME Corp"} })
	for i, sku := range []string{"apple", "pear", "plum"} {
		price := 100 * (i + 1)
		w.products.put(sku, func() *Product {
			return &Product{SKU: sku, Name: strings.ToUpper(sku), Price: price, Supplier: &Supplier{ID: "acme", Name: "ACME Corp"}}
		})
	}
	return w
}

func (w *world) product(t testing.TB, sku string) *Product {
	t.Helper()
	p, err := w.products.Find(context.Background(), sku)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func basketPlan(t testing.TB, reg *Registry) *Plan {
	t.Helper()
	p, err := reg.Plan(reflect.TypeFor[*Basket](), Dependencies(reflect.TypeFor[*Catalog]()))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newBasket(c *Catalog) *Basket {
	return &Basket{Cat: c, catalog: c, Scratch: map[string]int{"fresh": 1}}
}

// decoded is a structural view of stored bytes, for assertions.
func decoded(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := msgpack.Unmarshal(b, &m); err != nil {
		t.Fatalf("stored bytes are not a msgpack map: %v", err)
	}
	return m
}

// ---- tests ----

func TestClassify(t *testing.T) {
	reg := NewRegistry()
	if _, err := reg.AddRepository(batchRepo[*Product]{newRepo[*Product]()}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.AddRepository(newRepo[*Supplier]()); err != nil {
		t.Fatal(err)
	}
	p := basketPlan(t, reg)
	got := map[string]string{}
	for _, f := range p.Fields() {
		s := f.Kind.String()
		if f.Autostart {
			s += "+autostart"
		}
		if f.Inject {
			s += "+inject"
		}
		got[f.Name+"/"+f.Key] = s
	}
	want := map[string]string{
		"Items/items": "state+autostart",
		"Note/note":   "state",
		"Cat/":        "dependency",
		"Log/":        "dependency+inject",
		"Scratch/":    "transient",
		"catalog/":    "unexported",
	}
	if !maps.Equal(got, want) {
		t.Fatalf("fields:\n got %v\nwant %v", got, want)
	}
	if !p.HasEntities() || !p.HasAutostart() || p.Type() != reflect.TypeFor[*Basket]() {
		t.Fatalf("HasEntities=%v HasAutostart=%v Type=%v", p.HasEntities(), p.HasAutostart(), p.Type())
	}
}

func TestStripAndReinject(t *testing.T) {
	w := newWorld(t, true)
	p := basketPlan(t, w.reg)
	ctx := context.Background()
	cat := &Catalog{Secret: "catalog-secret-data"}
	logger := slog.New(slog.DiscardHandler)
	b := newBasket(cat)
	b.Log = logger
	b.Note = "gift"
	b.Scratch["x"] = 2
	b.Items = []LineItem{{Product: w.product(t, "apple"), Qty: 2}}

	data, err := p.Encode(ctx, b, NewTracker())
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"catalog-secret-data", "Secret", "Scratch", "Log", "Cat"} {
		if bytes.Contains(data, []byte(leak)) {
			t.Fatalf("stored bytes contain %q: %q", leak, data)
		}
	}
	m := decoded(t, data)
	if len(m) != 2 || m["note"] != "gift" {
		t.Fatalf("stored map = %v", m)
	}

	fresh := newBasket(cat)
	fresh.Log = logger
	if err := p.Decode(ctx, data, fresh, NewTracker()); err != nil {
		t.Fatal(err)
	}
	if fresh.Cat != cat || fresh.catalog != cat || fresh.Log != logger {
		t.Fatal("dependencies are not the live ones after decode")
	}
	if !maps.Equal(fresh.Scratch, map[string]int{"fresh": 1}) {
		t.Fatalf("transient field = %v, want its fresh value", fresh.Scratch)
	}
	if fresh.Note != "gift" || len(fresh.Items) != 1 || fresh.Items[0].Qty != 2 || fresh.Items[0].Product.Name != "APPLE" {
		t.Fatalf("state after decode = %+v", fresh)
	}
}

func TestEntityReferenceWhileUnchanged(t *testing.T) {
	w := newWorld(t, true)
	p := basketPlan(t, w.reg)
	ctx := context.Background()
	b := newBasket(nil)
	b.Items = []LineItem{{Product: w.product(t, "apple"), Qty: 1}, {Product: w.product(t, "pear"), Qty: 3}, {Product: w.product(t, "apple"), Qty: 1}}

	// Entities the tracker does not know are compared with the repository once.
	tr := NewTracker()
	data, err := p.Encode(ctx, b, tr)
	if err != nil {
		t.Fatal(err)
	}
	if _, many := w.products.counts(); many != 1 {
		t.Fatalf("FindMany calls on encode = %d, want 1 batch", many)
	}
	if bytes.Contains(data, []byte("APPLE")) || bytes.Contains(data, []byte("ACME")) {
		t.Fatalf("unchanged entities stored whole: %q", data)
	}
	// A second encode with the same tracker asks nothing.
	again, err := p.Encode(ctx, b, tr)
	if err != nil || !bytes.Equal(again, data) {
		t.Fatalf("second encode differs (%v)", err)
	}
	if _, many := w.products.counts(); many != 1 {
		t.Fatal("second encode asked the repository again")
	}

	// Load: one batch per entity type; one value per ID.
	loaded := newBasket(nil)
	ltr := NewTracker()
	if err := p.Decode(ctx, data, loaded, ltr); err != nil {
		t.Fatal(err)
	}
	if _, many := w.products.counts(); many != 2 {
		t.Fatalf("FindMany calls after load = %d, want 2", many)
	}
	if loaded.Items[0].Product != loaded.Items[2].Product {
		t.Fatal("two references to one entity loaded as two values")
	}
	if loaded.Items[1].Product.Name != "PEAR" || loaded.Items[1].Product.Supplier.Name != "ACME Corp" {
		t.Fatalf("loaded product = %+v", loaded.Items[1].Product)
	}
	// Re-encoding the unchanged load gives the same bytes without repository calls.
	re, err := p.Encode(ctx, loaded, ltr)
	if err != nil || !bytes.Equal(re, data) {
		t.Fatalf("re-encode of an unchanged load differs (%v)", err)
	}
	if _, many := w.products.counts(); many != 2 {
		t.Fatal("re-encode asked the repository")
	}

	// The repository changes; the session's unchanged reference follows it.
	w.products.put("pear", func() *Product { return &Product{SKU: "pear", Name: "NEW PEAR", Price: 1} })
	next := newBasket(nil)
	if err := p.Decode(ctx, re, next, NewTracker()); err != nil {
		t.Fatal(err)
	}
	if next.Items[1].Product.Name != "NEW PEAR" {
		t.Fatalf("reference did not follow the repository: %+v", next.Items[1].Product)
	}
}

func TestEntityModifiedIsStoredWhole(t *testing.T) {
	w := newWorld(t, false)
	p := basketPlan(t, w.reg)
	ctx := context.Background()
	b := newBasket(nil)
	b.Items = []LineItem{{Product: w.product(t, "apple"), Qty: 1}, {Product: w.product(t, "pear"), Qty: 1}}
	tr := NewTracker()
	data, err := p.Encode(ctx, b, tr)
	if err != nil {
		t.Fatal(err)
	}
	loaded := newBasket(nil)
	ltr := NewTracker()
	if err := p.Decode(ctx, data, loaded, ltr); err != nil {
		t.Fatal(err)
	}
	loaded.Items[0].Product.Price = 42 // modified in the session
	modified, err := p.Encode(ctx, loaded, ltr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(modified, []byte("APPLE")) || bytes.Contains(modified, []byte("PEAR")) {
		t.Fatalf("want apple whole and pear by reference: %q", modified)
	}
	finds, _ := w.products.counts()

	// The whole copy loads as stored (no repository call for it), and stays whole.
	w.products.put("apple", func() *Product { return &Product{SKU: "apple", Name: "CHANGED IN DB"} })
	again := newBasket(nil)
	atr := NewTracker()
	if err := p.Decode(ctx, modified, again, atr); err != nil {
		t.Fatal(err)
	}
	if got := again.Items[0].Product; got.Price != 42 || got.Name != "APPLE" {
		t.Fatalf("whole entity loaded as %+v", got)
	}
	if f, _ := w.products.counts(); f != finds+1 {
		t.Fatalf("Find calls = %d, want %d (only pear)", f, finds+1)
	}
	re, err := p.Encode(ctx, again, atr)
	if err != nil || !bytes.Equal(re, modified) {
		t.Fatalf("re-encode of a whole entity changed (%v):\n%q\n%q", err, re, modified)
	}
}

func TestNestedEntityModified(t *testing.T) {
	w := newWorld(t, true)
	p := basketPlan(t, w.reg)
	ctx := context.Background()
	b := newBasket(nil)
	b.Items = []LineItem{{Product: w.product(t, "apple"), Qty: 1}}
	tr := NewTracker()
	data, _ := p.Encode(ctx, b, tr)
	loaded := newBasket(nil)
	ltr := NewTracker()
	if err := p.Decode(ctx, data, loaded, ltr); err != nil {
		t.Fatal(err)
	}
	loaded.Items[0].Product.Supplier.Name = "Renamed"
	out, err := p.Encode(ctx, loaded, ltr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte("Renamed")) {
		t.Fatalf("modified nested entity not stored: %q", out)
	}
	back := newBasket(nil)
	if err := p.Decode(ctx, out, back, NewTracker()); err != nil {
		t.Fatal(err)
	}
	if back.Items[0].Product.Supplier.Name != "Renamed" || back.Items[0].Product.Name != "APPLE" {
		t.Fatalf("loaded %+v / %+v", back.Items[0].Product, back.Items[0].Product.Supplier)
	}
}

func TestNewEntityIsStoredWhole(t *testing.T) {
	w := newWorld(t, true)
	p := basketPlan(t, w.reg)
	ctx := context.Background()
	b := newBasket(nil)
	b.Items = []LineItem{
		{Product: &Product{SKU: "", Name: "UNSAVED"}},
		{Product: &Product{SKU: "kiwi", Name: "KIWI"}}, // an ID the repository does not have
	}
	tr := NewTracker()
	data, err := p.Encode(ctx, b, tr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("UNSAVED")) || !bytes.Contains(data, []byte("KIWI")) {
		t.Fatalf("new entities not stored whole: %q", data)
	}
	back := newBasket(nil)
	if err := p.Decode(ctx, data, back, NewTracker()); err != nil {
		t.Fatal(err)
	}
	if back.Items[0].Product.Name != "UNSAVED" || back.Items[1].Product.Name != "KIWI" {
		t.Fatalf("loaded %+v", back.Items)
	}
}

type Shelf struct {
	Single   *Product            `msgpack:"single"`
	List     []*Product          `msgpack:"list"`
	ByName   map[string]*Product `msgpack:"by_name"`
	Items    map[string]LineItem `msgpack:"items"`
	Fixed    [2]*Product         `msgpack:"fixed"`
	Featured Featured            `msgpack:"featured"`
	Anything []Featured          `msgpack:"anything"`
}

// Featured is an interface whose implementations are registered.
type Featured interface{ Label() string }

type Banner struct{ Text string }

func (b Banner) Label() string { return b.Text }

func (p *Product) Label() string { return p.Name }

// TestMissingEntityLoadsAsAbsent: a deleted entity loads as the zero value of
// its place, everywhere, and nothing around it moves: the positions after it in
// a slice keep their indexes (it used to be dropped, shifting them).
func TestMissingEntityLoadsAsAbsent(t *testing.T) {
	w := newWorld(t, true)
	if err := w.reg.AddImplementations(reflect.TypeFor[Featured](), reflect.TypeFor[Banner](), reflect.TypeFor[*Product]()); err != nil {
		t.Fatal(err)
	}
	p, err := w.reg.Plan(reflect.TypeFor[*Shelf]())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s := &Shelf{
		Single:   w.product(t, "pear"),
		List:     []*Product{w.product(t, "apple"), w.product(t, "pear"), w.product(t, "plum")},
		ByName:   map[string]*Product{"a": w.product(t, "apple"), "p": w.product(t, "pear")},
		Items:    map[string]LineItem{"x": {Product: w.product(t, "pear"), Qty: 7}},
		Fixed:    [2]*Product{w.product(t, "pear"), w.product(t, "plum")},
		Featured: w.product(t, "pear"),
		Anything: []Featured{Banner{"sale"}, w.product(t, "pear"), w.product(t, "apple")},
	}
	data, err := p.Encode(ctx, s, NewTracker())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("PEAR")) {
		t.Fatalf("unchanged entities stored whole: %q", data)
	}
	w.products.del("pear")
	got := &Shelf{}
	if err := p.Decode(ctx, data, got, NewTracker()); err != nil {
		t.Fatal(err)
	}
	if got.Single != nil || got.Featured != nil || got.Fixed[0] != nil || got.Fixed[1].SKU != "plum" {
		t.Fatalf("single=%v featured=%v fixed=%v", got.Single, got.Featured, got.Fixed)
	}
	if len(got.List) != 3 || got.List[0].SKU != "apple" || got.List[1] != nil || got.List[2].SKU != "plum" {
		t.Fatalf("list = %v, want [apple <nil> plum]: positions must not shift", got.List)
	}
	if p, ok := got.ByName["p"]; len(got.ByName) != 2 || got.ByName["a"].SKU != "apple" || !ok || p != nil {
		t.Fatalf("map = %v, want a: apple and p: <nil> (the key stays)", got.ByName)
	}
	if it, ok := got.Items["x"]; !ok || it.Product != nil || it.Qty != 7 {
		t.Fatalf("map of structs = %+v (the item stays, its product is absent)", got.Items)
	}
	if len(got.Anything) != 3 || got.Anything[0].Label() != "sale" || got.Anything[1] != nil || got.Anything[2].Label() != "APPLE" {
		t.Fatalf("interfaces = %v, want [sale <nil> APPLE]", got.Anything)
	}
	if !strings.Contains(w.logs.String(), "no longer resolves") || !strings.Contains(w.logs.String(), "id=pear") {
		t.Fatalf("no warning logged: %s", w.logs)
	}
}

func TestRepositoryFailureIsNotIncompatible(t *testing.T) {
	w := newWorld(t, true)
	p := basketPlan(t, w.reg)
	ctx := context.Background()
	b := newBasket(nil)
	b.Items = []LineItem{{Product: w.product(t, "apple")}}
	data, _ := p.Encode(ctx, b, NewTracker())
	boom := errors.New("database down")
	w.products.fail = boom
	err := p.Decode(ctx, data, newBasket(nil), NewTracker())
	if !errors.Is(err, boom) || errors.Is(err, ErrIncompatible) {
		t.Fatalf("err = %v", err)
	}
	// Encoding with the repository down stores unknown entities whole.
	b2 := newBasket(nil)
	b2.Items = []LineItem{{Product: &Product{SKU: "apple", Name: "APPLE"}}}
	out, err := p.Encode(ctx, b2, NewTracker())
	if err != nil || !bytes.Contains(out, []byte("APPLE")) {
		t.Fatalf("encode with repository down: %v %q", err, out)
	}
}

type V1 struct {
	A     int                `msgpack:"a"`
	Gone  string             `msgpack:"gone"`
	Inner struct{ X, Y int } `msgpack:"inner"`
}

type V2 struct {
	A     int                `msgpack:"a"`
	Added string             `msgpack:"added"`
	Inner struct{ X, Z int } `msgpack:"inner"`
}

type V3 struct {
	A struct{ N int } `msgpack:"a"` // was an int
}

func TestSchemaEvolution(t *testing.T) {
	reg := NewRegistry()
	p1, err := reg.Plan(reflect.TypeFor[*V1]())
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := reg.Plan(reflect.TypeFor[*V2]())
	p3, _ := reg.Plan(reflect.TypeFor[*V3]())
	ctx := context.Background()
	v1 := &V1{A: 7, Gone: "bye"}
	v1.Inner.X, v1.Inner.Y = 1, 2
	data, err := p1.Encode(ctx, v1, nil)
	if err != nil {
		t.Fatal(err)
	}
	v2 := &V2{Added: "fresh default"}
	v2.Inner.Z = 9
	if err := p2.Decode(ctx, data, v2, nil); err != nil {
		t.Fatalf("adding and removing fields failed a load: %v", err)
	}
	if v2.A != 7 || v2.Added != "fresh default" || v2.Inner.X != 1 || v2.Inner.Z != 0 {
		t.Fatalf("v2 = %+v", v2)
	}
	err = p3.Decode(ctx, data, &V3{}, nil)
	if !errors.Is(err, ErrIncompatible) {
		t.Fatalf("incompatible change: err = %v, want ErrIncompatible", err)
	}
}

type Zoo struct {
	Pet    Animal         `msgpack:"pet"`
	Pets   []Animal       `msgpack:"pets"`
	Loose  any            `msgpack:"loose"`
	Counts map[string]int `msgpack:"counts"`
	When   time.Time      `msgpack:"when"`
	Tree   *TreeNode      `msgpack:"tree"`
}

type Animal interface{ Sound() string }
type Dog struct{ Name string }
type Cat struct{ Lives int }

func (d *Dog) Sound() string { return d.Name + ": woof" }
func (c Cat) Sound() string  { return fmt.Sprint("meow x", c.Lives) }

type TreeNode struct {
	Value    int
	Children []*TreeNode
}

func TestInterfacesMapsAndRecursion(t *testing.T) {
	reg := NewRegistry()
	if err := reg.AddImplementations(reflect.TypeFor[Animal](), reflect.TypeFor[*Dog](), reflect.TypeFor[Cat]()); err != nil {
		t.Fatal(err)
	}
	p, err := reg.Plan(reflect.TypeFor[*Zoo]())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	z := &Zoo{
		Pet:    &Dog{Name: "rex"},
		Pets:   []Animal{Cat{Lives: 9}, nil, &Dog{Name: "fido"}},
		Loose:  map[string]any{"k": "v"},
		Counts: map[string]int{},
		When:   now,
		Tree:   &TreeNode{Value: 1, Children: []*TreeNode{{Value: 2}, {Value: 3, Children: []*TreeNode{{Value: 4}}}}},
	}
	for i := range 50 {
		z.Counts[fmt.Sprint("key", i)] = i
	}
	data, err := p.Encode(ctx, z, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		again, _ := p.Encode(ctx, z, nil)
		if !bytes.Equal(again, data) {
			t.Fatal("equal state encoded to different bytes (map order)")
		}
	}
	got := &Zoo{}
	if err := p.Decode(ctx, data, got, nil); err != nil {
		t.Fatal(err)
	}
	if got.Pet.Sound() != "rex: woof" || got.Pets[0].Sound() != "meow x9" || got.Pets[1] != nil || got.Pets[2].Sound() != "fido: woof" {
		t.Fatalf("interfaces: %#v", got)
	}
	if !maps.Equal(got.Counts, z.Counts) || !got.When.Equal(now) || got.Loose.(map[string]any)["k"] != "v" {
		t.Fatalf("values: %#v", got)
	}
	if got.Tree.Children[1].Children[0].Value != 4 {
		t.Fatalf("tree: %#v", got.Tree)
	}

	// An implementation the registry does not know is refused on decode.
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	var buf bytes.Buffer
	enc.Reset(&buf)
	_ = enc.EncodeMapLen(1)
	_ = enc.EncodeString("pet")
	_ = enc.EncodeArrayLen(2)
	_ = enc.EncodeString("os/exec.Cmd")
	_ = enc.EncodeMapLen(0)
	if err := p.Decode(ctx, buf.Bytes(), &Zoo{}, nil); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("unregistered implementation: err = %v", err)
	}

	// A value of an unregistered type cannot be encoded.
	type Fish struct{ Animal }
	if _, err := p.Encode(ctx, &Zoo{Pet: Fish{}}, nil); err == nil || !strings.Contains(err.Error(), "not a registered implementation") {
		t.Fatalf("unregistered implementation on encode: %v", err)
	}

	// A pointer cycle fails to encode instead of recursing forever.
	loop := &TreeNode{Value: 1}
	loop.Children = []*TreeNode{loop}
	if _, err := p.Encode(ctx, &Zoo{Tree: loop}, nil); err == nil || !strings.Contains(err.Error(), "pointer cycle") {
		t.Fatalf("cycle: %v", err)
	}
}

type BadFunc struct {
	OnChange func()
}

type BadNested struct {
	Items []struct {
		Ch chan int
		P  unsafe.Pointer
	}
	Z complex128
}

type BadIface struct {
	Pet Animal
}

type BadEntity struct {
	S *Supplier
}

type BadKey struct {
	M map[*Product]int
}

type BadTags struct {
	Dep *Catalog `inject:""`
	//lint:ignore U1000 the unexported inject field under test
	hidden *Catalog `inject:""`
	X      int      `session:"sometimes"`
	Nested struct {
		Y int `session:"autostart"`
	}
}

type NoUnmarshal struct{ V int }

func (NoUnmarshal) MarshalText() ([]byte, error) { return []byte("x"), nil }

type BadMarshal struct {
	M NoUnmarshal
}

func TestStartupValidation(t *testing.T) {
	reg := NewRegistry(WithHints(Hints{Repository: "scope.Entities(<repository of %s>)"}))
	if _, err := reg.AddRepository(newRepo[*Product]()); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		typ  reflect.Type
		want []string
	}{
		{reflect.TypeFor[*BadFunc](), []string{"inject.BadFunc field OnChange (func())", "a func cannot be stored", "inject:\\\"\\\"", "session:\\\"-\\\""}},
		{reflect.TypeFor[*BadNested](), []string{"Items[].Ch (chan int)", "Items[].P (unsafe.Pointer)", "field Z (complex128)"}},
		{reflect.TypeFor[*BadIface](), []string{"field Pet (inject.Animal)", "no registered implementations", "register the implementations of inject.Animal"}},
		{reflect.TypeFor[*BadEntity](), []string{"field S (*inject.Supplier)", "no repository", "scope.Entities(<repository of *inject.Supplier>)"}},
		{reflect.TypeFor[*BadKey](), []string{"field M", "map keys must be plain values"}},
		{reflect.TypeFor[*BadTags](), []string{"field hidden", "must be exported", "unknown `session` tag \"sometimes\"", "Nested.Y", "only read on the fields of the session-scoped type"}},
		{reflect.TypeFor[*BadMarshal](), []string{"field M", "no matching unmarshalling method"}},
		{reflect.TypeFor[BadFunc](), []string{"not a pointer to a struct"}},
	}
	for _, c := range cases {
		_, err := reg.Plan(c.typ)
		if !errors.Is(err, ErrInvalidType) {
			t.Errorf("%v: err = %v, want ErrInvalidType", c.typ, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(fmt.Sprintf("%q", err.Error()), w) && !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q lacks %q", c.typ, err, w)
			}
		}
	}
	if err := reg.AddImplementations(reflect.TypeFor[Animal](), reflect.TypeFor[*Dog]()); err == nil {
		t.Error("registration after the first plan accepted")
	}
}

func TestRegistrationErrors(t *testing.T) {
	reg := NewRegistry()
	if err := reg.AddImplementations(reflect.TypeFor[Dog](), reflect.TypeFor[Cat]()); err == nil {
		t.Error("non-interface accepted")
	}
	if err := reg.AddImplementations(reflect.TypeFor[Animal](), reflect.TypeFor[Dog]()); err == nil {
		t.Error("Dog (value) does not implement Animal, accepted")
	}
	if _, err := reg.AddRepository(struct{}{}); err == nil || !strings.Contains(err.Error(), "no method Find") {
		t.Errorf("repository without Find: %v", err)
	}
	if _, err := reg.AddRepository(newRepo[*Product]()); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.AddRepository(batchRepo[*Product]{newRepo[*Product]()}); err == nil || !strings.Contains(err.Error(), "two repositories") {
		t.Errorf("second repository: %v", err)
	}
}

func TestFingerprint(t *testing.T) {
	w := newWorld(t, true)
	p := basketPlan(t, w.reg)
	b := newBasket(nil)
	f0, err := p.Fingerprint(b)
	if err != nil {
		t.Fatal(err)
	}
	b.Note = "not an autostart field"
	if f, _ := p.Fingerprint(b); f != f0 {
		t.Fatal("a non-autostart field changed the fingerprint")
	}
	b.Items = append(b.Items, LineItem{Product: w.product(t, "apple"), Qty: 1})
	f1, _ := p.Fingerprint(b)
	if f1 == f0 {
		t.Fatal("an autostart change kept the fingerprint")
	}
	b.Items[0].Product.Price++
	if f, _ := p.Fingerprint(b); f == f1 {
		t.Fatal("a change inside an entity kept the fingerprint")
	}
	if f, _ := w.products.counts(); f != 1 { // the w.product call only
		t.Fatalf("fingerprints called the repository (%d finds)", f)
	}
}

func TestHostileInput(t *testing.T) {
	w := newWorld(t, true)
	p := basketPlan(t, w.reg)
	ctx := context.Background()
	deep := bytes.Repeat([]byte{0x91}, 10000)
	deep = append([]byte{0x81, 0xa4, 'n', 'o', 't', 'e'}, append(deep, 0xc0)...)
	cases := map[string][]byte{
		"empty":          nil,
		"nil":            {0xc0},
		"huge array":     {0x81, 0xa5, 'i', 't', 'e', 'm', 's', 0xdd, 0xff, 0xff, 0xff, 0xff},
		"huge map":       {0xdf, 0x7f, 0xff, 0xff, 0xff},
		"huge string":    {0x81, 0xa4, 'n', 'o', 't', 'e', 0xdb, 0xff, 0xff, 0xff, 0xff},
		"deep":           deep,
		"trailing":       {0x80, 0x00},
		"invalid code":   {0x81, 0xa4, 'n', 'o', 't', 'e', 0xc1},
		"not a map":      {0x92, 0x01, 0x02},
		"int key":        {0x81, 0x01, 0x02},
		"bad entity tag": {0x81, 0xa5, 'i', 't', 'e', 'm', 's', 0x91, 0x81, 0xa7, 'p', 'r', 'o', 'd', 'u', 'c', 't', 0x92, 0x07, 0xc0},
	}
	for name, data := range cases {
		err := p.Decode(ctx, data, newBasket(nil), NewTracker())
		if !errors.Is(err, ErrIncompatible) {
			t.Errorf("%s: err = %v, want ErrIncompatible", name, err)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	w := newWorld(t, true)
	p := basketPlan(t, w.reg)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				b := newBasket(nil)
				b.Items = []LineItem{{Product: w.product(t, "apple"), Qty: i*100 + j}}
				tr := NewTracker()
				data, err := p.Encode(ctx, b, tr)
				if err != nil {
					t.Error(err)
					return
				}
				got := newBasket(nil)
				if err := p.Decode(ctx, data, got, NewTracker()); err != nil || got.Items[0].Qty != i*100+j {
					t.Errorf("round trip: %v %+v", err, got.Items)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestAppendReusesBuffer(t *testing.T) {
	reg := NewRegistry()
	p, err := reg.Plan(reflect.TypeFor[*V1]())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 256)
	buf = append(buf, "prefix"...)
	out, err := p.Append(context.Background(), buf, &V1{A: 1}, nil)
	if err != nil || !bytes.HasPrefix(out, []byte("prefix")) || &out[0] != &buf[0] {
		t.Fatalf("Append did not append in place: %v", err)
	}
	if _, err := p.Encode(context.Background(), &V2{}, nil); err == nil {
		t.Fatal("plan accepted a value of another type")
	}
	if _, err := p.Encode(context.Background(), (*V1)(nil), nil); err == nil {
		t.Fatal("plan accepted nil")
	}
	if !slices.Equal(out[6:], must(p.Encode(context.Background(), &V1{A: 1}, nil))) {
		t.Fatal("Append and Encode differ")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
