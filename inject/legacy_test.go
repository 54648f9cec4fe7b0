package inject

// The codecs inject had before plans compiled theirs (a walker over reflect
// values, msgpack for the subtrees it did not walk), kept as the reference the
// compiled codecs are tested against: they must write the same bytes, and read
// what these wrote.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"reflect"
	"slices"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/fxsession/fxsession/internal/msgpackcheck"
)

// legacyAppend is Plan.Append as it was (without comparing entities of unknown
// state with their repository).
func legacyAppend(p *Plan, dst []byte, obj any, tr *Tracker) ([]byte, error) {
	s := p.reg.legacyGetEnc(tr, modeDecide)
	defer p.reg.legacyPutEnc(s)
	s.w.b = dst
	if err := s.encode(p.root, reflect.ValueOf(obj).Elem()); err != nil {
		return dst, err
	}
	return s.w.b, nil
}

// legacyDecode is Plan.Decode as it was.
func legacyDecode(ctx context.Context, p *Plan, data []byte, obj any, tr *Tracker) error {
	v := reflect.ValueOf(obj).Elem()
	data, err := msgpackcheck.Prepare(data, p.reg.maxDepth)
	if err != nil {
		return incompatible(p.t, "%v", err)
	}
	if len(data) == 0 || data[0] == 0xc0 {
		return incompatible(p.t, "stored value is nil")
	}
	if c := data[0]; c&0xf0 != 0x80 && c != 0xde && c != 0xdf {
		return incompatible(p.t, "stored value is not a map (msgpack code 0x%02x)", c)
	}
	s := p.reg.legacyGetDec(data, tr)
	defer p.reg.legacyPutDec(s)
	if err := s.decode(p.root, v); err != nil {
		if errors.Is(err, ErrIncompatible) {
			return err
		}
		return incompatible(p.t, "%v", err)
	}
	return s.resolve(ctx)
}

type legacyEnc struct {
	reg     *Registry
	w       appendWriter
	enc     *msgpack.Encoder
	tr      *Tracker
	mode    encMode
	depth   int
	unknown []entityRef
	scratch []byte
}

func newLegacyEnc(r *Registry) *legacyEnc {
	s := &legacyEnc{reg: r}
	s.enc = msgpack.NewEncoder(&s.w)
	s.enc.UseCompactInts(true)
	s.enc.SetSortMapKeys(true) // maps inside `any` values
	return s
}

func (r *Registry) legacyGetEnc(tr *Tracker, mode encMode) *legacyEnc {
	s := newLegacyEnc(r)
	s.tr, s.mode, s.depth = tr, mode, 0
	return s
}

func (r *Registry) legacyPutEnc(s *legacyEnc) {
	s.tr = nil
	s.w.b = nil
	clear(s.unknown)
	s.unknown = s.unknown[:0]
	if cap(s.scratch) > 64<<10 {
		s.scratch = nil
	}
}

func (s *legacyEnc) hash(b []byte) uint64 { return maphash.Bytes(s.reg.seed, b) }

func legacyFieldOf(v reflect.Value, index []int) reflect.Value {
	if len(index) == 1 {
		return v.Field(index[0])
	}
	return v.FieldByIndex(index)
}

func (s *legacyEnc) encode(n *node, v reflect.Value) error {
	if !n.walk {
		return s.enc.EncodeValue(v)
	}
	s.depth++
	if s.depth > s.reg.maxDepth {
		return fmt.Errorf("inject: state nested deeper than %d levels at a %s (a pointer cycle?)", s.reg.maxDepth, n.t)
	}
	var err error
	switch n.kind {
	case kPtr:
		if v.IsNil() {
			err = s.enc.EncodeNil()
		} else {
			err = s.encode(n.elem, v.Elem())
		}
	case kSlice:
		if v.IsNil() {
			err = s.enc.EncodeNil()
			break
		}
		err = s.encodeList(n, v)
	case kArray:
		err = s.encodeList(n, v)
	case kMap:
		err = s.encodeMap(n, v)
	case kStruct:
		err = s.encodeStruct(n, v)
	case kIface:
		err = s.encodeIface(n, v)
	case kEntity:
		err = s.encodeEntity(n, v)
	default:
		err = s.enc.EncodeValue(v)
	}
	s.depth--
	return err
}

func (s *legacyEnc) encodeList(n *node, v reflect.Value) error {
	l := v.Len()
	if err := s.enc.EncodeArrayLen(l); err != nil {
		return err
	}
	for i := range l {
		if err := s.encode(n.elem, v.Index(i)); err != nil {
			return err
		}
	}
	return nil
}

func (s *legacyEnc) encodeStruct(n *node, v reflect.Value) error {
	count := len(n.fields)
	for _, f := range n.fields {
		if f.omitEmpty && legacyFieldOf(v, f.index).IsZero() {
			count--
		}
	}
	if err := s.enc.EncodeMapLen(count); err != nil {
		return err
	}
	for _, f := range n.fields {
		fv := legacyFieldOf(v, f.index)
		if f.omitEmpty && fv.IsZero() {
			continue
		}
		if err := s.enc.EncodeString(f.key); err != nil {
			return err
		}
		if err := s.encode(f.node, fv); err != nil {
			return fmt.Errorf("%s: %w", f.goName, err)
		}
	}
	return nil
}

type legacyMapSpan struct{ k, v, end int }

// encodeMap writes the entries sorted by the bytes of their encoded keys, so that
// equal maps always encode to equal bytes (Go randomises map iteration).
func (s *legacyEnc) encodeMap(n *node, v reflect.Value) error {
	if v.IsNil() {
		return s.enc.EncodeNil()
	}
	if err := s.enc.EncodeMapLen(v.Len()); err != nil {
		return err
	}
	start := len(s.w.b)
	spans := make([]legacyMapSpan, 0, v.Len())
	it := v.MapRange()
	for it.Next() {
		k := len(s.w.b)
		if err := s.encode(n.key, it.Key()); err != nil {
			return err
		}
		val := len(s.w.b)
		if err := s.encode(n.elem, it.Value()); err != nil {
			return err
		}
		spans = append(spans, legacyMapSpan{k, val, len(s.w.b)})
	}
	if len(spans) < 2 {
		return nil
	}
	b := s.w.b
	slices.SortFunc(spans, func(x, y legacyMapSpan) int { return bytes.Compare(b[x.k:x.v], b[y.k:y.v]) })
	tmp := slices.Clone(b[start:])
	b = b[:start]
	for _, sp := range spans {
		b = append(b, tmp[sp.k-start:sp.end-start]...)
	}
	s.w.b = b
	return nil
}

func (s *legacyEnc) encodeIface(n *node, v reflect.Value) error {
	if v.IsNil() {
		return s.enc.EncodeNil()
	}
	dyn := v.Elem()
	im := n.byType[dyn.Type()]
	if im == nil {
		return fmt.Errorf("inject: a %s holds a %s, which is not a registered implementation", n.t, dyn.Type())
	}
	if err := s.enc.EncodeArrayLen(2); err != nil {
		return err
	}
	if err := s.enc.EncodeString(im.name); err != nil {
		return err
	}
	return s.encode(im.node, dyn)
}

func (s *legacyEnc) encodeEntity(n *node, v reflect.Value) error {
	if nilable(v) && v.IsNil() {
		return s.enc.EncodeNil()
	}
	start := len(s.w.b)
	if err := s.enc.EncodeArrayLen(2); err != nil {
		return err
	}
	if err := s.enc.EncodeUint(entityWholeTag); err != nil {
		return err
	}
	body := len(s.w.b)
	if err := s.encode(n.ent.inner, v); err != nil {
		return err
	}
	if s.mode == modeWhole {
		return nil
	}
	e, ok := v.Interface().(Entity)
	if !ok {
		return nil
	}
	id := e.EntityID()
	if id == "" {
		return nil // not persisted yet: always whole
	}
	h := s.hash(s.w.b[body:])
	key := entityKey{n.ent.t, id}
	switch s.mode {
	case modeSnapshot:
		s.tr.recordRepo(key, h)
	case modeDecide:
		st, known := s.tr.get(key)
		if !known {
			if s.tr != nil && !slices.Contains(s.unknown, entityRef{n.ent, id}) {
				s.unknown = append(s.unknown, entityRef{n.ent, id})
			}
			return nil
		}
		if !st.hasRepo || st.repoHash != h {
			return nil // modified (or not in the repository): whole
		}
	}
	s.w.b = s.w.b[:start]
	if err := s.enc.EncodeArrayLen(2); err != nil {
		return err
	}
	if err := s.enc.EncodeUint(entityRefTag); err != nil {
		return err
	}
	return s.enc.EncodeString(id)
}

type legacyDec struct {
	reg    *Registry
	data   []byte
	rd     bytes.Reader
	dec    *msgpack.Decoder
	tr     *Tracker
	refs   []pendingRef
	fixups []func()
}

// pendingRef is an entity reference waiting for its repository: slot receives the
// entity (slot's type is the entity type or an interface it implements), or its
// zero value when the entity is gone.

func newLegacyDec(r *Registry) *legacyDec {
	s := &legacyDec{reg: r}
	s.dec = msgpack.NewDecoder(&s.rd)
	return s
}

func (r *Registry) legacyGetDec(data []byte, tr *Tracker) *legacyDec {
	s := newLegacyDec(r)
	s.data, s.tr = data, tr
	s.rd.Reset(data)
	s.dec.ResetReader(&s.rd)
	return s
}

func (r *Registry) legacyPutDec(s *legacyDec) {
	s.data, s.tr = nil, nil
	s.rd.Reset(nil)
	clear(s.refs)
	s.refs = s.refs[:0]
	clear(s.fixups)
	s.fixups = s.fixups[:0]
}

func (s *legacyDec) off() int { return len(s.data) - s.rd.Len() }

func (s *legacyDec) peekNil() bool {
	if s.rd.Len() > 0 && s.data[s.off()] == 0xc0 {
		_, _ = s.rd.ReadByte()
		return true
	}
	return false
}

// readStr reads a msgpack string without copying it.
func (s *legacyDec) readStr() ([]byte, error) {
	c, err := s.rd.ReadByte()
	if err != nil {
		return nil, err
	}
	var n int
	switch {
	case c >= 0xa0 && c <= 0xbf:
		n = int(c & 0x1f)
	case c == 0xd9 || c == 0xda || c == 0xdb:
		size := 1 << (c - 0xd9)
		if s.rd.Len() < size {
			return nil, io.ErrUnexpectedEOF
		}
		p := s.data[s.off() : s.off()+size]
		switch size {
		case 1:
			n = int(p[0])
		case 2:
			n = int(binary.BigEndian.Uint16(p))
		default:
			n = int(binary.BigEndian.Uint32(p))
		}
		_, _ = s.rd.Seek(int64(size), io.SeekCurrent)
	default:
		return nil, fmt.Errorf("expected a string, found msgpack code 0x%02x", c)
	}
	if n > s.rd.Len() {
		return nil, io.ErrUnexpectedEOF
	}
	o := s.off()
	_, _ = s.rd.Seek(int64(n), io.SeekCurrent)
	return s.data[o : o+n], nil
}

func (s *legacyDec) decode(n *node, v reflect.Value) error {
	if !n.walk {
		return s.dec.DecodeValue(v)
	}
	switch n.kind {
	case kPtr:
		if s.peekNil() {
			v.SetZero()
			return nil
		}
		if v.IsNil() {
			v.Set(reflect.New(n.t.Elem()))
		}
		return s.decode(n.elem, v.Elem())
	case kSlice:
		return s.decodeSlice(n, v)
	case kArray:
		l, err := s.dec.DecodeArrayLen()
		if err != nil {
			return err
		}
		v.SetZero()
		for i := range max(l, 0) {
			if i >= v.Len() {
				if err := s.dec.Skip(); err != nil {
					return err
				}
				continue
			}
			if err := s.decode(n.elem, v.Index(i)); err != nil {
				return err
			}
		}
		return nil
	case kMap:
		return s.decodeMap(n, v)
	case kStruct:
		return s.decodeStruct(n, v)
	case kIface:
		return s.decodeIface(n, v)
	case kEntity:
		return s.decodeEntity(n, v)
	}
	return s.dec.DecodeValue(v)
}

func (s *legacyDec) decodeSlice(n *node, v reflect.Value) error {
	l, err := s.dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	if l < 0 {
		v.SetZero()
		return nil
	}
	sl := reflect.MakeSlice(n.t, l, l) // l is bounded by the input size (msgpackcheck)
	v.Set(sl)
	// A missing entity leaves its element nil: positions never shift.
	for i := range l {
		if err := s.decode(n.elem, sl.Index(i)); err != nil {
			return err
		}
	}
	return nil
}

func (s *legacyDec) decodeMap(n *node, v reflect.Value) error {
	l, err := s.dec.DecodeMapLen()
	if err != nil {
		return err
	}
	if l < 0 {
		v.SetZero()
		return nil
	}
	m := reflect.MakeMapWithSize(n.t, l)
	v.Set(m)
	kt, et := n.t.Key(), n.t.Elem()
	for range l {
		k := reflect.New(kt).Elem()
		if err := s.decode(n.key, k); err != nil {
			return err
		}
		val := reflect.New(et).Elem()
		before := len(s.refs)
		if err := s.decode(n.elem, val); err != nil {
			return err
		}
		if len(s.refs) == before {
			m.SetMapIndex(k, val)
			continue
		}
		// val holds references resolved later: store it once they are (a
		// missing entity leaves the key with a nil value).
		s.fixups = append(s.fixups, func() { m.SetMapIndex(k, val) })
	}
	return nil
}

func (s *legacyDec) decodeStruct(n *node, v reflect.Value) error {
	l, err := s.dec.DecodeMapLen()
	if err != nil {
		return err
	}
	if l < 0 {
		v.SetZero()
		return nil
	}
	for range l {
		key, err := s.readStr()
		if err != nil {
			return err
		}
		f := n.field(key)
		if f == nil {
			if err := s.dec.Skip(); err != nil { // a field that no longer exists
				return err
			}
			continue
		}
		fv := legacyFieldOf(v, f.index)
		fv.SetZero()
		if err := s.decode(f.node, fv); err != nil {
			return fmt.Errorf("%s: %w", f.goName, err)
		}
	}
	return nil
}

func (s *legacyDec) decodeIface(n *node, v reflect.Value) error {
	if s.peekNil() {
		v.SetZero()
		return nil
	}
	l, err := s.dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	if l != 2 {
		return incompatible(n.t, "interface value is not a [type, value] pair")
	}
	name, err := s.readStr()
	if err != nil {
		return err
	}
	im := n.byImpl[string(name)]
	if im == nil {
		return incompatible(n.t, "%q is not a registered implementation", name)
	}
	if im.node.kind == kEntity {
		return s.decodeEntity(im.node, v)
	}
	val := reflect.New(im.t).Elem()
	before := len(s.refs)
	if err := s.decode(im.node, val); err != nil {
		return err
	}
	v.Set(val)
	if len(s.refs) > before && im.t.Kind() != reflect.Pointer {
		s.fixups = append(s.fixups, func() { v.Set(val) })
	}
	return nil
}

func (s *legacyDec) decodeEntity(n *node, slot reflect.Value) error {
	if s.peekNil() {
		slot.SetZero()
		return nil
	}
	l, err := s.dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	if l != 2 {
		return incompatible(n.t, "entity is not a [kind, value] pair")
	}
	tag, err := s.dec.DecodeUint64()
	if err != nil {
		return err
	}
	switch tag {
	case entityRefTag:
		id, err := s.dec.DecodeString()
		if err != nil {
			return err
		}
		if id == "" {
			return incompatible(n.t, "entity reference without an ID")
		}
		slot.SetZero()
		s.refs = append(s.refs, pendingRef{ent: n.ent, id: id, slot: slot})
		return nil
	case entityWholeTag:
		val := reflect.New(n.ent.t).Elem()
		before := len(s.refs)
		if err := s.decode(n.ent.inner, val); err != nil {
			return err
		}
		slot.Set(val)
		if len(s.refs) > before && n.ent.t.Kind() != reflect.Pointer {
			s.fixups = append(s.fixups, func() { slot.Set(val) })
		}
		if s.tr != nil && !isNilish(val) {
			if e, ok := val.Interface().(Entity); ok && e.EntityID() != "" {
				s.tr.markKnown(entityKey{n.ent.t, e.EntityID()})
			}
		}
		return nil
	}
	return incompatible(n.t, "unknown entity tag %d", tag)
}

// resolve fetches the pending references, one batch per entity type, fills their
// slots, records load snapshots, and runs the fixups.
func (s *legacyDec) resolve(ctx context.Context) error {
	if len(s.refs) > 0 {
		byEnt := map[*entityInfo][]string{}
		var order []*entityInfo
		seen := map[entityKey]bool{}
		for _, r := range s.refs {
			k := entityKey{r.ent.t, r.id}
			if seen[k] {
				continue
			}
			seen[k] = true
			if _, ok := byEnt[r.ent]; !ok {
				order = append(order, r.ent)
			}
			byEnt[r.ent] = append(byEnt[r.ent], r.id)
		}
		found := make(map[*entityInfo]map[string]entityValue, len(order))
		for _, ent := range order {
			if ent.repo == nil {
				return fmt.Errorf("inject: no repository for entity type %s", ent.t)
			}
			res, err := ent.repo.fetch(ctx, byEnt[ent], nil)
			if err != nil {
				return err
			}
			found[ent] = res
			for _, id := range byEnt[ent] {
				v, ok := res[id]
				if !ok {
					s.reg.logger.WarnContext(ctx, "fxsession: a stored entity reference no longer resolves; it loads as absent",
						"entity", ent.name, "id", id)
					continue
				}
				if s.tr != nil {
					if err := s.reg.snapshot(s.tr, ent, id, v.v); err != nil {
						return err
					}
				}
			}
		}
		for _, r := range s.refs {
			v, ok := found[r.ent][r.id]
			if !ok {
				r.slot.SetZero()
				continue
			}
			r.slot.Set(v.v)
		}
	}
	for _, f := range s.fixups {
		f()
	}
	return nil
}
