package plain

import (
	"reflect"
	"unsafe"
)

// Equal returns a function reporting whether the values of type t at p and q
// are identical: every boolean and number bit for bit (so +0 and -0 differ,
// and a NaN equals the same NaN), every string by its content, every
// time.Time in all its parts (its instant and its location). Identical values
// encode to the same bytes by any encoder that looks only at the value.
//
// It returns nil when t is not a [Type], or when refuse reports true for t or
// for any type reached inside it (time.Time is not asked about): a caller
// refuses the types it does not encode from their fields alone, such as types
// with marshalling methods.
//
// Equal is meant for startup: it walks t once, and the function it returns
// compares strings one by one and the memory between them in runs.
func Equal(t reflect.Type, refuse func(reflect.Type) bool) func(p, q unsafe.Pointer) bool {
	if !Type(t) {
		return nil
	}
	var l layout
	if !l.add(t, 0, refuse) {
		return nil
	}
	raws, strs := l.raws, l.strs
	return func(p, q unsafe.Pointer) bool {
		for _, o := range strs {
			if *(*string)(unsafe.Add(p, o)) != *(*string)(unsafe.Add(q, o)) {
				return false
			}
		}
		for _, r := range raws {
			a := unsafe.String((*byte)(unsafe.Add(p, r.off)), r.n)
			b := unsafe.String((*byte)(unsafe.Add(q, r.off)), r.n)
			if a != b {
				return false
			}
		}
		return true
	}
}

// layout is where a type's strings are and the runs of memory holding its
// other values (padding excluded).
type layout struct {
	raws []span
	strs []uintptr
}

type span struct{ off, n uintptr }

func (l *layout) add(t reflect.Type, off uintptr, refuse func(reflect.Type) bool) bool {
	if t == timeType {
		l.raw(off, t.Size())
		return true
	}
	if refuse != nil && refuse(t) {
		return false
	}
	switch {
	case t.Kind() == reflect.String:
		l.strs = append(l.strs, off)
	case t.Kind() == reflect.Array:
		for i := range t.Len() {
			if !l.add(t.Elem(), off+uintptr(i)*t.Elem().Size(), refuse) {
				return false
			}
		}
	case t.Kind() == reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if !l.add(f.Type, off+f.Offset, refuse) {
				return false
			}
		}
	default: // booleans and numbers
		l.raw(off, t.Size())
	}
	return true
}

// raw adds n bytes at off, joined to the run before them when they follow it.
func (l *layout) raw(off, n uintptr) {
	if n == 0 {
		return
	}
	if k := len(l.raws) - 1; k >= 0 && l.raws[k].off+l.raws[k].n == off {
		l.raws[k].n += n
		return
	}
	l.raws = append(l.raws, span{off, n})
}
