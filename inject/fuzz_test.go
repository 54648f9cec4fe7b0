package inject

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
)

// FuzzObject is the fuzzed object: every kind of node the plans walk.
type FuzzObject struct {
	Items   []LineItem          `msgpack:"items"`
	Shelf   Shelf               `msgpack:"shelf"`
	Pet     Animal              `msgpack:"pet"`
	Pets    map[string]Animal   `msgpack:"pets"`
	Tree    *TreeNode           `msgpack:"tree"`
	Loose   any                 `msgpack:"loose"`
	When    time.Time           `msgpack:"when"`
	Matrix  [3][2]int           `msgpack:"matrix"`
	Nested  map[int][]*Supplier `msgpack:"nested"`
	Bytes   []byte              `msgpack:"bytes"`
	Pointer **int               `msgpack:"pointer"`
}

func fuzzPlan(t testing.TB) (*world, *Plan) {
	w := newWorld(t, true)
	if err := w.reg.AddImplementations(reflect.TypeFor[Animal](), reflect.TypeFor[*Dog](), reflect.TypeFor[Cat]()); err != nil {
		t.Fatal(err)
	}
	if err := w.reg.AddImplementations(reflect.TypeFor[Featured](), reflect.TypeFor[Banner](), reflect.TypeFor[*Product]()); err != nil {
		t.Fatal(err)
	}
	p, err := w.reg.Plan(reflect.TypeFor[*FuzzObject]())
	if err != nil {
		t.Fatal(err)
	}
	return w, p
}

// FuzzDecode feeds arbitrary bytes to a plan's decoder: it must never panic, and
// whatever it accepts must encode and decode again.
func FuzzDecode(f *testing.F) {
	w, p := fuzzPlan(f)
	ctx := context.Background()
	one := 1
	pone := &one
	seed := &FuzzObject{
		Items:   []LineItem{{Product: w.product(f, "apple"), Qty: 1}, {Product: &Product{SKU: "new", Name: "NEW"}, Qty: 2}},
		Pet:     &Dog{Name: "rex"},
		Pets:    map[string]Animal{"c": Cat{Lives: 3}, "d": &Dog{Name: "d"}},
		Tree:    &TreeNode{Value: 1, Children: []*TreeNode{{Value: 2}}},
		Loose:   []any{"x", 1.5, map[string]any{"k": true}},
		When:    time.Unix(1700000000, 5).UTC(),
		Matrix:  [3][2]int{{1, 2}, {3, 4}, {5, 6}},
		Nested:  map[int][]*Supplier{1: {{ID: "acme", Name: "ACME Corp"}, nil}},
		Bytes:   []byte("raw"),
		Pointer: &pone,
	}
	seed.Shelf.List = []*Product{w.product(f, "pear"), &Product{SKU: "gone", Name: "GONE"}}
	seed.Shelf.Featured = Banner{"b"}
	for _, tr := range []*Tracker{nil, NewTracker()} {
		data, err := p.Encode(ctx, seed, tr)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte{0x80})
	f.Add([]byte{0x81, 0xa5, 'i', 't', 'e', 'm', 's', 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		obj := &FuzzObject{}
		err := p.Decode(ctx, data, obj, NewTracker())
		if err != nil {
			if !errors.Is(err, ErrIncompatible) {
				t.Fatalf("decode error does not match ErrIncompatible: %v", err)
			}
			return
		}
		out, err := p.Encode(ctx, obj, NewTracker())
		if err != nil {
			t.Fatalf("accepted input does not encode again: %v", err)
		}
		if err := p.Decode(ctx, out, &FuzzObject{}, NewTracker()); err != nil {
			t.Fatalf("re-encoded input does not decode: %v", err)
		}
	})
}
