package inject

import (
	"context"
	"hash/maphash"
	"reflect"
	"slices"
	"unsafe"

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
	enc     *msgpack.Encoder // fallback leaves
	tr      *Tracker
	mode    encMode
	depth   int
	unknown []entityRef
	scratch []byte
	spans   []mapSpan // map entries being sorted (a stack: maps nest)
	tmp     []byte
	slot    unsafe.Pointer // snapshot: the entity pointer being encoded
	nested  []entitySnap   // snapshot for a cache: the nested entities recorded
	buf     []byte         // Plan.EncodeChanged's scratch output
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
	s.nested = s.nested[:0]
	s.w.b = nil
	clear(s.unknown)
	s.unknown = s.unknown[:0]
	if cap(s.scratch) > 64<<10 {
		s.scratch = nil
	}
	if cap(s.tmp) > 64<<10 {
		s.tmp = nil
	}
	s.spans = s.spans[:0]
	r.encPool.Put(s)
}

func (s *encState) hash(b []byte) uint64 { return maphash.Bytes(s.reg.seed, b) }

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

func (s *encState) encodeEntity(n *node, b []byte, p unsafe.Pointer) ([]byte, error) {
	if n.ent.nilable && reflect.NewAt(n.t, p).Elem().IsNil() {
		return appendNil(b), nil
	}
	if s.mode == modeDecide && n.ent.eq != nil {
		if id, ok := s.unchanged(n.ent, p); ok {
			return appendString(append(b, 0x92, entityRefTag), id), nil
		}
	}
	start := len(b)
	b = append(b, 0x92, entityWholeTag)
	body := len(b)
	b, err := n.ent.inner.enc(s, b, p)
	if err != nil || s.mode == modeWhole {
		return b, err
	}
	e := entityAt(n.ent, p)
	if e == nil {
		return b, nil
	}
	id := e.EntityID()
	if id == "" {
		return b, nil // not persisted yet: always whole
	}
	h := s.hash(b[body:])
	key := entityKey{n.ent.t, id}
	switch s.mode {
	case modeSnapshot:
		s.tr.recordRepo(key, h)
		s.nested = append(s.nested, entitySnap{key, h})
	case modeDecide:
		st, known := s.tr.get(key)
		if !known {
			if s.tr != nil && !slices.Contains(s.unknown, entityRef{n.ent, id}) {
				s.unknown = append(s.unknown, entityRef{n.ent, id})
			}
			return b, nil
		}
		if !st.hasRepo || st.repoHash != h {
			return b, nil // modified (or not in the repository): whole
		}
	}
	return appendString(append(b[:start], 0x92, entityRefTag), id), nil
}

// unchanged reports whether the entity at p is identical to the cached value
// its tracked snapshot was made from (snapMemo.base), and its ID: such an
// entity's encoding hashes to the snapshot's, so it is written as a reference
// without being encoded.
func (s *encState) unchanged(ent *entityInfo, p unsafe.Pointer) (string, bool) {
	if s.tr == nil {
		return "", false
	}
	e := entityAt(ent, p)
	if e == nil {
		return "", false
	}
	id := e.EntityID()
	st, ok := s.tr.get(entityKey{ent.t, id})
	if !ok || st.base == nil {
		return "", false
	}
	if ent.t.Kind() == reflect.Pointer {
		p = *(*unsafe.Pointer)(p)
	}
	return id, ent.eq(st.base, p)
}

// snapshot records in tr the hash of a repository's version of an entity.
// Entities nested in it are recorded too, as matching their repository.
func (r *Registry) snapshot(tr *Tracker, ent *entityInfo, id string, v reflect.Value) error {
	s := r.getEnc(tr, modeSnapshot)
	defer r.putEnc(s)
	h, err := s.snapshotHash(ent, v)
	if err == nil {
		tr.recordRepo(entityKey{ent.t, id}, h)
	}
	return err
}

// snapshotHash encodes v, a repository's version of an entity of type ent, in
// snapshot mode and hashes the encoding.
func (s *encState) snapshotHash(ent *entityInfo, v reflect.Value) (uint64, error) {
	b := s.scratch[:0]
	var err error
	if v.Kind() == reflect.Pointer {
		// The pointer is held in the pooled state: no copy of v on the heap.
		s.slot = v.UnsafePointer()
		b, err = ent.inner.enc(s, b, unsafe.Pointer(&s.slot))
		s.slot = nil
	} else {
		c := reflect.New(v.Type())
		c.Elem().Set(v)
		b, err = ent.inner.enc(s, b, c.UnsafePointer())
	}
	h := s.hash(b)
	s.scratch = b[:0]
	return h, err
}

// entitySnap is a snapshot: an entity and the hash of its repository version.
type entitySnap struct {
	key  entityKey
	hash uint64
}

// entityHasher takes the snapshots an entity cache memoizes for one
// registry's entity type.
type entityHasher struct {
	reg *Registry
	ent *entityInfo
}

// snapshot returns the snapshot hash of a cached value v and the snapshots of
// the entities nested in it, which a load records in its tracker as it would
// when it took the snapshot itself.
func (h *entityHasher) snapshot(v reflect.Value) (uint64, []entitySnap, error) {
	s := h.reg.getEnc(nil, modeSnapshot)
	defer h.reg.putEnc(s)
	hv, err := s.snapshotHash(h.ent, v)
	return hv, slices.Clone(s.nested), err
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
		found, err := ent.repo.fetch(ctx, ids, ent.hasher)
		if err != nil {
			return err
		}
		for _, id := range ids {
			key := entityKey{ent.t, id}
			f, ok := found[id]
			switch {
			case !ok:
				tr.markKnown(key) // new: not in the repository
			case f.snap != nil:
				tr.recordSnap(key, f.snap)
			default:
				if err := r.snapshot(tr, ent, id, f.v); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
