package inject

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"reflect"

	"github.com/vmihailenco/msgpack/v5"
)

type decState struct {
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
type pendingRef struct {
	ent  *entityInfo
	id   string
	slot reflect.Value
}

func newDecState(r *Registry) *decState {
	s := &decState{reg: r}
	s.dec = msgpack.NewDecoder(&s.rd)
	return s
}

func (r *Registry) getDec(data []byte, tr *Tracker) *decState {
	s := r.decPool.Get().(*decState)
	s.data, s.tr = data, tr
	s.rd.Reset(data)
	s.dec.ResetReader(&s.rd)
	return s
}

func (r *Registry) putDec(s *decState) {
	s.data, s.tr = nil, nil
	s.rd.Reset(nil)
	clear(s.refs)
	s.refs = s.refs[:0]
	clear(s.fixups)
	s.fixups = s.fixups[:0]
	r.decPool.Put(s)
}

func (s *decState) off() int { return len(s.data) - s.rd.Len() }

func (s *decState) peekNil() bool {
	if s.rd.Len() > 0 && s.data[s.off()] == 0xc0 {
		_, _ = s.rd.ReadByte()
		return true
	}
	return false
}

// readStr reads a msgpack string without copying it.
func (s *decState) readStr() ([]byte, error) {
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

func (s *decState) decode(n *node, v reflect.Value) error {
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

func (s *decState) decodeSlice(n *node, v reflect.Value) error {
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

func (s *decState) decodeMap(n *node, v reflect.Value) error {
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

func (s *decState) decodeStruct(n *node, v reflect.Value) error {
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
		fv := fieldOf(v, f.index)
		fv.SetZero()
		if err := s.decode(f.node, fv); err != nil {
			return fmt.Errorf("%s: %w", f.goName, err)
		}
	}
	return nil
}

func (s *decState) decodeIface(n *node, v reflect.Value) error {
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

func (s *decState) decodeEntity(n *node, slot reflect.Value) error {
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
func (s *decState) resolve(ctx context.Context) error {
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
		found := make(map[*entityInfo]map[string]reflect.Value, len(order))
		for _, ent := range order {
			if ent.repo == nil {
				return fmt.Errorf("inject: no repository for entity type %s", ent.t)
			}
			res, err := ent.repo.fetch(ctx, byEnt[ent])
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
					if err := s.reg.snapshot(s.tr, ent, id, v); err != nil {
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
			r.slot.Set(v)
		}
	}
	for _, f := range s.fixups {
		f()
	}
	return nil
}
