package inject_test

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/fxsession/fxsession/inject"
)

type Catalog struct{ Secret string }

// ShoppingBasket is session state: Items is stored; the catalog, a dependency the
// constructor receives, never is.
type ShoppingBasket struct {
	Items   []string `msgpack:"items" session:"autostart"`
	Notes   []string `session:"-"` // transient
	catalog *Catalog
}

func NewShoppingBasket(c *Catalog) *ShoppingBasket { return &ShoppingBasket{catalog: c} }

func Example() {
	ctx := context.Background()
	reg := inject.NewRegistry()
	plan, err := reg.Plan(reflect.TypeFor[*ShoppingBasket](), inject.Dependencies(reflect.TypeFor[*Catalog]()))
	if err != nil {
		panic(err)
	}
	for _, f := range plan.Fields() {
		fmt.Printf("%-7s %s autostart=%v\n", f.Name, f.Kind, f.Autostart)
	}

	catalog := &Catalog{Secret: "wholesale prices"}
	b := NewShoppingBasket(catalog)
	b.Items = append(b.Items, "apple")
	b.Notes = append(b.Notes, "scratch")
	data, err := plan.Encode(ctx, b, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println("stored bytes mention the catalog:", bytes.Contains(data, []byte("wholesale")))

	// Loading starts from the constructor, so dependencies are the live ones.
	loaded := NewShoppingBasket(catalog)
	if err := plan.Decode(ctx, data, loaded, nil); err != nil {
		panic(err)
	}
	fmt.Println(loaded.Items, loaded.Notes, loaded.catalog == catalog)
	// Output:
	// Items   state autostart=true
	// Notes   transient autostart=false
	// catalog unexported autostart=false
	// stored bytes mention the catalog: false
	// [apple] [] true
}

type Product struct {
	SKU, Name string
}

func (p *Product) EntityID() string { return p.SKU }

type ProductRepository struct{ rows map[string]Product }

func (r *ProductRepository) Find(_ context.Context, sku string) (*Product, error) {
	p, ok := r.rows[sku]
	if !ok {
		return nil, inject.ErrEntityNotFound
	}
	return &p, nil
}

type Wishlist struct {
	Products []*Product `msgpack:"products"`
}

func ExampleRegistry_AddRepository() {
	ctx := context.Background()
	repo := &ProductRepository{rows: map[string]Product{"apple": {"apple", "Apple"}, "pear": {"pear", "Pear"}}}
	reg := inject.NewRegistry()
	if _, err := reg.AddRepository(repo); err != nil {
		panic(err)
	}
	plan, err := reg.Plan(reflect.TypeFor[*Wishlist]())
	if err != nil {
		panic(err)
	}
	apple, _ := repo.Find(ctx, "apple")
	pear, _ := repo.Find(ctx, "pear")
	pear.Name = "Pear (gift wrapped)" // modified in the session
	data, _ := plan.Encode(ctx, &Wishlist{Products: []*Product{apple, pear}}, inject.NewTracker())
	fmt.Println("apple stored whole:", bytes.Contains(data, []byte("Apple")))
	fmt.Println("pear stored whole:", bytes.Contains(data, []byte("gift wrapped")))

	var w Wishlist
	_ = plan.Decode(ctx, data, &w, inject.NewTracker())
	fmt.Println(w.Products[0].Name, "/", w.Products[1].Name)
	// Output:
	// apple stored whole: false
	// pear stored whole: true
	// Apple / Pear (gift wrapped)
}

// products is a repository of Product that counts its queries.
type products struct{ queries int }

func (r *products) FindMany(_ context.Context, skus []string) (map[string]*Product, error) {
	r.queries++
	out := map[string]*Product{}
	for _, s := range skus {
		out[s] = &Product{SKU: s, Name: "Product " + s}
	}
	return out, nil
}

func (r *products) Find(ctx context.Context, sku string) (*Product, error) {
	found, err := r.FindMany(ctx, []string{sku})
	return found[sku], err
}

// An entity cache in front of a repository: the second FindMany is served from
// memory, copies are handed out, and Invalidate makes the next one ask again.
func ExampleNewCache() {
	ctx := context.Background()
	repo := &products{}
	cache := inject.NewCache[*Product](repo, inject.CacheOptions{Size: 1000, TTL: time.Minute})

	first, _ := cache.FindMany(ctx, []string{"tea", "mug"})
	first["tea"].Name = "changed" // a copy: the cache keeps its own
	again, _ := cache.FindMany(ctx, []string{"tea", "mug"})
	fmt.Println(again["tea"].Name, "- queries:", repo.queries)

	cache.Invalidate("tea")
	_, _ = cache.Find(ctx, "tea")
	fmt.Println("queries:", repo.queries, "stats:", cache.Stats())
	// Output:
	// Product tea - queries: 1
	// queries: 2 stats: {2 3}
}
