package inject

import (
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"reflect"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
)

type encMode uint8

const (
	// modeDecide writes unchanged entities (per the tracker) as references.
	modeDecide encMode = iota
	// modeWhole writes every entity whole and consults no tracker (fingerprints).
	modeWhole
	// modeSnapshot encodes a repository's version of an entity: entities nested in
	// it are recorded as matching their repository and written as references.
	modeSnapshot
)

// appendWriter is the msgpack encoder's output: a plain growing byte slice, so
// the walker can rewrite what it wrote (entity references, map key order).
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
func (w *appendWriter) WriteByte(c byte) error      { w.b = append(w.b, c); return nil }

type encState struct {
	reg     *Registry
	w       appendWriter
	enc     *msgpack.Encoder
	tr      *Tracker
	mode    encMode
	depth   int
	unknown []entityRef
	scratch []byte
}

type entityRef struct {
	ent *entityInfo
	id  string
}

func newEncState(r *Registry) *encState {
	s := &encState{reg: r}
	s.enc = msgpack.NewEncoder(&s.w)
	s.enc.UseCompactInts(true)
	s.enc.SetSortMapKeys(true) // maps inside `any` values
	return s
}

func (r *Registry) getEnc(tr *Tracker, mode encMode) *encState {
	s := r.encPool.Get().(*encState)
	s.tr, s.mode, s.depth = tr, mode, 0
	return s
}

func (r *Registry) putEnc(s *encState) {
	s.tr = nil
	s.w.b = nil
	clear(s.unknown)
	s.unknown = s.unknown[:0]
	if cap(s.scratch) > 64<<10 {
		s.scratch = nil
	}
	r.encPool.Put(s)
}

func (s *encState) hash(b []byte) uint64 { return maphash.Bytes(s.reg.seed, b) }

func fieldOf(v reflect.Value, index []int) reflect.Value {
	if len(index) == 1 {
		return v.Field(index[0])
	}
	return v.FieldByIndex(index)
}

func (s *encState) encode(n *node, v reflect.Value) error {
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

func (s *encState) encodeList(n *node, v reflect.Value) error {
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

func (s *encState) encodeStruct(n *node, v reflect.Value) error {
	count := len(n.fields)
	for _, f := range n.fields {
		if f.omitEmpty && fieldOf(v, f.index).IsZero() {
			count--
		}
	}
	if err := s.enc.EncodeMapLen(count); err != nil {
		return err
	}
	for _, f := range n.fields {
		fv := fieldOf(v, f.index)
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

type mapSpan struct{ k, v, end int }

// encodeMap writes the entries sorted by the bytes of their encoded keys, so that
// equal maps always encode to equal bytes (Go randomises map iteration).
func (s *encState) encodeMap(n *node, v reflect.Value) error {
	if v.IsNil() {
		return s.enc.EncodeNil()
	}
	if err := s.enc.EncodeMapLen(v.Len()); err != nil {
		return err
	}
	start := len(s.w.b)
	spans := make([]mapSpan, 0, v.Len())
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
		spans = append(spans, mapSpan{k, val, len(s.w.b)})
	}
	if len(spans) < 2 {
		return nil
	}
	b := s.w.b
	slices.SortFunc(spans, func(x, y mapSpan) int { return bytes.Compare(b[x.k:x.v], b[y.k:y.v]) })
	tmp := slices.Clone(b[start:])
	b = b[:start]
	for _, sp := range spans {
		b = append(b, tmp[sp.k-start:sp.end-start]...)
	}
	s.w.b = b
	return nil
}

func (s *encState) encodeIface(n *node, v reflect.Value) error {
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

// Entities are written as a two-element array: [0, id] for a reference, [1, value]
// for the whole entity.
const (
	entityRefTag   = 0
	entityWholeTag = 1
)

func nilable(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface:
		return true
	}
	return false
}

func (s *encState) encodeEntity(n *node, v reflect.Value) error {
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

// snapshot records in tr the hash of a repository's version of an entity.
func (r *Registry) snapshot(tr *Tracker, ent *entityInfo, id string, v reflect.Value) error {
	s := r.getEnc(tr, modeSnapshot)
	defer r.putEnc(s)
	s.w.b = s.scratch[:0]
	err := s.encode(ent.inner, v)
	if err == nil {
		tr.recordRepo(entityKey{ent.t, id}, s.hash(s.w.b))
	}
	s.scratch = s.w.b[:0]
	s.w.b = nil
	return err
}

// learn fetches the repository versions of entities the tracker knew nothing
// about and records them (or records that they are not in the repository).
func (r *Registry) learn(ctx context.Context, tr *Tracker, refs []entityRef) error {
	byEnt := map[*entityInfo][]string{}
	var order []*entityInfo
	for _, ref := range refs {
		if _, ok := byEnt[ref.ent]; !ok {
			order = append(order, ref.ent)
		}
		byEnt[ref.ent] = append(byEnt[ref.ent], ref.id)
	}
	for _, ent := range order {
		ids := byEnt[ent]
		if ent.repo == nil {
			for _, id := range ids {
				tr.markKnown(entityKey{ent.t, id})
			}
			continue
		}
		found, err := ent.repo.fetch(ctx, ids)
		if err != nil {
			return err
		}
		for _, id := range ids {
			key := entityKey{ent.t, id}
			v, ok := found[id]
			if !ok {
				tr.markKnown(key) // new: not in the repository
				continue
			}
			if err := r.snapshot(tr, ent, id, v); err != nil {
				return err
			}
		}
	}
	return nil
}
