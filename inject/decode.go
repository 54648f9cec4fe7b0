package inject

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"slices"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
)

type decState struct {
	reg      *Registry
	b        []byte // the input
	off      int    // the next byte to read
	depth    int    // containers open around the next value
	maxDepth int
	tr       *Tracker
	refs     []pendingRef
	fixups   []func()
	arena    []byte // the block decoded strings are copied into (wire.go)
	extMap   bool   // a map was read from an extension's payload (mapHeader)

	fb  *msgpack.Decoder // fallback leaves
	fbr bytes.Reader
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
	s := &decState{reg: r, maxDepth: r.maxDepth}
	s.fb = msgpack.NewDecoder(&s.fbr)
	return s
}

func (r *Registry) getDec(data []byte, tr *Tracker) *decState {
	s := r.decPool.Get().(*decState)
	s.b, s.off, s.depth, s.tr, s.extMap = data, 0, 0, tr, false
	return s
}

func (r *Registry) putDec(s *decState) {
	s.b, s.tr = nil, nil
	s.fbr.Reset(nil)
	clear(s.refs)
	s.refs = s.refs[:0]
	clear(s.fixups)
	s.fixups = s.fixups[:0]
	// s.arena stays: the strings handed out lie below its length, later ones
	// are appended after them.
	r.decPool.Put(s)
}

// decodeRoot reads the plan's object (the struct at p) from the whole input:
// a map of its fields. Fields present in the input are replaced, the others
// keep their value.
func (d *decState) decodeRoot(n *node, p unsafe.Pointer) error {
	at := d.off
	c, err := d.code()
	if err != nil {
		return err
	}
	l, ok, err := d.mapLenCode(at, c)
	switch {
	case err != nil:
		return err
	case !ok:
		// An object is always stored as a msgpack map. Anything else at the
		// root is refused, so that the object loads fresh instead of zeroed.
		return d.fail(at, "stored value is not a map (msgpack code 0x%02x)", c)
	case l < 0:
		return d.fail(at, "stored value is nil")
	}
	if err := d.decodeFields(n, at, l, p); err != nil {
		return err
	}
	if d.extMap {
		// A map read from an extension's payload (as msgpack reads one) leaves
		// the cursor out of step with the values: require, as
		// msgpackcheck.Prepare does before msgpack decodes, that the input is
		// one well-formed value.
		if end, err := d.skipValue(0, len(d.b), 0, false); err != nil || end != len(d.b) {
			return d.fail(0, "the input is not one well-formed value")
		}
		return nil
	}
	if d.off != len(d.b) {
		return d.fail(d.off, "%d bytes after the value", len(d.b)-d.off)
	}
	return nil
}

// decodeEntity reads an entity of n's type into the slot at p: a value of the
// entity type when slot is invalid, else slot (an interface holding it).
func (d *decState) decodeEntity(n *node, p unsafe.Pointer, slot reflect.Value) error {
	if c, ok := d.peek(); ok && c == cNil {
		d.off++
		if slot.IsValid() {
			slot.SetZero()
		} else {
			reflect.NewAt(n.t, p).Elem().SetZero()
		}
		return nil
	}
	at := d.off
	l, err := d.arrayLen()
	if err != nil {
		return err
	}
	if l != 2 {
		return incompatible(n.t, "entity is not a [kind, value] pair")
	}
	if err := d.enter(at, l); err != nil {
		return err
	}
	defer func() { d.depth-- }()
	tag, err := d.uint64()
	if err != nil {
		return err
	}
	switch tag {
	case entityRefTag:
		id, err := d.string()
		if err != nil {
			return err
		}
		if id == "" {
			return incompatible(n.t, "entity reference without an ID")
		}
		if !slot.IsValid() {
			slot = reflect.NewAt(n.t, p).Elem()
		}
		slot.SetZero()
		d.refs = append(d.refs, pendingRef{ent: n.ent, id: id, slot: slot})
		return nil
	case entityWholeTag:
		q := p
		var val reflect.Value
		if slot.IsValid() {
			val = reflect.New(n.ent.t)
			q = val.UnsafePointer()
		}
		before := len(d.refs)
		dec := n.ent.inner.dec
		if slot.IsValid() {
			dec = n.ent.inner.decz
		}
		if err := dec(d, q); err != nil {
			return err
		}
		if slot.IsValid() {
			slot.Set(val.Elem())
			if len(d.refs) > before && n.ent.t.Kind() != reflect.Pointer {
				d.fixups = append(d.fixups, func() { slot.Set(val.Elem()) })
			}
		}
		if d.tr != nil {
			if e := entityAt(n.ent, q); e != nil && !isNilish(reflect.NewAt(n.ent.t, q).Elem()) && e.EntityID() != "" {
				d.tr.markKnown(entityKey{n.ent.t, e.EntityID()})
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
		// One group per entity type (usually one), the distinct IDs of each.
		type group struct {
			ent   *entityInfo
			ids   []string
			set   map[string]bool // ids, once there are many
			found map[string]entityValue
		}
		var groups []group
		for _, r := range s.refs {
			i := slices.IndexFunc(groups, func(g group) bool { return g.ent == r.ent })
			if i < 0 {
				i = len(groups)
				groups = append(groups, group{ent: r.ent})
			}
			g := &groups[i]
			switch {
			case g.set != nil:
				if g.set[r.id] {
					continue
				}
				g.set[r.id] = true
			case slices.Contains(g.ids, r.id): // a basket's worth: a scan is cheaper than a map
				continue
			case len(g.ids) == 32:
				g.set = make(map[string]bool, 64)
				for _, id := range g.ids {
					g.set[id] = true
				}
				g.set[r.id] = true
			}
			g.ids = append(g.ids, r.id)
		}
		for i := range groups {
			g := &groups[i]
			if g.ent.repo == nil {
				return fmt.Errorf("inject: no repository for entity type %s", g.ent.t)
			}
			var h *entityHasher
			if s.tr != nil {
				h = g.ent.hasher
				s.tr.grow(len(g.ids))
			}
			res, err := g.ent.repo.fetch(ctx, g.ids, h)
			if err != nil {
				return err
			}
			g.found = res
			for _, id := range g.ids {
				f, ok := res[id]
				switch {
				case !ok:
					s.reg.logger.WarnContext(ctx, "fxsession: a stored entity reference no longer resolves; it loads as absent",
						"entity", g.ent.name, "id", id)
				case s.tr == nil:
				case f.snap != nil:
					s.tr.recordSnap(entityKey{g.ent.t, id}, f.snap)
				default:
					if err := s.reg.snapshot(s.tr, g.ent, id, f.v); err != nil {
						return err
					}
				}
			}
		}
		for _, r := range s.refs {
			var v reflect.Value
			for i := range groups {
				if groups[i].ent == r.ent {
					v = groups[i].found[r.id].v
					break
				}
			}
			if !v.IsValid() {
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
