package cachetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// BenchValueSize is the size of the values [Bench] reads and writes: about a
// small session's encoded objects.
const BenchValueSize = 512

// Bench runs the shared benchmarks against the backend opened by open:
//
//   - Get: one read of one of 1,000 present entries;
//   - Set: one write (value of [BenchValueSize] bytes, one tag, one-hour lifetime)
//     over one of 1,000 keys;
//   - GetMany100: one read of 100 present entries in one call.
//
// A backend's benchmark calls it: func BenchmarkStore(b *testing.B) { cachetest.Bench(b, open) }.
func Bench(b *testing.B, open OpenFunc) {
	const keys = 1000
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprintf("bench:%04d", i)
	}
	value := pattern(BenchValueSize, 3)
	fill := func(b *testing.B, be cache.Backend, n int) {
		b.Helper()
		var items []cache.Item
		for i := range n {
			items = append(items, cache.Item{Key: names[i], Value: value, Tags: []string{"bench"}, TTL: time.Hour})
		}
		if err := be.SetMany(b.Context(), items); err != nil {
			b.Fatal(err)
		}
	}

	b.Run("Get", func(b *testing.B) {
		be := open(b, Namespace("bg"))
		fill(b, be, keys)
		ctx := b.Context()
		b.ReportAllocs()
		b.SetBytes(BenchValueSize)
		i := 0
		for b.Loop() {
			if _, err := be.Get(ctx, names[i%keys]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("Set", func(b *testing.B) {
		be := open(b, Namespace("bs"))
		ctx := b.Context()
		b.ReportAllocs()
		b.SetBytes(BenchValueSize)
		i := 0
		for b.Loop() {
			if _, err := be.Set(ctx, cache.Item{Key: names[i%keys], Value: value, Tags: []string{"bench"}, TTL: time.Hour}); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("GetMany100", func(b *testing.B) {
		be := open(b, Namespace("bm"))
		fill(b, be, 100)
		ctx := b.Context()
		b.ReportAllocs()
		b.SetBytes(100 * BenchValueSize)
		for b.Loop() {
			es, err := be.GetMany(ctx, names[:100])
			if err != nil {
				b.Fatal(err)
			}
			if !es[99].Exists() {
				b.Fatal("GetMany100: entry missing")
			}
		}
	})
}
