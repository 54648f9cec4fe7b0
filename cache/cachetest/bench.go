package cachetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// BenchValueSize is the size of the field values [Bench] reads and writes: about a
// small session's encoded objects.
const BenchValueSize = 512

// BenchFields is the number of fields of the records [Bench] reads: a session with
// its metadata, a few values and objects.
const BenchFields = 8

// Bench runs the shared benchmarks against the store opened by open:
//
//   - Read: one read of a whole record of [BenchFields] fields (one of 1,000);
//   - ReadField: one read of one named field of such a record;
//   - Write: one unconditional write of one field of [BenchValueSize] bytes;
//   - WriteCAS: one conditional write of one field, against its current version;
//   - ReadMany100: one read of one field of 100 records in one call.
//
// A backend's benchmark calls it: func BenchmarkStore(b *testing.B) { cachetest.Bench(b, open) }.
func Bench(b *testing.B, open OpenFunc) {
	const records = 1000
	keys := make([]string, records)
	for i := range keys {
		keys[i] = fmt.Sprintf("bench:%04d", i)
	}
	value := pattern(BenchValueSize, 3)
	expires := time.Now().Add(time.Hour)
	fill := func(b *testing.B, st cache.Store, n int) {
		b.Helper()
		for i := range n {
			w := cache.Write{Create: true, Expires: expires, AddTags: []string{"bench"}}
			for f := range BenchFields {
				w.Fields = append(w.Fields, cache.Set(fmt.Sprintf("f%d", f), value))
			}
			if _, err := st.Write(b.Context(), keys[i], w); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("Read", func(b *testing.B) {
		st := open(b, Namespace("br"))
		fill(b, st, records)
		ctx := b.Context()
		b.ReportAllocs()
		b.SetBytes(BenchFields * BenchValueSize)
		i := 0
		for b.Loop() {
			if _, err := st.Read(ctx, keys[i%records]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("ReadField", func(b *testing.B) {
		st := open(b, Namespace("bf"))
		fill(b, st, records)
		ctx := b.Context()
		b.ReportAllocs()
		b.SetBytes(BenchValueSize)
		i := 0
		for b.Loop() {
			if _, err := st.Read(ctx, keys[i%records], "f3"); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("Write", func(b *testing.B) {
		st := open(b, Namespace("bw"))
		fill(b, st, records)
		ctx := b.Context()
		b.ReportAllocs()
		b.SetBytes(BenchValueSize)
		i := 0
		for b.Loop() {
			if _, err := st.Write(ctx, keys[i%records], cache.Write{Fields: []cache.FieldWrite{cache.Set("f1", value)}}); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("WriteCAS", func(b *testing.B) {
		st := open(b, Namespace("bc"))
		fill(b, st, 1)
		ctx := b.Context()
		r, err := st.Read(ctx, keys[0], "f1")
		if err != nil {
			b.Fatal(err)
		}
		f, _ := r.Field("f1")
		v := f.Version
		b.ReportAllocs()
		b.SetBytes(BenchValueSize)
		for b.Loop() {
			if v, err = st.Write(ctx, keys[0], cache.Write{Fields: []cache.FieldWrite{cache.SetIf("f1", value, v)}}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ReadMany100", func(b *testing.B) {
		st := open(b, Namespace("bm"))
		fill(b, st, 100)
		ctx := b.Context()
		b.ReportAllocs()
		b.SetBytes(100 * BenchValueSize)
		for b.Loop() {
			rs, err := st.ReadMany(ctx, keys[:100], "f0")
			if err != nil {
				b.Fatal(err)
			}
			if !rs[99].Exists() {
				b.Fatal("ReadMany100: record missing")
			}
		}
	})
}
