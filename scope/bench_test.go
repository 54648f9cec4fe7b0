package scope_test

import (
	"context"
	"fmt"
	"testing"

	"go.uber.org/dig"

	"github.com/fxsession/fxsession/scope"
)

// PlainItem and PlainBasket are a basket without entities, to see the decode
// cost without repository calls.
type PlainItem struct {
	SKU   string `msgpack:"sku"`
	Name  string `msgpack:"name"`
	Qty   int    `msgpack:"qty"`
	Price int64  `msgpack:"price"`
}

type PlainBasket struct {
	Items   []PlainItem `msgpack:"items" session:"autostart"`
	catalog *Catalog
}

func NewPlainBasket(c *Catalog) *PlainBasket { return &PlainBasket{catalog: c} }

var tenSKUs = []string{"tea", "mug", "pot", "cup", "jar", "lid", "box", "bag", "tin", "pan"}

// benchSession returns an env and the ID of a session holding a 10-item basket
// (entities by reference) and a 10-item plain basket.
func benchSession(b *testing.B) (*env, scope.Handle[*PlainBasket], string) {
	e := newEnv(b, newMemory(b), scope.Provide(NewPlainBasket))
	var plain scope.Handle[*PlainBasket]
	plain.Registrations = e.h.basket.Registrations
	ctx, s := e.mgr.NewContext(context.Background(), "")
	if err := s.Start(ctx); err != nil {
		b.Fatal(err)
	}
	basket, err := e.h.basket.Get(ctx)
	if err != nil {
		b.Fatal(err)
	}
	pb, _ := plain.Get(ctx)
	for i, sku := range tenSKUs {
		if err := basket.Add(ctx, sku, i+1); err != nil {
			b.Fatal(err)
		}
		pb.Items = append(pb.Items, PlainItem{SKU: sku, Name: "Product name of " + sku, Qty: i + 1, Price: int64(100 * i)})
	}
	if err := s.Commit(ctx); err != nil {
		b.Fatal(err)
	}
	id, _ := s.ID(ctx)
	return e, plain, id
}

// BenchmarkGetResolved: Get of an instance the request already resolved.
func BenchmarkGetResolved(b *testing.B) {
	e, _, id := benchSession(b)
	ctx, _ := e.mgr.NewContext(context.Background(), id)
	h := e.h.basket
	if _, err := h.Get(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.Get(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetFresh: a request without a session resolves a fresh instance
// (constructor call, autostart fingerprint).
func BenchmarkGetFresh(b *testing.B) {
	e, _, _ := benchSession(b)
	h := e.h.basket
	b.ReportAllocs()
	for b.Loop() {
		ctx, _ := e.mgr.NewContext(context.Background(), "")
		if _, err := h.Get(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDigChildScope: the same fresh resolution through a per-request dig
// child scope, the alternative scope replaces.
func BenchmarkDigChildScope(b *testing.B) {
	c := dig.New()
	catalog := NewCatalog()
	if err := c.Provide(func() *Catalog { return catalog }); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		req := c.Scope("request")
		if err := req.Provide(NewShoppingBasket); err != nil {
			b.Fatal(err)
		}
		if err := req.Invoke(func(*ShoppingBasket) {}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetDecode10: the first Get of a request on an existing session: the
// session resumes (metadata read), the basket entry is read and decoded, its 10
// product references are fetched in one FindMany.
func BenchmarkGetDecode10(b *testing.B) {
	e, _, id := benchSession(b)
	h := e.h.basket
	b.ReportAllocs()
	for b.Loop() {
		ctx, _ := e.mgr.NewContext(context.Background(), id)
		basket, err := h.Get(ctx)
		if err != nil || len(basket.Items) != 10 {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetDecodePlain10: the same with a 10-item basket without entities.
func BenchmarkGetDecodePlain10(b *testing.B) {
	e, plain, id := benchSession(b)
	b.ReportAllocs()
	for b.Loop() {
		ctx, _ := e.mgr.NewContext(context.Background(), id)
		basket, err := plain.Get(ctx)
		if err != nil || len(basket.Items) != 10 {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommit10: a request that loads the 10-item basket, changes one
// quantity and commits: encode, compare, stage, write (memory store).
func BenchmarkCommit10(b *testing.B) {
	e, _, id := benchSession(b)
	h := e.h.basket
	b.ReportAllocs()
	for b.Loop() {
		ctx, s := e.mgr.NewContext(context.Background(), id)
		basket, err := h.Get(ctx)
		if err != nil {
			b.Fatal(err)
		}
		basket.Items[0].Qty++
		if err := s.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommitUnchanged10: the same request changing nothing: the commit
// encodes and compares, and writes nothing.
func BenchmarkCommitUnchanged10(b *testing.B) {
	e, _, id := benchSession(b)
	h := e.h.basket
	b.ReportAllocs()
	for b.Loop() {
		ctx, s := e.mgr.NewContext(context.Background(), id)
		if _, err := h.Get(ctx); err != nil {
			b.Fatal(err)
		}
		if err := s.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpdate10: an atomic Update of the 10-item basket.
func BenchmarkUpdate10(b *testing.B) {
	e, _, id := benchSession(b)
	h := e.h.basket
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ctx, _ := e.mgr.NewContext(context.Background(), id)
		i++
		err := h.Update(ctx, func(basket *ShoppingBasket) error { basket.Items[i%10].Qty++; return nil })
		if err != nil {
			b.Fatal(err)
		}
	}
	_ = fmt.Sprint(i)
}
