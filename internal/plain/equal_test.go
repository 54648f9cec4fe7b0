package plain

import (
	"bytes"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
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

// FuzzEqual: Equal agrees with a field-by-field comparison by reflection
// (numbers bit for bit), and values it reports equal have the same msgpack
// encoding. a is made from the fuzzer's values; b is a copy of a, changed in
// the field that which selects (or in none).
func FuzzEqual(f *testing.F) {
	f.Add("tea", "a", int64(890), int8(3), uint64(0x3ff8000000000000), int64(5), int64(0), false, uint8(0), "b")
	f.Add("tea", "a", int64(890), int8(3), uint64(0x8000000000000000), int64(5), int64(1), true, uint8(4), "")
	f.Add("", "", int64(-1), int8(-128), uint64(0x7ff8000000000001), int64(-62135596800), int64(999999999), true, uint8(9), "x")
	eq := Equal(reflect.TypeFor[eqValue](), nil)
	f.Fuzz(func(t *testing.T, id, s string, price int64, small int8, rate uint64, sec, nsec int64, on bool, which uint8, other string) {
		a := eqValue{ID: id, Price: price, Small: small, Rate: math.Float64frombits(rate),
			At: time.Unix(sec, nsec%1e9).UTC(), In: eqInner{A: [2]string{s, other}, On: on}, Dims: [3]float32{float32(price), 0, 1}}
		b := a
		b.ID = strings.Clone(a.ID)
		switch which % 10 {
		case 1:
			b.ID = other
		case 2:
			b.Price ^= int64(which)
		case 3:
			b.Small = int8(which)
		case 4:
			b.Rate = -b.Rate
		case 5:
			b.At = b.At.Add(time.Duration(which))
		case 6:
			b.In.A[1] = id
		case 7:
			b.In.On = !b.In.On
		case 8:
			b.Dims[1] = float32(math.Copysign(0, -1))
		case 9:
			b.At = b.At.Local()
		}
		got := eq(unsafe.Pointer(&a), unsafe.Pointer(&b))
		if want := identical(reflect.ValueOf(a), reflect.ValueOf(b)); got != want {
			t.Fatalf("Equal = %v, field by field %v:\n%+v\n%+v", got, want, a, b)
		}
		if got {
			ea, err1 := msgpack.Marshal(&a)
			eb, err2 := msgpack.Marshal(&b)
			if err1 != nil || err2 != nil || !bytes.Equal(ea, eb) {
				t.Fatalf("equal values encode differently (%v, %v):\n%x\n%x", err1, err2, ea, eb)
			}
		}
	})
}

// identical is Equal's meaning, by reflection: numbers bit for bit, strings by
// content, times in all their parts.
func identical(a, b reflect.Value) bool {
	switch {
	case a.Type() == timeType:
		return a.Interface() == b.Interface()
	case a.Kind() == reflect.Struct:
		for i := range a.NumField() {
			if !identical(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case a.Kind() == reflect.Array:
		for i := range a.Len() {
			if !identical(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case a.Kind() == reflect.Float32:
		return math.Float32bits(float32(a.Float())) == math.Float32bits(float32(b.Float()))
	case a.Kind() == reflect.Float64:
		return math.Float64bits(a.Float()) == math.Float64bits(b.Float())
	}
	return a.Interface() == b.Interface()
}
