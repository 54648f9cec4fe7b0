package plain

import (
	"math"
	"reflect"
	"testing"
	"time"
	"unsafe"
)

type eqInner struct {
	A  [2]string
	On bool
}

type eqValue struct {
	ID    string
	Price int64
	Small int8 // padding follows
	Rate  float64
	At    time.Time
	In    eqInner
	Dims  [3]float32
}

func equalOf[T any](t *testing.T, refuse func(reflect.Type) bool) func(a, b *T) bool {
	t.Helper()
	eq := Equal(reflect.TypeFor[T](), refuse)
	if eq == nil {
		t.Fatalf("Equal(%v) = nil", reflect.TypeFor[T]())
	}
	return func(a, b *T) bool { return eq(unsafe.Pointer(a), unsafe.Pointer(b)) }
}

func TestEqual(t *testing.T) {
	eq := equalOf[eqValue](t, nil)
	at := time.Date(2026, 11, 30, 12, 0, 0, 5, time.UTC)
	base := eqValue{ID: "tea", Price: 890, Small: 3, Rate: 1.5, At: at, In: eqInner{A: [2]string{"a", "b"}, On: true}, Dims: [3]float32{1, 2, 3}}
	same := base
	same.ID = string([]byte("tea")) // equal content, other memory
	if !eq(&base, &same) {
		t.Error("equal values reported different")
	}
	for name, change := range map[string]func(*eqValue){
		"string":        func(v *eqValue) { v.ID = "teb" },
		"int":           func(v *eqValue) { v.Price++ },
		"int8":          func(v *eqValue) { v.Small = -3 },
		"time instant":  func(v *eqValue) { v.At = v.At.Add(time.Nanosecond) },
		"time location": func(v *eqValue) { v.At = v.At.In(time.FixedZone("X", 0)) },
		"nested string": func(v *eqValue) { v.In.A[1] = "c" },
		"nested bool":   func(v *eqValue) { v.In.On = false },
		"array":         func(v *eqValue) { v.Dims[2] = 4 },
	} {
		c := base
		change(&c)
		if eq(&base, &c) {
			t.Errorf("%s changed: reported equal", name)
		}
	}
	pz, nz := base, base
	pz.Rate, nz.Rate = 0, math.Copysign(0, -1)
	if eq(&pz, &nz) {
		t.Error("+0 and -0 reported equal")
	}
	nan := math.NaN()
	a, b := base, base
	a.Rate, b.Rate = nan, nan
	if !eq(&a, &b) {
		t.Error("the same NaN reported different")
	}
}

func TestEqualRefuses(t *testing.T) {
	if Equal(reflect.TypeFor[struct{ M map[string]int }](), nil) != nil {
		t.Error("a map: want nil")
	}
	if Equal(reflect.TypeFor[struct{ P *int }](), nil) != nil {
		t.Error("a pointer: want nil")
	}
	refuseInner := func(t reflect.Type) bool { return t == reflect.TypeFor[eqInner]() }
	if Equal(reflect.TypeFor[eqValue](), refuseInner) != nil {
		t.Error("a refused nested type: want nil")
	}
	refuseAll := func(reflect.Type) bool { return true }
	if Equal(reflect.TypeFor[time.Time](), refuseAll) == nil {
		t.Error("time.Time is compared whole, never refused")
	}
}

func TestEqualLayout(t *testing.T) {
	var l layout
	l.add(reflect.TypeFor[struct {
		A, B int32
		C    int8
		D    int64
		S    string
		E    [2]uint16
	}](), 0, nil)
	want := []span{{0, 9}, {16, 8}, {40, 4}}
	if !reflect.DeepEqual(l.raws, want) || !reflect.DeepEqual(l.strs, []uintptr{24}) {
		t.Errorf("layout = %v %v, want %v [24]", l.raws, l.strs, want)
	}
}

func BenchmarkEqual(b *testing.B) {
	type product struct {
		SKU, Name  string
		PriceCents int64
	}
	eq := Equal(reflect.TypeFor[product](), nil)
	p, q := product{"tea-sencha", "Sencha", 890}, product{"tea-sencha", "Sencha", 890}
	for b.Loop() {
		if !eq(unsafe.Pointer(&p), unsafe.Pointer(&q)) {
			b.Fatal("not equal")
		}
	}
}
