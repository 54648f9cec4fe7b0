package inject

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"
)

type PlainItem struct {
	SKU   string `msgpack:"sku"`
	Name  string `msgpack:"name"`
	Qty   int    `msgpack:"qty"`
	Price int    `msgpack:"price"`
}

type PlainBasket struct {
	Items []PlainItem `msgpack:"items" session:"autostart"`
}

func plainBasket() *PlainBasket {
	b := &PlainBasket{}
	for i := range 10 {
		b.Items = append(b.Items, PlainItem{SKU: fmt.Sprint("sku-", i), Name: fmt.Sprint("Product number ", i), Qty: i + 1, Price: 100 * i})
	}
	return b
}

func BenchmarkEncodePlainBasket10(b *testing.B) {
	p, err := NewRegistry().Plan(reflect.TypeFor[*PlainBasket]())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	basket := plainBasket()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf, err = p.Append(ctx, buf[:0], basket, nil)
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodePlainBasket10(b *testing.B) {
	p, err := NewRegistry().Plan(reflect.TypeFor[*PlainBasket]())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	data, _ := p.Encode(ctx, plainBasket(), nil)
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Decode(ctx, data, &PlainBasket{}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func entityBasket(b *testing.B) (*world, *Plan, *Basket) {
	w := newWorld(b, true)
	for i := range 10 {
		sku := fmt.Sprint("sku-", i)
		w.products.put(sku, func() *Product { return &Product{SKU: sku, Name: "Product " + sku, Price: i} })
	}
	basket := newBasket(nil)
	for i := range 10 {
		basket.Items = append(basket.Items, LineItem{Product: w.product(b, fmt.Sprint("sku-", i)), Qty: i + 1})
	}
	return w, basketPlan(b, w.reg), basket
}

// BenchmarkEncodeEntityBasket10: 10 line items, each referencing an unchanged
// product (the tracker knows them): the steady state of a commit.
func BenchmarkEncodeEntityBasket10(b *testing.B) {
	_, p, basket := entityBasket(b)
	ctx := context.Background()
	tr := NewTracker()
	buf, err := p.Encode(ctx, basket, tr)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if buf, err = p.Append(ctx, buf[:0], basket, tr); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeEntityBasket10: decoding fetches the 10 products in one FindMany.
func BenchmarkDecodeEntityBasket10(b *testing.B) {
	_, p, basket := entityBasket(b)
	ctx := context.Background()
	data, err := p.Encode(ctx, basket, NewTracker())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Decode(ctx, data, newBasket(nil), NewTracker()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeChangedUnchanged: the commit of an object a request read and
// did not change (compared with its stored bytes).
func BenchmarkEncodeChangedUnchanged(b *testing.B) {
	p, err := NewRegistry().Plan(reflect.TypeFor[*PlainBasket]())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	basket := plainBasket()
	baseline, _ := p.Encode(ctx, basket, nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, changed, err := p.EncodeChanged(ctx, basket, nil, baseline); err != nil || changed {
			b.Fatal(changed, err)
		}
	}
}

// BenchmarkDecodeEntityBasket10Cached: the same with the repository behind an
// entity cache: the products come from the cache.
func BenchmarkDecodeEntityBasket10Cached(b *testing.B) {
	w := newWorld(b, true)
	for i := range 10 {
		sku := fmt.Sprint("sku-", i)
		w.products.put(sku, func() *Product { return &Product{SKU: sku, Name: "Product " + sku, Price: i} })
	}
	reg := NewRegistry()
	products := NewCache[*Product](batchRepo[*Product]{w.products}, CacheOptions{})
	if _, err := reg.AddRepository(products); err != nil {
		b.Fatal(err)
	}
	if _, err := reg.AddRepository(batchRepo[*Supplier]{w.suppliers}); err != nil {
		b.Fatal(err)
	}
	p := basketPlan(b, reg)
	basket := newBasket(nil)
	for i := range 10 {
		basket.Items = append(basket.Items, LineItem{Product: w.product(b, fmt.Sprint("sku-", i)), Qty: i + 1})
	}
	ctx := context.Background()
	data, err := p.Encode(ctx, basket, NewTracker())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Decode(ctx, data, newBasket(nil), NewTracker()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeCachedValues10: the commit of 10 unchanged entities holding
// only values, loaded through an entity cache: each is compared with the cached
// value its snapshot was made from, not encoded (compare
// BenchmarkEncodeEntityBasket10, whose products hold a pointer).
func BenchmarkEncodeCachedValues10(b *testing.B) {
	repo := newRepo[*valueEnt]()
	ids := make([]string, 10)
	for i := range ids {
		id := fmt.Sprint("sku-", i)
		ids[i] = id
		repo.put(id, func() *valueEnt { return &valueEnt{ID: id, Price: i, At: time.Unix(int64(i), 0)} })
	}
	c := NewCache[*valueEnt](repo, CacheOptions{})
	reg := NewRegistry()
	if _, err := reg.AddRepository(c); err != nil {
		b.Fatal(err)
	}
	p, err := reg.Plan(reflect.TypeFor[*valueList]())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	found, err := c.FindMany(ctx, ids)
	if err != nil {
		b.Fatal(err)
	}
	var list valueList
	for _, id := range ids {
		list.Items = append(list.Items, found[id])
	}
	data, err := p.Encode(ctx, &list, NewTracker())
	if err != nil {
		b.Fatal(err)
	}
	loaded, tr := &valueList{}, NewTracker()
	if err := p.Decode(ctx, data, loaded, tr); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, changed, err := p.EncodeChanged(ctx, loaded, tr, data); err != nil || changed {
			b.Fatal(changed, err)
		}
	}
}

type valueList struct {
	Items []*valueEnt `msgpack:"items"`
}
