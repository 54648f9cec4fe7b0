package scope_test

import (
	"context"
	"strings"
	"testing"

	"github.com/fxsession/fxsession/cache"
)

// FuzzLoad stores arbitrary bytes as a session's basket and loads it: Get must
// never fail or panic because of what is stored (what does not decode loads as a
// fresh instance), and the request's commit must work.
func FuzzLoad(f *testing.F) {
	e := newEnv(f, newMemory(f))
	ctx, s := e.mgr.NewContext(context.Background(), "")
	if err := s.Start(ctx); err != nil {
		f.Fatal(err)
	}
	b, err := e.h.basket.Get(ctx)
	if err != nil {
		f.Fatal(err)
	}
	for _, sku := range []string{"tea", "mug"} {
		if err := b.Add(ctx, sku, 2); err != nil {
			f.Fatal(err)
		}
	}
	b.Items = append(b.Items, LineItem{Product: &Product{SKU: "new", Name: "whole"}, Qty: 1})
	if err := s.Commit(ctx); err != nil {
		f.Fatal(err)
	}
	id, _ := s.ID(ctx)
	entries := e.stored("scope:ShoppingBasket.")
	if len(entries) != 1 {
		f.Fatalf("%d stored baskets", len(entries))
	}
	stored := entries[0]
	data := e.sessions()
	f.Add(stored.Value)
	f.Add([]byte{0x81, 0xa5, 'i', 't', 'e', 'm', 's', 0xa3, 'x', 'y', 'z'})
	f.Add([]byte{0x81, 0xa5, 'i', 't', 'e', 'm', 's', 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, value []byte) {
		if len(value) == 0 {
			return // the store refuses nothing of it, but an empty value is no object
		}
		e.logs.Reset() // warnings about the undecodable bytes pile up otherwise
		bg := context.Background()
		if _, err := data.Write(bg, stored.Ref, cache.Write{Fields: []cache.FieldWrite{cache.Set(stored.Name, value)}}); err != nil {
			t.Fatal(err)
		}
		ctx, s := e.mgr.NewContext(bg, id)
		b, err := e.h.basket.Get(ctx)
		if err != nil {
			t.Fatalf("Get failed on stored bytes %q: %v", value, err)
		}
		if b.catalog != e.catalog {
			t.Fatal("dependency not re-injected")
		}
		if err := s.Commit(ctx); err != nil && !strings.Contains(err.Error(), "too large") {
			t.Fatalf("commit: %v", err)
		}
	})
}
