package inject

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/fxsession/fxsession/internal/msgpackcheck"
)

// Codecs compiled per plan
//
// When a plan is built, every node (the codec of one Go type, see registry.go)
// gets an encoder and a decoder specialised to its shape: closures over the
// node that read and write the value through its address, with field offsets,
// element sizes and the encoded field names computed once. They write the bytes
// msgpack v5 writes (compact integers) and read what msgpack v5 reads for the
// same Go type, without msgpack's reflection or its per-type cache.
//
// Known shapes: structs, slices, arrays, maps, pointers, strings, booleans,
// integers, floats, time.Time, entities and interfaces with registered
// implementations. Everything else (`any`, []byte, types with their own
// marshalling methods, structs whose msgpack field layout inject does not model:
// embedded fields, tag options other than omitempty) is a fallback leaf: encoded
// by msgpack, and decoded by msgpack from exactly the bytes of that value, after
// the same checks as any stored value (internal/msgpackcheck.Prepare).
//
// Decoders assign: whatever the destination held before, afterwards it holds
// exactly the decoded value (a struct's absent fields are zero), except at the
// top level of a plan, where fields absent from the input keep their value.
// A key present twice in one map replaces the earlier value (msgpack would
// merge the second into the first).
//
// Structs follow one of two field models: inject's (the plan's own type, and
// structs with `session:"-"` fields or holding entities, interfaces or maps:
// the node is walked) or msgpack's (all others, whose bytes msgpack wrote before
// plans compiled codecs). They differ only in omitempty (inject: reflect's
// IsZero; msgpack: its isEmptyValue) and in that msgpack also reads a struct
// written as an array.

type (
	// encFn appends the encoding of the value at p to b. The buffer is passed
	// and returned rather than kept in s, so that it stays in registers.
	encFn func(s *encState, b []byte, p unsafe.Pointer) ([]byte, error)
	decFn func(d *decState, p unsafe.Pointer) error
)

type sliceHeader struct {
	data     unsafe.Pointer
	len, cap int
}

// zeroBase is the data pointer of decoded empty (non-nil) slices.
var zeroBase [1]byte

var (
	timeType     = reflect.TypeFor[time.Time]()
	isZeroerType = reflect.TypeFor[interface{ IsZero() bool }]()
)

// compileAll compiles root and every node it reaches that is not compiled yet.
// Registry.mu held.
func (r *Registry) compileAll(root *node) {
	stack := []*node{root}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n.enc != nil {
			continue
		}
		r.compile(n)
		for c := range n.children {
			if c.enc == nil {
				stack = append(stack, c)
			}
		}
	}
}

func (r *Registry) compile(n *node) {
	switch n.kind {
	case kPtr:
		compilePtr(n)
	case kSlice:
		compileSlice(n)
	case kArray:
		compileArray(n)
	case kMap:
		compileMap(n)
	case kStruct:
		if n.walk || msgpackStruct(n) {
			compileStruct(n)
		} else {
			compileFallback(n)
		}
	case kIface:
		compileIface(n)
	case kEntity:
		compileEntity(n)
	default:
		compileLeaf(n)
	}
	if n.decz == nil {
		n.decz = n.dec
	}
}

// ---- fallback: msgpack itself ----

func compileFallback(n *node) {
	t := n.t
	n.compiled = false
	n.enc = func(s *encState, b []byte, p unsafe.Pointer) ([]byte, error) {
		s.w.b = b
		err := s.enc.EncodeValue(reflect.NewAt(t, p).Elem())
		b, s.w.b = s.w.b, nil
		return b, err
	}
	n.dec = func(d *decState, p unsafe.Pointer) error { return d.fallback(t, p) }
}

// fallback decodes the next value into the t at p with msgpack, from exactly
// the value's bytes once they passed msgpackcheck.Prepare.
func (d *decState) fallback(t reflect.Type, p unsafe.Pointer) (err error) {
	start := d.off
	v := reflect.NewAt(t, p).Elem()
	if c, ok := d.peek(); ok && c == cNil {
		// msgpack v5 panics on nil for a struct with an unmarshalling method
		// (time.Time among them): nil is the zero value.
		d.off++
		v.SetZero()
		return nil
	}
	if err := d.skip(); err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			err = d.fail(start, "msgpack: %v", r)
		}
	}()
	sub, err := msgpackcheck.Prepare(d.b[start:d.off], d.maxDepth)
	if err != nil {
		return err
	}
	d.fbr.Reset(sub)
	d.fb.ResetReader(&d.fbr)
	v.SetZero()
	if err := d.fb.DecodeValue(v); err != nil {
		return d.fail(start, "%v", err)
	}
	return nil
}

// ---- leaves ----

// leafKind names the leaves that struct codecs encode and decode inline,
// without calling the leaf's codec.
type leafKind uint8

const (
	leafOther leafKind = iota
	leafString
	leafInt64 // int64, and int where it has 64 bits
	leafBool
)

func leafOf(t reflect.Type) leafKind {
	if t == timeType || custom(t) {
		return leafOther
	}
	switch t.Kind() {
	case reflect.String:
		return leafString
	case reflect.Int, reflect.Int64:
		if t.Size() == 8 {
			return leafInt64
		}
	case reflect.Bool:
		return leafBool
	}
	return leafOther
}

func compileLeaf(n *node) {
	t := n.t
	n.compiled = true
	if t == timeType {
		n.enc = func(_ *encState, b []byte, p unsafe.Pointer) ([]byte, error) {
			return appendTime(b, *(*time.Time)(p)), nil
		}
		n.dec = func(d *decState, p unsafe.Pointer) error {
			v, err := d.time()
			*(*time.Time)(p) = v
			return err
		}
		return
	}
	if custom(t) {
		compileFallback(n)
		return
	}
	switch t.Kind() {
	case reflect.Bool:
		n.enc = func(_ *encState, b []byte, p unsafe.Pointer) ([]byte, error) { return appendBool(b, *(*bool)(p)), nil }
		n.dec = func(d *decState, p unsafe.Pointer) error {
			v, err := d.bool()
			*(*bool)(p) = v
			return err
		}
	case reflect.String:
		n.enc = func(_ *encState, b []byte, p unsafe.Pointer) ([]byte, error) {
			return appendString(b, *(*string)(p)), nil
		}
		n.dec = func(d *decState, p unsafe.Pointer) error {
			v, err := d.string()
			*(*string)(p) = v
			return err
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		compileInt(n, t.Size())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		compileUint(n, t.Size())
	case reflect.Float32:
		n.enc = func(_ *encState, b []byte, p unsafe.Pointer) ([]byte, error) {
			return appendFloat32(b, *(*float32)(p)), nil
		}
		n.dec = func(d *decState, p unsafe.Pointer) error {
			v, err := d.float32()
			*(*float32)(p) = v
			return err
		}
	case reflect.Float64:
		n.enc = func(_ *encState, b []byte, p unsafe.Pointer) ([]byte, error) {
			return appendFloat64(b, *(*float64)(p)), nil
		}
		n.dec = func(d *decState, p unsafe.Pointer) error {
			v, err := d.float64()
			*(*float64)(p) = v
			return err
		}
	default: // []byte, any, uintptr
		compileFallback(n)
	}
}

func compileInt(n *node, size uintptr) {
	switch size {
	case 1:
		n.enc = func(_ *encState, b []byte, p unsafe.Pointer) ([]byte, error) {
			return appendInt(b, int64(*(*int8)(p))), nil
		}
		n.dec = func(d *decState, p unsafe.Pointer) error { v, err := d.int64(); *(*int8)(p) = int8(v); return err }
	case 2:
		n.enc = func(_ *encState, b []byte, p unsafe.Pointer) ([]byte, error) {
			return appendInt(b, int64(*(*int16)(p))), nil
		}
		n.dec = func(d *decState, p unsafe.Pointer) error { v, err := d.int64(); *(*int16)(p) = int16(v); return err }
	case 4:
		n.enc = func(_ *encState, b []byte, p unsafe.Pointer) ([]byte, error) {
			return appendInt(b, int64(*(*int32)(p))), nil
		}
		n.dec = func(d *decState, p unsafe.Pointer) error { v, err := d.int64(); *(*int32)(p) = int32(v); return err }
	default:
		n.enc = func(_ *encState, b []byte, p unsafe.Pointer) ([]byte, error) { return appendInt(b, *(*int64)(p)), nil }
		n.dec = func(d *decState, p unsafe.Pointer) error {
			if d.off < len(d.b) && d.b[d.off] <= 0x7f { // positive fixint
				*(*int64)(p) = int64(d.b[d.off])
				d.off++
				return nil
			}
			v, err := d.int64()
			*(*int64)(p) = v
			return err
		}
	}
}

func compileUint(n *node, size uintptr) {
	switch size {
	case 1:
		n.enc = func(_ *encState, b []byte, p unsafe.Pointer) ([]byte, error) {
			return appendUint(b, uint64(*(*uint8)(p))), nil
		}
		n.dec = func(d *decState, p unsafe.Pointer) error { v, err := d.uint64(); *(*uint8)(p) = uint8(v); return err }
	case 2:
		n.enc = func(_ *encState, b []byte, p unsafe.Pointer) ([]byte, error) {
			return appendUint(b, uint64(*(*uint16)(p))), nil
		}
		n.dec = func(d *decState, p unsafe.Pointer) error { v, err := d.uint64(); *(*uint16)(p) = uint16(v); return err }
	case 4:
		n.enc = func(_ *encState, b []byte, p unsafe.Pointer) ([]byte, error) {
			return appendUint(b, uint64(*(*uint32)(p))), nil
		}
		n.dec = func(d *decState, p unsafe.Pointer) error { v, err := d.uint64(); *(*uint32)(p) = uint32(v); return err }
	default:
		n.enc = func(_ *encState, b []byte, p unsafe.Pointer) ([]byte, error) {
			return appendUint(b, *(*uint64)(p)), nil
		}
		n.dec = func(d *decState, p unsafe.Pointer) error { v, err := d.uint64(); *(*uint64)(p) = v; return err }
	}
}

// ---- pointers, slices, arrays ----

// deeper counts one level of a walked node on encode (a pointer cycle fails
// instead of recursing forever).
func (s *encState) deeper(n *node) error {
	s.depth++
	if s.depth > s.reg.maxDepth {
		return fmt.Errorf("inject: state nested deeper than %d levels at a %s (a pointer cycle?)", s.reg.maxDepth, n.t)
	}
	return nil
}

func compilePtr(n *node) {
	elem, et, walk := n.elem, n.t.Elem(), n.walk
	n.compiled = true
	n.enc = func(s *encState, b []byte, p unsafe.Pointer) ([]byte, error) {
		q := *(*unsafe.Pointer)(p)
		if q == nil {
			return appendNil(b), nil
		}
		if !walk {
			return elem.enc(s, b, q)
		}
		if err := s.deeper(n); err != nil {
			return b, err
		}
		b, err := elem.enc(s, b, q)
		s.depth--
		return b, err
	}
	n.dec = func(d *decState, p unsafe.Pointer) error {
		if c, ok := d.peek(); ok && c == cNil {
			d.off++
			*(*unsafe.Pointer)(p) = nil
			return nil
		}
		q := reflect.New(et).UnsafePointer()
		*(*unsafe.Pointer)(p) = q
		return elem.decz(d, q)
	}
}

func compileSlice(n *node) {
	elem, t, walk := n.elem, n.t, n.walk
	size := t.Elem().Size()
	flat := flatFields(elem)
	flatHeader := appendMapLen(nil, len(flat))
	n.compiled = true
	n.enc = func(s *encState, b []byte, p unsafe.Pointer) ([]byte, error) {
		h := (*sliceHeader)(p)
		if h.data == nil {
			return appendNil(b), nil
		}
		if walk {
			if err := s.deeper(n); err != nil {
				return b, err
			}
			defer func() { s.depth-- }()
		}
		b = appendArrayLen(b, h.len)
		if flat != nil {
			for i := range h.len {
				b = appendFlat(b, flatHeader, flat, unsafe.Add(h.data, uintptr(i)*size))
			}
			return b, nil
		}
		var err error
		for i := range h.len {
			if b, err = elem.enc(s, b, unsafe.Add(h.data, uintptr(i)*size)); err != nil {
				return b, err
			}
		}
		return b, nil
	}
	n.dec = func(d *decState, p unsafe.Pointer) error {
		at := d.off
		l, err := d.arrayLen()
		if err != nil {
			return err
		}
		h := (*sliceHeader)(p)
		switch {
		case l < 0:
			*h = sliceHeader{}
			return nil
		case l == 0:
			*h = sliceHeader{data: unsafe.Pointer(&zeroBase)}
			return nil
		}
		if err := d.enter(at, l); err != nil {
			return err
		}
		*h = sliceHeader{}
		v := reflect.NewAt(t, p).Elem()
		v.Grow(l) // l is bounded by the bytes left
		v.SetLen(l)
		data := h.data
		for i := range l {
			ep := unsafe.Add(data, uintptr(i)*size)
			if flat != nil && d.off < len(d.b) && d.b[d.off]&0xf0 == 0x80 { // a fixmap of fields
				at, fl := d.off, int(d.b[d.off]&0x0f)
				if 2*fl > len(d.b)-at-1 {
					return d.fail(at, "map declares %d values, only %d bytes left", 2*fl, len(d.b)-at-1)
				}
				d.off++
				if fl > 0 {
					if err := d.decodeFields(elem, at, fl, ep); err != nil {
						return err
					}
				}
				continue
			}
			if err := elem.decz(d, ep); err != nil {
				return err
			}
		}
		d.depth--
		return nil
	}
}

// appendFlat encodes the struct at p whose fields are all inline leaves.
func appendFlat(b, header []byte, fields []fieldCodec, p unsafe.Pointer) []byte {
	b = append(b, header...)
	for j := range fields {
		f := &fields[j]
		b = appendLeaf(append(b, f.key...), f.leaf, unsafe.Add(p, f.offset))
	}
	return b
}

// appendLeaf encodes the inline leaf of kind k at fp; leafOther appends nothing.
func appendLeaf(b []byte, k leafKind, fp unsafe.Pointer) []byte {
	switch k {
	case leafString:
		b = appendString(b, *(*string)(fp))
	case leafInt64:
		b = appendInt(b, *(*int64)(fp))
	case leafBool:
		b = appendBool(b, *(*bool)(fp))
	}
	return b
}

func compileArray(n *node) {
	elem, t, walk := n.elem, n.t, n.walk
	size, length := t.Elem().Size(), t.Len()
	n.compiled = true
	n.enc = func(s *encState, b []byte, p unsafe.Pointer) ([]byte, error) {
		if walk {
			if err := s.deeper(n); err != nil {
				return b, err
			}
			defer func() { s.depth-- }()
		}
		b = appendArrayLen(b, length)
		var err error
		for i := range length {
			if b, err = elem.enc(s, b, unsafe.Add(p, uintptr(i)*size)); err != nil {
				return b, err
			}
		}
		return b, nil
	}
	n.dec = func(d *decState, p unsafe.Pointer) error {
		reflect.NewAt(t, p).Elem().SetZero()
		return n.decz(d, p)
	}
	n.decz = func(d *decState, p unsafe.Pointer) error {
		at := d.off
		l, err := d.arrayLen()
		if err != nil {
			return err
		}
		if l > length && !walk {
			// msgpack refuses it; an array holding entities, interfaces or maps
			// (walked by inject) drops the values beyond its length.
			return d.fail(at, "%s has %d elements, the input %d", t, length, l)
		}
		if l <= 0 {
			return nil
		}
		if err := d.enter(at, l); err != nil {
			return err
		}
		for i := range l {
			if i >= length {
				if err := d.skip(); err != nil {
					return err
				}
				continue
			}
			if err := elem.dec(d, unsafe.Add(p, uintptr(i)*size)); err != nil {
				return err
			}
		}
		d.depth--
		return nil
	}
}

// ---- maps ----

type mapSpan struct{ k, v, end int }

func compileMap(n *node) {
	key, elem, t := n.key, n.elem, n.t
	kt, et := t.Key(), t.Elem()
	n.compiled = true
	n.enc = func(s *encState, b []byte, p unsafe.Pointer) ([]byte, error) {
		m := reflect.NewAt(t, p).Elem()
		if m.IsNil() {
			return appendNil(b), nil
		}
		if err := s.deeper(n); err != nil {
			return b, err
		}
		defer func() { s.depth-- }()
		l := m.Len()
		b = appendMapLen(b, l)
		if l == 0 {
			return b, nil
		}
		k, v := reflect.New(kt).Elem(), reflect.New(et).Elem()
		kp, vp := k.Addr().UnsafePointer(), v.Addr().UnsafePointer()
		start, base := len(b), len(s.spans)
		it := m.MapRange()
		var err error
		for it.Next() {
			k.SetIterKey(it)
			v.SetIterValue(it)
			ko := len(b)
			if b, err = key.enc(s, b, kp); err != nil {
				return b, err
			}
			vo := len(b)
			if b, err = elem.enc(s, b, vp); err != nil {
				return b, err
			}
			s.spans = append(s.spans, mapSpan{ko, vo, len(b)})
		}
		return s.sortEntries(b, start, base), nil
	}
	n.dec = func(d *decState, p unsafe.Pointer) error {
		at := d.off
		l, err := d.mapHeader()
		if err != nil {
			return err
		}
		if l < 0 {
			*(*unsafe.Pointer)(p) = nil
			return nil
		}
		m := reflect.MakeMapWithSize(t, l) // l is bounded by the bytes left
		*(*unsafe.Pointer)(p) = m.UnsafePointer()
		if l == 0 {
			return nil
		}
		if err := d.enter(at, l); err != nil {
			return err
		}
		k, v := reflect.New(kt).Elem(), reflect.New(et).Elem()
		kp, vp := k.Addr().UnsafePointer(), v.Addr().UnsafePointer()
		for range l {
			if err := key.dec(d, kp); err != nil {
				return err
			}
			before := len(d.refs)
			if err := elem.dec(d, vp); err != nil {
				return err
			}
			if len(d.refs) == before {
				m.SetMapIndex(k, v)
				continue
			}
			// v holds references resolved later: store it once they are (a
			// missing entity leaves the key with a nil value), and decode the
			// next entries elsewhere.
			kc, vc := reflect.New(kt).Elem(), v
			kc.Set(k)
			d.fixups = append(d.fixups, func() { m.SetMapIndex(kc, vc) })
			v = reflect.New(et).Elem()
			vp = v.Addr().UnsafePointer()
		}
		d.depth--
		return nil
	}
}

// sortEntries orders the map entries written since start (their spans from
// base on) by the bytes of their encoded keys, so that equal maps always
// encode to equal bytes (Go randomises map iteration).
func (s *encState) sortEntries(b []byte, start, base int) []byte {
	spans := s.spans[base:]
	defer func() { s.spans = s.spans[:base] }()
	if len(spans) < 2 {
		return b
	}
	slices.SortFunc(spans, func(x, y mapSpan) int { return strings.Compare(unsafeString(b[x.k:x.v]), unsafeString(b[y.k:y.v])) })
	s.tmp = append(s.tmp[:0], b[start:]...)
	b = b[:start]
	for _, sp := range spans {
		b = append(b, s.tmp[sp.k-start:sp.end-start]...)
	}
	return b
}

func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// mapHeader reads the header of a map destination as msgpack's DecodeMapLen
// does: -1 for nil, and an extension header before it is skipped (msgpack then
// reads the map from the extension's payload, which must be well formed).
func (d *decState) mapHeader() (int, error) {
	at := d.off
	c, err := d.code()
	if err != nil {
		return 0, err
	}
	l, ok, err := d.mapLenCode(at, c)
	if ok || err != nil {
		return l, err
	}
	n, typ, isExt, err := d.extHeader(at, c)
	switch {
	case err != nil:
		return 0, err
	case !isExt:
		return 0, d.fail(at, "msgpack code 0x%02x where a map should be", c)
	case n > 0 && typ == -1:
		return 0, d.fail(at, "timestamp where a map should be")
	case n > 0:
		if err := d.checkPayload(at, d.off, d.off+n, d.depth); err != nil {
			return 0, err
		}
	}
	d.extMap = true
	at = d.off
	if c, err = d.code(); err != nil {
		return 0, err
	}
	l, ok, err = d.mapLenCode(at, c)
	if !ok {
		return 0, d.fail(at, "msgpack code 0x%02x where a map should be", c)
	}
	return l, err
}

// ---- structs ----

// msgpackStruct reports whether msgpack's field layout of the struct n.t is
// the one inject modeled in n.fields, so that a compiled codec reads and
// writes the bytes msgpack would: no embedded fields, tags without options
// other than omitempty, omitempty only where emptiness is plain, no name used
// twice.
func msgpackStruct(n *node) bool {
	t := n.t
	names := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous || f.Name == "_msgpack" {
			return false
		}
		name, opts, _ := strings.Cut(f.Tag.Get("msgpack"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if strings.ContainsAny(name, ":'\\") || strings.TrimSpace(name) != name {
			return false
		}
		for o := range strings.SplitSeq(opts, ",") {
			switch strings.TrimSpace(o) {
			case "":
			case "omitempty":
				if emptiness(f.Type) == nil {
					return false
				}
			default:
				return false
			}
		}
		if name == "" {
			name = f.Name
		}
		if names[name] {
			return false
		}
		names[name] = true
	}
	return len(names) == len(n.fields)
}

// emptiness returns msgpack's omitempty test for values of t (its
// isEmptyValue), nil where it is not a plain one.
func emptiness(t reflect.Type) func(unsafe.Pointer) bool {
	if t.Implements(isZeroerType) {
		return nil
	}
	switch t.Kind() {
	case reflect.Bool:
		return func(p unsafe.Pointer) bool { return !*(*bool)(p) }
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return func(p unsafe.Pointer) bool { return reflect.NewAt(t, p).Elem().IsZero() }
	case reflect.Float32:
		return func(p unsafe.Pointer) bool { return *(*float32)(p) == 0 }
	case reflect.Float64:
		return func(p unsafe.Pointer) bool { return *(*float64)(p) == 0 }
	case reflect.String:
		return func(p unsafe.Pointer) bool { return len(*(*string)(p)) == 0 }
	case reflect.Pointer:
		return func(p unsafe.Pointer) bool { return *(*unsafe.Pointer)(p) == nil }
	case reflect.Slice:
		return func(p unsafe.Pointer) bool { return (*sliceHeader)(p).len == 0 }
	case reflect.Map:
		return func(p unsafe.Pointer) bool { return reflect.NewAt(t, p).Elem().Len() == 0 }
	}
	return nil
}

// offsetOf is the offset of the field at the index path (embedded structs by
// value only, as inject flattens them) from the start of t.
func offsetOf(t reflect.Type, index []int) uintptr {
	var off uintptr
	for _, i := range index {
		f := t.Field(i)
		off += f.Offset
		t = f.Type
	}
	return off
}

// prepareFields computes what the compiled codecs need of n's fields: offsets,
// encoded names, omitempty tests. The emptiness of walked structs is reflect's
// IsZero, as inject wrote them; msgpack's for the others.
func prepareFields(n *node) {
	for _, f := range n.fields {
		if f.keyEnc != nil {
			continue
		}
		ft := n.t
		for _, i := range f.index {
			ft = ft.Field(i).Type
		}
		f.offset = offsetOf(n.t, f.index)
		f.keyEnc = appendString(nil, f.key)
		f.leaf = leafOf(ft)
		if !f.omitEmpty {
			continue
		}
		if n.walk {
			f.empty = func(p unsafe.Pointer) bool { return reflect.NewAt(ft, p).Elem().IsZero() }
		} else {
			f.empty = emptiness(ft)
		}
	}
}

// fieldCodec is what a struct's encoder reads per field, in one array: no
// pointer to follow but the node's, and none at all for the commonest leaves.
type fieldCodec struct {
	key    []byte
	offset uintptr
	leaf   leafKind
	node   *node
}

func fieldCodecs(fields []*field) []fieldCodec {
	codecs := make([]fieldCodec, len(fields))
	for i, f := range fields {
		codecs[i] = fieldCodec{f.keyEnc, f.offset, f.leaf, f.node}
	}
	return codecs
}

// flatFields returns the field codecs of the struct node n when all its fields
// are leaves the struct codecs inline and none is omitempty (a line item: a
// slice of them is encoded and decoded in one loop), nil otherwise.
func flatFields(n *node) []fieldCodec {
	if n.kind != kStruct || (!n.walk && !msgpackStruct(n)) {
		return nil
	}
	prepareFields(n)
	for _, f := range n.fields {
		if f.leaf == leafOther || f.empty != nil {
			return nil
		}
	}
	return fieldCodecs(n.fields)
}

func compileStruct(n *node) {
	prepareFields(n)
	t, fields, walk := n.t, n.fields, n.walk
	n.compiled = true
	omits := slices.ContainsFunc(fields, func(f *field) bool { return f.empty != nil })
	header := appendMapLen(nil, len(fields))
	codecs := fieldCodecs(fields)
	n.enc = func(s *encState, b []byte, p unsafe.Pointer) ([]byte, error) {
		if walk {
			if err := s.deeper(n); err != nil {
				return b, err
			}
			defer func() { s.depth-- }()
		}
		if omits {
			return s.encodeFields(b, fields, p)
		}
		b = append(b, header...)
		var err error
		for i := range codecs {
			f := &codecs[i]
			b = append(b, f.key...)
			fp := unsafe.Add(p, f.offset)
			if f.leaf != leafOther {
				b = appendLeaf(b, f.leaf, fp)
			} else if b, err = f.node.enc(s, b, fp); err != nil {
				return b, fmt.Errorf("%s: %w", fields[i].goName, err)
			}
		}
		return b, nil
	}
	n.dec = func(d *decState, p unsafe.Pointer) error {
		reflect.NewAt(t, p).Elem().SetZero()
		return n.decz(d, p)
	}
	n.decz = func(d *decState, p unsafe.Pointer) error {
		at := d.off
		if at < len(d.b) && d.b[at]&0xf0 == 0x80 { // fixmap, the usual
			l := int(d.b[at] & 0x0f)
			if 2*l > len(d.b)-at-1 {
				return d.fail(at, "map declares %d values, only %d bytes left", 2*l, len(d.b)-at-1)
			}
			d.off++
			if l == 0 {
				return nil
			}
			return d.decodeFields(n, at, l, p)
		}
		c, err := d.code()
		if err != nil {
			return err
		}
		l, ok, err := d.mapLenCode(at, c)
		if err != nil {
			return err
		}
		if !ok {
			if walk {
				return d.fail(at, "msgpack code 0x%02x where a map of fields should be", c)
			}
			return d.structArray(n, at, c, p)
		}
		if l <= 0 {
			return nil
		}
		return d.decodeFields(n, at, l, p)
	}
}

func (s *encState) encodeFields(b []byte, fields []*field, p unsafe.Pointer) ([]byte, error) {
	count := len(fields)
	for _, f := range fields {
		if f.empty != nil && f.empty(unsafe.Add(p, f.offset)) {
			count--
		}
	}
	b = appendMapLen(b, count)
	var err error
	for _, f := range fields {
		fp := unsafe.Add(p, f.offset)
		if f.empty != nil && f.empty(fp) {
			continue
		}
		b = append(b, f.keyEnc...)
		if b, err = f.node.enc(s, b, fp); err != nil {
			return b, fmt.Errorf("%s: %w", f.goName, err)
		}
	}
	return b, nil
}

func (n *node) field(key []byte) *field {
	if n.byName != nil {
		return n.byName[string(key)]
	}
	for _, f := range n.fields {
		if f.key == string(key) {
			return f
		}
	}
	return nil
}

// decodeFields reads l fields of a map (its header at at) into the struct at
// p. Keys of fields that do not exist (any more) are skipped.
func (d *decState) decodeFields(n *node, at, l int, p unsafe.Pointer) error {
	if err := d.enter(at, l); err != nil {
		return err
	}
	next := 0 // fields usually come in their order, their names as written
	for range l {
		var f *field
		if next < len(n.fields) {
			if k := n.fields[next].keyEnc; len(k) <= len(d.b)-d.off && string(d.b[d.off:d.off+len(k)]) == string(k) {
				f = n.fields[next]
				d.off += len(k)
			}
		}
		if f == nil {
			key, err := d.rawString()
			if err != nil {
				return err
			}
			if f = n.field(key); f == nil {
				if err := d.skip(); err != nil { // a field that no longer exists
					return err
				}
				continue
			}
		}
		next++
		fp := unsafe.Add(p, f.offset)
		var err error
		switch f.leaf {
		case leafString:
			*(*string)(fp), err = d.string()
		case leafInt64:
			if d.off < len(d.b) && d.b[d.off] <= 0x7f { // positive fixint
				*(*int64)(fp) = int64(d.b[d.off])
				d.off++
				continue
			}
			*(*int64)(fp), err = d.int64()
		case leafBool:
			*(*bool)(fp), err = d.bool()
		default:
			err = f.node.dec(d, fp)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", f.goName, err)
		}
	}
	d.depth--
	return nil
}

// structArray reads a struct msgpack wrote as an array of its fields (code c
// at at): nil or empty leaves it zero, otherwise the count must be the number
// of fields.
func (d *decState) structArray(n *node, at int, c byte, p unsafe.Pointer) error {
	l, err := d.arrayLenCode(at, c)
	if err != nil {
		return d.fail(at, "msgpack code 0x%02x where a struct should be", c)
	}
	if l <= 0 {
		return nil
	}
	if l != len(n.fields) {
		return d.fail(at, "%s written as an array of %d fields; it has %d", n.t, l, len(n.fields))
	}
	if err := d.enter(at, l); err != nil {
		return err
	}
	for _, f := range n.fields {
		if err := f.node.dec(d, unsafe.Add(p, f.offset)); err != nil {
			return fmt.Errorf("%s: %w", f.goName, err)
		}
	}
	d.depth--
	return nil
}

// ---- interfaces ----

func compileIface(n *node) {
	t := n.t
	for _, im := range n.impls {
		im.direct = direct(im.t)
		im.nameEnc = appendString(nil, im.name)
	}
	n.compiled = true
	n.enc = func(s *encState, b []byte, p unsafe.Pointer) ([]byte, error) {
		words := (*[2]unsafe.Pointer)(p)
		if words[0] == nil {
			return appendNil(b), nil
		}
		dyn := reflect.NewAt(t, p).Elem().Elem().Type()
		im := n.byType[dyn]
		if im == nil {
			return b, fmt.Errorf("inject: a %s holds a %s, which is not a registered implementation", t, dyn)
		}
		if err := s.deeper(n); err != nil {
			return b, err
		}
		defer func() { s.depth-- }()
		b = append(append(b, 0x92), im.nameEnc...)
		q := words[1]
		if im.direct {
			q = unsafe.Pointer(&words[1])
		}
		return im.node.enc(s, b, q)
	}
	n.dec = func(d *decState, p unsafe.Pointer) error {
		slot := reflect.NewAt(t, p).Elem()
		if c, ok := d.peek(); ok && c == cNil {
			d.off++
			slot.SetZero()
			return nil
		}
		at := d.off
		l, err := d.arrayLen()
		if err != nil {
			return err
		}
		if l != 2 {
			return incompatible(t, "interface value is not a [type, value] pair")
		}
		if err := d.enter(at, l); err != nil {
			return err
		}
		name, err := d.rawString()
		if err != nil {
			return err
		}
		im := n.byImpl[string(name)]
		if im == nil {
			return incompatible(t, "%q is not a registered implementation", name)
		}
		if im.node.kind == kEntity {
			err = d.decodeEntity(im.node, p, slot)
		} else {
			val := reflect.New(im.t)
			before := len(d.refs)
			if err = im.node.decz(d, val.UnsafePointer()); err == nil {
				slot.Set(val.Elem())
				if len(d.refs) > before && im.t.Kind() != reflect.Pointer {
					d.fixups = append(d.fixups, func() { slot.Set(val.Elem()) })
				}
			}
		}
		d.depth--
		return err
	}
}

// direct reports whether values of t are stored in an interface's data word
// itself (pointer-shaped types) rather than behind it.
func direct(t reflect.Type) bool {
	v := reflect.Zero(t).Interface()
	return (*[2]unsafe.Pointer)(unsafe.Pointer(&v))[1] == nil
}

// ---- entities ----

func compileEntity(n *node) {
	n.compiled = true
	n.enc = func(s *encState, b []byte, p unsafe.Pointer) ([]byte, error) {
		if err := s.deeper(n); err != nil {
			return b, err
		}
		b, err := s.encodeEntity(n, b, p)
		s.depth--
		return b, err
	}
	n.dec = func(d *decState, p unsafe.Pointer) error { return d.decodeEntity(n, p, reflect.Value{}) }
}

// entityAt returns the entity of type ent.t at p, nil when it is nil.
func entityAt(ent *entityInfo, p unsafe.Pointer) Entity {
	v := reflect.NewAt(ent.t, p).Elem()
	if nilable(v) && v.IsNil() {
		return nil
	}
	e, _ := v.Interface().(Entity)
	return e
}
