package inject

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/fxsession/fxsession/internal/msgpackcheck"
)

// ---- shapes msgpack decodes exactly as the compiled codecs do ----

type Level string

type Coord struct {
	Lat float64 `msgpack:"lat"`
	Lng float64 `msgpack:"lng"`
}

type Address struct {
	Street string   `msgpack:"street"`
	Zip    uint32   `msgpack:"zip,omitempty"`
	Where  *Coord   `msgpack:"where"`
	Lines  []string `msgpack:"lines,omitempty"`
}

// Plain is the fuzzed object compared with msgpack's own decoding: no entities,
// interfaces, dependencies or transient fields, so that inject's field model
// and msgpack's agree.
type Plain struct {
	S      string             `msgpack:"s"`
	I      int                `msgpack:"i"`
	I8     int8               `msgpack:"i8"`
	I16    int16              `msgpack:"i16"`
	I32    int32              `msgpack:"i32"`
	I64    int64              `msgpack:"i64"`
	U      uint               `msgpack:"u"`
	U8     uint8              `msgpack:"u8"`
	U16    uint16             `msgpack:"u16"`
	U32    uint32             `msgpack:"u32"`
	U64    uint64             `msgpack:"u64"`
	F32    float32            `msgpack:"f32"`
	F64    float64            `msgpack:"f64"`
	B      bool               `msgpack:"b"`
	T      time.Time          `msgpack:"t"`
	Lvl    Level              `msgpack:"lvl"`
	Home   Address            `msgpack:"home"`
	Work   *Address           `msgpack:"work"`
	Deep   **int              `msgpack:"deep"`
	Addrs  []Address          `msgpack:"addrs"`
	Ptrs   []*Coord           `msgpack:"ptrs"`
	Grid   [2][3]int16        `msgpack:"grid"`
	Tags   []string           `msgpack:"tags"`
	Items  []PlainItem        `msgpack:"items"` // inline leaves only: the flat slice codec
	ByName map[string]Address `msgpack:"by_name"`
	Counts map[string]int     `msgpack:"counts"`
	ByNum  map[int]string     `msgpack:"by_num"`
	Times  []time.Time        `msgpack:"times"`
	Loose  any                `msgpack:"loose"`
	Raw    []byte             `msgpack:"raw"`
	Note   string             `msgpack:"note,omitempty"`
	Hidden string             `msgpack:"-"`
}

func plainPlan(t testing.TB) *Plan {
	t.Helper()
	p, err := NewRegistry().Plan(reflect.TypeFor[*Plain]())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func plainSample() *Plain {
	seven := 7
	pseven := &seven
	return &Plain{
		S: "hello, world", I: -123456, I8: -5, I16: 300, I32: -70000, I64: math.MinInt64,
		U: 42, U8: 255, U16: 65535, U32: 1 << 31, U64: math.MaxUint64,
		F32: 1.5, F64: math.Copysign(0, -1), B: true,
		T:      time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC),
		Lvl:    "gold",
		Home:   Address{Street: "Main St", Zip: 12345, Where: &Coord{1.25, -2.5}, Lines: []string{"a", "b"}},
		Work:   &Address{Street: strings.Repeat("long street ", 10)},
		Deep:   &pseven,
		Addrs:  []Address{{Street: "x"}, {Street: "y", Zip: 1}},
		Ptrs:   []*Coord{{1, 2}, nil, {3, 4}},
		Grid:   [2][3]int16{{1, 2, 3}, {-4, -5, -6}},
		Tags:   []string{},
		Items:  []PlainItem{{SKU: "a", Name: "A", Qty: 1, Price: -1}, {}, {SKU: strings.Repeat("s", 40), Qty: 1 << 40}},
		ByName: map[string]Address{"b": {Street: "B"}, "aa": {Street: "AA"}, "": {}},
		Counts: map[string]int{"x": 1, "y": -1000, "zzz": 1 << 40},
		ByNum:  map[int]string{3: "three", -1: "minus one", 1000: "k"},
		Times:  []time.Time{time.Unix(0, 0).UTC(), time.Unix(1<<35, 999999999).UTC(), time.Unix(-1, 5).UTC(), {}},
		Loose:  map[string]any{"k": []any{"v", int8(1), true, nil}},
		Raw:    []byte{0, 1, 2, 0xc1},
	}
}

// ---- the compiled codecs against the walker they replace ----

type Embedded struct {
	E1 string `msgpack:"e1"`
	E2 int
}

type Stamp struct{ V int }

func (s Stamp) MarshalMsgpack() ([]byte, error) { return msgpack.Marshal(s.V) }
func (s *Stamp) UnmarshalMsgpack(b []byte) error {
	return msgpack.Unmarshal(b, &s.V)
}

type OmitAll struct {
	Embedded
	S     string             `msgpack:"s,omitempty"`
	F     float64            `msgpack:"f,omitempty"`
	L     []int              `msgpack:"l,omitempty"`
	M     map[string]int     `msgpack:"m,omitempty"`
	P     *int               `msgpack:"p,omitempty"`
	T     time.Time          `msgpack:"t,omitempty"`
	N     Address            `msgpack:"n,omitempty"`
	St    Stamp              `msgpack:"st"`
	Inner struct{ A, B int } `msgpack:"inner"`
	Alias struct {
		X int `msgpack:"x,alias:y"`
	} `msgpack:"alias"`
	Emb struct {
		Embedded
		Z int
	} `msgpack:"emb"`
	Skipped struct {
		Kept int
		Gone int `session:"-"`
	} `msgpack:"skipped"`
}

func omitSamples() []*OmitAll {
	zero := 0
	a := &OmitAll{Embedded: Embedded{"e", 2}, S: "s", F: math.Copysign(0, -1), L: []int{}, M: map[string]int{}, P: &zero, St: Stamp{9}}
	a.Inner.A = 1
	a.Alias.X = 3
	a.Emb.E1, a.Emb.Z = "in", 4
	a.Skipped.Kept, a.Skipped.Gone = 5, 6
	b := &OmitAll{N: Address{Street: "n"}, T: time.Unix(5, 0)}
	return []*OmitAll{a, b, {}}
}

func TestCompiledMatchesLegacy(t *testing.T) {
	ctx := context.Background()
	w, fp := fuzzPlan(t)
	reg := NewRegistry()
	pp, err := reg.Plan(reflect.TypeFor[*Plain]())
	if err != nil {
		t.Fatal(err)
	}
	op, err := reg.Plan(reflect.TypeFor[*OmitAll]())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		p     *Plan
		obj   any
		fresh func() any
	}{
		{pp, plainSample(), func() any { return &Plain{} }},
		{pp, &Plain{}, func() any { return &Plain{} }},
		{fp, fuzzSeed(t, w), func() any { return &FuzzObject{} }},
		{fp, &FuzzObject{}, func() any { return &FuzzObject{} }},
	}
	for _, o := range omitSamples() {
		cases = append(cases, struct {
			p     *Plan
			obj   any
			fresh func() any
		}{op, o, func() any { return &OmitAll{} }})
	}
	for i, c := range cases {
		want, err := legacyAppend(c.p, nil, c.obj, nil)
		if err != nil {
			t.Fatalf("case %d: legacy encode: %v", i, err)
		}
		got, err := c.p.Append(ctx, nil, c.obj, nil)
		if err != nil {
			t.Fatalf("case %d: encode: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("case %d (%T): compiled encoding differs from the walker's:\n got %x\nwant %x", i, c.obj, got, want)
		}
		a, b := c.fresh(), c.fresh()
		errA := legacyDecode(ctx, c.p, want, a, NewTracker())
		errB := c.p.Decode(ctx, want, b, NewTracker())
		if errA != nil || errB != nil {
			t.Fatalf("case %d: decode: legacy %v, compiled %v", i, errA, errB)
		}
		if !sameState(t, c.p, a, b) {
			t.Fatalf("case %d: decoded differently:\nlegacy   %+v\ncompiled %+v", i, a, b)
		}
	}
}

// sameState compares two objects of p's type through their encodings
// (entities whole), which also treats NaNs and time zones alike.
func sameState(t testing.TB, p *Plan, a, b any) bool {
	t.Helper()
	ea, err := p.Append(context.Background(), nil, a, nil)
	if err != nil {
		t.Fatal(err)
	}
	eb, err := p.Append(context.Background(), nil, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ea, eb)
}

func fuzzSeed(t testing.TB, w *world) *FuzzObject {
	one := 1
	pone := &one
	seed := &FuzzObject{
		Items:   []LineItem{{Product: w.product(t, "apple"), Qty: 1}, {Product: &Product{SKU: "new", Name: "NEW"}, Qty: 2}},
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
	seed.Shelf.List = []*Product{w.product(t, "pear"), {SKU: "gone", Name: "GONE"}}
	seed.Shelf.Featured = Banner{"b"}
	return seed
}

// TestCompiledStructs: which structs get a compiled codec (msgpack's field
// layout is inject's) and which stay with msgpack.
func TestCompiledStructs(t *testing.T) {
	reg := NewRegistry()
	if _, err := reg.Plan(reflect.TypeFor[*OmitAll]()); err != nil {
		t.Fatal(err)
	}
	want := map[reflect.Type]bool{
		reflect.TypeFor[Address]():                           true,
		reflect.TypeFor[Coord]():                             true,
		reflect.TypeFor[struct{ A, B int }]():                true,
		reflect.TypeFor[Stamp]():                             false, // its own marshalling methods
		reflect.TypeOf(OmitAll{}.Alias):                      false, // an alias option
		reflect.TypeOf(OmitAll{}.Emb):                        false, // an embedded struct
		reflect.TypeOf(OmitAll{}.Skipped):                    true,  // walked: session:"-"
		reflect.TypeFor[time.Time]():                         true,
		reflect.TypeFor[map[string]int]():                    true,
		reflect.TypeFor[[]int]():                             true,
		reflect.TypeFor[*int]():                              true,
		reflect.TypeFor[Embedded]():                          false, // flattened into OmitAll
		reflect.TypeFor[struct{ X []byte }]():                false, // not reached
		reflect.TypeFor[struct{ X time.Time }]():             false, // not reached
		reflect.TypeFor[struct{ X map[string]struct{} }]():   false, // not reached
		reflect.TypeFor[struct{ X map[string]*OmitAll }]():   false, // not reached
		reflect.TypeFor[struct{ X map[string]OmitAll }]():    false, // not reached
		reflect.TypeFor[struct{ X map[string][]*OmitAll }](): false, // not reached
	}
	for typ, compiled := range want {
		n := reg.nodes[nodeKey{t: typ}]
		if n == nil {
			if compiled {
				t.Errorf("%v: no node", typ)
			}
			continue
		}
		if n.compiled != compiled {
			t.Errorf("%v: compiled = %v, want %v", typ, n.compiled, compiled)
		}
	}
}

// TestDecodeKeepsNoInput: strings are copied out of the input.
func TestDecodeKeepsNoInput(t *testing.T) {
	p := plainPlan(t)
	ctx := context.Background()
	data, err := p.Encode(ctx, plainSample(), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := &Plain{}
	if err := p.Decode(ctx, data, got, nil); err != nil {
		t.Fatal(err)
	}
	clear(data)
	if got.S != "hello, world" || got.Home.Street != "Main St" || got.ByName["aa"].Street != "AA" || got.Tags == nil {
		t.Fatalf("decoded state changed with its input: %+v", got)
	}
}

// TestNilTime: msgpack panics on nil for a time.Time field; the compiled codec
// reads it as the zero time, and a fallback type with an unmarshalling method
// as its zero value.
func TestNilTime(t *testing.T) {
	reg := NewRegistry()
	p, err := reg.Plan(reflect.TypeFor[*OmitAll]())
	if err != nil {
		t.Fatal(err)
	}
	got := &OmitAll{T: time.Now(), St: Stamp{3}}
	data := []byte{0x82, 0xa1, 't', 0xc0, 0xa2, 's', 't', 0xc0}
	if err := p.Decode(context.Background(), data, got, nil); err != nil {
		t.Fatal(err)
	}
	if !got.T.IsZero() || got.St.V != 0 {
		t.Fatalf("got %+v", got)
	}
}

// TestDepthBound: nesting is bounded while decoding, in known fields and in
// skipped ones, as msgpackcheck bounds it.
func TestDepthBound(t *testing.T) {
	reg := NewRegistry(WithMaxDepth(8))
	p, err := reg.Plan(reflect.TypeFor[*Plain]())
	if err != nil {
		t.Fatal(err)
	}
	nest := func(key string, levels int) []byte {
		b := []byte{0x81}
		b = appendString(b, key)
		for range levels {
			b = append(b, 0x91)
		}
		return append(b, 0x01)
	}
	for _, key := range []string{"loose", "unknown"} {
		for levels := 1; levels <= 10; levels++ {
			data := nest(key, levels)
			err := p.Decode(context.Background(), data, &Plain{}, nil)
			checkErr := msgpackcheck.Check(data, 8)
			if (err == nil) != (checkErr == nil) {
				t.Errorf("%s at %d levels: decode %v, msgpackcheck %v", key, levels, err, checkErr)
			}
		}
	}
}

// ---- fuzzing ----

// FuzzCompiledVsMsgpack decodes arbitrary bytes with the compiled codecs and
// with msgpack itself (after msgpackcheck.Prepare, as the walker did): the
// results must be the same, or both refuse. Excluded by design: a root that is
// not a map (inject refuses it, msgpack reads nil and arrays), keys that occur
// twice in one struct (the last wins; msgpack merges), and input on which
// msgpack panics (nil for a time.Time). Decoding never panics and allocates in
// proportion to its input.
func FuzzCompiledVsMsgpack(f *testing.F) {
	p := plainPlan(f)
	ctx := context.Background()
	for _, obj := range []*Plain{plainSample(), {}} {
		data, err := p.Encode(ctx, obj, nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		mp, err := msgpack.Marshal(obj)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(mp)
	}
	f.Add([]byte{0x81, 0xa4, 'h', 'o', 'm', 'e', 0x94, 0xa1, 'x', 0x01, 0xc0, 0x90})                  // struct as an array
	f.Add([]byte{0x81, 0xa6, 'c', 'o', 'u', 'n', 't', 's', 0xc7, 0x03, 0x05, 0x81, 0xa1, 'k', 0x01})  // ext before a map
	f.Add([]byte{0x81, 0xa1, 't', 0xd6, 0xff, 0x80, 0x00, 0x00, 0x01})                                // timestamp msgpack reads as a map
	f.Add([]byte{0x82, 0xa1, 's', 0xc4, 0x01, 'x', 0xc4, 0x01, 'i', 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}) // bin key, int64
	f.Add([]byte{0x81, 0xa5, 'a', 'd', 'd', 'r', 's', 0xdd, 0xff, 0xff, 0xff, 0xff})                  // huge array
	f.Add([]byte{0x81, 0xa5, 'l', 'o', 'o', 's', 'e', 0xdf, 0xff, 0xff, 0xff, 0xff})                  // huge map in a fallback
	f.Add([]byte{0x81, 0xa4, 'g', 'r', 'i', 'd', 0x93, 0xc0, 0xc0, 0xc0})                             // array longer than its Go type
	f.Add([]byte{0x81, 0xa3, 'f', '3', '2', 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0})                      // float64 into a float32
	f.Fuzz(func(t *testing.T, data []byte) {
		got := &Plain{}
		before := allocated()
		err := p.Decode(ctx, data, got, nil)
		if grew := allocated() - before; grew > uint64(512*len(data)+1<<20) {
			t.Fatalf("decoding %d bytes allocated %d", len(data), grew)
		}
		if err != nil && !errors.Is(err, ErrIncompatible) {
			t.Fatalf("decode error does not match ErrIncompatible: %v", err)
		}
		want, mpErr, comparable := msgpackDecode(data)
		if !comparable {
			return
		}
		if (err == nil) != (mpErr == nil) {
			t.Fatalf("compiled: %v; msgpack: %v", err, mpErr)
		}
		if err == nil && !sameState(t, p, got, want) {
			t.Fatalf("decoded differently:\ncompiled %+v\nmsgpack  %+v", got, want)
		}
	})
}

// allocated is the number of bytes the program allocated so far.
func allocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// msgpackDecode decodes data into a Plain as msgpack does behind
// msgpackcheck.Prepare; comparable is false for the inputs excluded from the
// comparison.
func msgpackDecode(data []byte) (out *Plain, err error, comparable bool) {
	if len(data) == 0 || !(data[0]&0xf0 == 0x80 || data[0] == 0xde || data[0] == 0xdf) {
		return nil, nil, false
	}
	if duplicateKeys(data) {
		return nil, nil, false
	}
	prepared, err := msgpackcheck.Prepare(data, DefaultMaxDepth)
	if err != nil {
		return nil, err, true
	}
	defer func() {
		if recover() != nil {
			comparable = false
		}
	}()
	out = &Plain{}
	return out, msgpack.Unmarshal(prepared, out), true
}

// duplicateKeys reports whether some map in data has a key twice (or data is
// not well formed enough to tell).
func duplicateKeys(data []byte) bool {
	dec := msgpack.NewDecoder(bytes.NewReader(data))
	var walk func(depth int) bool
	walk = func(depth int) bool {
		if depth > DefaultMaxDepth {
			return true
		}
		c, err := dec.PeekCode()
		if err != nil {
			return true
		}
		switch {
		case c&0xf0 == 0x80 || c == 0xde || c == 0xdf:
			n, err := dec.DecodeMapLen()
			if err != nil || n > len(data) {
				return true
			}
			seen := map[string]bool{}
			for range n {
				raw, err := dec.DecodeRaw()
				if err != nil || seen[string(raw)] {
					return true
				}
				seen[string(raw)] = true
				if walk(depth + 1) {
					return true
				}
			}
			return false
		case c&0xf0 == 0x90 || c == 0xdc || c == 0xdd:
			n, err := dec.DecodeArrayLen()
			if err != nil || n > len(data) {
				return true
			}
			for range n {
				if walk(depth + 1) {
					return true
				}
			}
			return false
		}
		return dec.Skip() != nil
	}
	return walk(0)
}

// FuzzCompiledVsLegacy decodes arbitrary bytes into the object with every kind
// of node (entities, interfaces, maps, recursion) with the compiled codecs and
// with the walker they replaced: whatever the walker read, the compiled codecs
// read the same (objects stored before decode after); they may read a little
// more (binary keys, a key twice).
func FuzzCompiledVsLegacy(f *testing.F) {
	w, p := fuzzPlan(f)
	ctx := context.Background()
	seed := fuzzSeed(f, w)
	for _, tr := range []*Tracker{nil, NewTracker()} {
		data, err := p.Encode(ctx, seed, tr)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		got := &FuzzObject{}
		err := p.Decode(ctx, data, got, NewTracker())
		if err != nil && !errors.Is(err, ErrIncompatible) {
			t.Fatalf("decode error does not match ErrIncompatible: %v", err)
		}
		if duplicateKeys(data) {
			return
		}
		want := &FuzzObject{}
		if legacyErr := legacyDecode(ctx, p, data, want, NewTracker()); legacyErr != nil {
			return
		}
		if err != nil {
			t.Fatalf("the walker read it, the compiled codec refused: %v", err)
		}
		if !sameState(t, p, got, want) {
			t.Fatalf("decoded differently:\ncompiled %+v\nwalker   %+v", got, want)
		}
	})
}

// FuzzEncode: whatever decodes encodes to what the walker writes, and decodes
// again to the same state.
func FuzzEncode(f *testing.F) {
	p := plainPlan(f)
	ctx := context.Background()
	data, err := p.Encode(ctx, plainSample(), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		obj := &Plain{}
		if p.Decode(ctx, data, obj, nil) != nil {
			return
		}
		got, err := p.Encode(ctx, obj, nil)
		if err != nil {
			t.Fatalf("decoded state does not encode: %v", err)
		}
		want, err := legacyAppend(p, nil, obj, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("encodings differ:\ncompiled %x\nwalker   %x", got, want)
		}
		// EncodeChanged against the input: unchanged exactly when the input
		// is the encoding.
		enc, changed, err := p.EncodeChanged(ctx, obj, nil, data)
		if err != nil || changed != !bytes.Equal(got, data) || !bytes.Equal(enc, got) {
			t.Fatalf("EncodeChanged = %x, %v, %v; the encoding is %x", enc, changed, err, got)
		}
		again := &Plain{}
		if err := p.Decode(ctx, got, again, nil); err != nil || !sameState(t, p, obj, again) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// TestEncodeChangedCompares: EncodeChanged finds every change of a field and
// reports an equal object unchanged.
func TestEncodeChangedCompares(t *testing.T) {
	p := plainPlan(t)
	ctx := context.Background()
	baseline, err := p.Encode(ctx, plainSample(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if enc, changed, err := p.EncodeChanged(ctx, plainSample(), nil, baseline); err != nil || changed || &enc[0] != &baseline[0] {
		t.Fatalf("equal object: changed %v, err %v", changed, err)
	}
	eight := 8
	changes := map[string]func(*Plain){
		"S": func(o *Plain) { o.S += "!" }, "S len": func(o *Plain) { o.S = strings.Repeat("x", 40) },
		"I": func(o *Plain) { o.I++ }, "I8": func(o *Plain) { o.I8++ }, "I16": func(o *Plain) { o.I16++ },
		"I32": func(o *Plain) { o.I32++ }, "I64": func(o *Plain) { o.I64++ }, "U": func(o *Plain) { o.U++ },
		"U8": func(o *Plain) { o.U8-- }, "U16": func(o *Plain) { o.U16-- }, "U32": func(o *Plain) { o.U32++ },
		"U64": func(o *Plain) { o.U64-- }, "F32": func(o *Plain) { o.F32 *= 2 }, "F64": func(o *Plain) { o.F64 = 0 },
		"B": func(o *Plain) { o.B = false }, "T": func(o *Plain) { o.T = o.T.Add(1) }, "Lvl": func(o *Plain) { o.Lvl = "silver" },
		"Home.Zip": func(o *Plain) { o.Home.Zip = 0 }, "Home.Where": func(o *Plain) { o.Home.Where.Lat++ },
		"Home.Where nil": func(o *Plain) { o.Home.Where = nil }, "Work nil": func(o *Plain) { o.Work = nil },
		"Deep": func(o *Plain) { **o.Deep = 8 }, "Deep ptr": func(o *Plain) { *o.Deep = &eight },
		"Addrs": func(o *Plain) { o.Addrs[1].Street = "z" }, "Addrs len": func(o *Plain) { o.Addrs = o.Addrs[:1] },
		"Ptrs": func(o *Plain) { o.Ptrs[1] = &Coord{} }, "Grid": func(o *Plain) { o.Grid[1][2] = 0 },
		"Tags nil": func(o *Plain) { o.Tags = nil }, "Items": func(o *Plain) { o.Items[1].Qty = 3 }, "ByName": func(o *Plain) { o.ByName["b"] = Address{} },
		"Counts": func(o *Plain) { o.Counts["x"] = 2 }, "Times": func(o *Plain) { o.Times[3] = time.Unix(1, 0) },
		"Loose": func(o *Plain) { o.Loose = nil }, "Raw": func(o *Plain) { o.Raw[0] = 9 }, "Note": func(o *Plain) { o.Note = "n" },
		"Hidden (not stored)": nil,
	}
	for name, change := range changes {
		obj := plainSample()
		if change == nil {
			obj.Hidden = "x"
		} else {
			change(obj)
		}
		want, err := p.Encode(ctx, obj, nil)
		if err != nil {
			t.Fatal(err)
		}
		enc, changed, err := p.EncodeChanged(ctx, obj, nil, baseline)
		if err != nil || changed != (change != nil) || !bytes.Equal(enc, want) {
			t.Errorf("%s: changed %v, err %v, encoding right %v", name, changed, err, bytes.Equal(enc, want))
		}
	}
}

func TestPlainRoundTrip(t *testing.T) {
	p := plainPlan(t)
	ctx := context.Background()
	in := plainSample()
	data, err := p.Encode(ctx, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := &Plain{}
	if err := p.Decode(ctx, data, out, nil); err != nil {
		t.Fatal(err)
	}
	in.F64 = 0 // -0 and 0 compare equal but print differently
	out.F64 = 0
	if fmt.Sprint(in.Times) != fmt.Sprint(out.Times) {
		for i := range in.Times {
			if !in.Times[i].Equal(out.Times[i]) {
				t.Fatalf("times %v, want %v", out.Times, in.Times)
			}
		}
	}
	out.Times, in.Times = nil, nil
	out.T, in.T = time.Time{}, time.Time{}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out, in)
	}
}
