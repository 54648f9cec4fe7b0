package msgpackcheck_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/fxsession/fxsession/internal/msgpackcheck"
	"github.com/vmihailenco/msgpack/v5"
)

type lineItem struct {
	Product []any `msgpack:"product"` // an entity reference: [kind, id]
	Qty     int   `msgpack:"qty"`
}

type basket struct {
	Items   []lineItem `msgpack:"items"`
	Updated time.Time  `msgpack:"updated"`
	Notes   string     `msgpack:"notes"`
}

func benchInputs(b *testing.B) map[string][]byte {
	enc := func(v any) []byte {
		out, err := msgpack.Marshal(v)
		if err != nil {
			b.Fatal(err)
		}
		return out
	}
	bk := basket{Updated: safeTime, Notes: "leave at the door"}
	for i := range 10 {
		bk.Items = append(bk.Items, lineItem{Product: []any{0, fmt.Sprintf("sku-%03d", i)}, Qty: i + 1})
	}
	return map[string][]byte{
		"value":        enc(map[string]any{"lang": "de", "n": 42, "seen": []string{"a", "b", "c"}}),
		"basket10":     enc(bk),
		"ints10k":      enc(make([]int, 10_000)),
		"blob64k":      enc(make([]byte, 64<<10)),
		"deep200":      deep(200),
		"riskyBasket":  enc(basket{Updated: riskyTime(0x85), Items: bk.Items}),
		"riskyTimes10": enc([]time.Time{riskyTime(0x80), riskyTime(0x81), riskyTime(0x82), riskyTime(0x83), riskyTime(0x84), riskyTime(0x85), riskyTime(0x86), riskyTime(0x87), riskyTime(0x88), riskyTime(0x89)}),
	}
}

func BenchmarkCheck(b *testing.B) {
	for _, name := range []string{"value", "basket10", "ints10k", "blob64k", "deep200"} {
		in := benchInputs(b)[name]
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				if err := msgpackcheck.Check(in, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPrepare(b *testing.B) {
	for _, name := range []string{"basket10", "riskyBasket", "riskyTimes10"} {
		in := benchInputs(b)[name]
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := msgpackcheck.Prepare(in, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUnmarshal is the decoding that Check precedes, for scale.
func BenchmarkUnmarshal(b *testing.B) {
	in := benchInputs(b)["basket10"]
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		var bk basket
		if err := msgpack.Unmarshal(in, &bk); err != nil {
			b.Fatal(err)
		}
	}
}
