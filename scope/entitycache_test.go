package scope_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/fxsession/fxsession/inject"
	"github.com/fxsession/fxsession/scope"
	"github.com/fxsession/fxsession/session"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestEntityCacheBasketLoads: with the catalog behind an inject.Cache, N loads
// of a basket in N requests ask the catalog nothing after the first within the
// TTL; an invalidation and the TTL's expiry make the next load ask again.
func TestEntityCacheBasketLoads(t *testing.T) {
	catalog := NewCatalog()
	clk := &fakeClock{now: time.Unix(1_000_000, 0)}
	products := inject.NewCache[*Product](catalog, inject.CacheOptions{TTL: time.Minute, Now: clk.Now})
	var (
		mgr    *session.Manager
		basket scope.Handle[*ShoppingBasket]
	)
	app := fxtest.New(t,
		memorySessions(t),
		fx.Supply(catalog),
		scope.Entities(products),
		scope.Provide(NewShoppingBasket),
		fx.Populate(&mgr),
		fx.Invoke(func(h scope.Handle[*ShoppingBasket]) { basket = h }),
	)
	app.RequireStart()
	t.Cleanup(app.RequireStop)

	// A visitor's basket of ten products, stored as references.
	ctx, s := mgr.NewContext(context.Background(), "")
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := basket.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, sku := range tenSKUs {
		if err := b.Add(ctx, sku, i+1); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	id, _ := s.ID(ctx)

	load := func() *ShoppingBasket {
		t.Helper()
		ctx, s := mgr.NewContext(context.Background(), id)
		b, err := basket.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Items) != 10 || b.Items[3].Product == nil || b.Items[3].Product.SKU != tenSKUs[3] {
			t.Fatalf("loaded basket %+v", b.Items)
		}
		if err := s.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		return b
	}
	asked := catalog.batches.Load() // the commit compared the new products with the catalog, through the cache
	const loads = 50
	for range loads {
		load()
	}
	if n := catalog.batches.Load() - asked; n != 0 {
		t.Fatalf("%d basket loads within the TTL asked the catalog %d times", loads, n)
	}
	if st := products.Stats(); st.Misses != 10 {
		t.Fatalf("cache stats %+v: want the 10 products fetched once", st)
	}

	// An invalidated product is fetched at the next load (alone), and the
	// load shows the catalog's current version.
	catalog.mu.Lock()
	p := catalog.products["pot"]
	p.Name = "Renamed pot"
	catalog.products["pot"] = p
	catalog.mu.Unlock()
	if load().Items[2].Product.Name == "Renamed pot" {
		t.Fatal("the cache asked the catalog within the TTL")
	}
	products.Invalidate("pot")
	if got := load().Items[2].Product.Name; got != "Renamed pot" {
		t.Fatalf("after the invalidation: %q", got)
	}
	if n := catalog.batches.Load() - asked; n != 1 {
		t.Fatalf("the invalidation cost %d catalog calls, want 1", n)
	}
	load()

	// After the TTL, the next load fetches the products again, in one call.
	clk.add(time.Minute)
	load()
	load()
	if n := catalog.batches.Load() - asked; n != 2 {
		t.Fatalf("after the TTL: %d catalog calls in all, want 2", n)
	}
}
