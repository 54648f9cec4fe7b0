package inject

import (
	"reflect"
	"unsafe"
)

// Tracker remembers, for one stored object, what is known about the entities it
// holds: the hash of each entity's repository version (taken when a reference was
// resolved on load, or when an entity of unknown state was compared with its
// repository on encode), and which entities were stored whole. [Plan.Encode] writes
// an entity as a reference exactly when its current encoding hashes to its
// repository version's.
//
// Use one Tracker per object and lifetime: pass the tracker filled by Decode to
// the Encode that saves the same object. A Tracker is not safe for concurrent use.
// The zero value and nil are empty trackers (nil records nothing).
type Tracker struct {
	m map[entityKey]entityState
}

type entityKey struct {
	t  reflect.Type
	id string
}

type entityState struct {
	repoHash uint64
	hasRepo  bool
	base     unsafe.Pointer // snapMemo.base of the snapshot, if any
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker { return &Tracker{} }

// Len reports how many entities the tracker knows.
func (t *Tracker) Len() int {
	if t == nil {
		return 0
	}
	return len(t.m)
}

func (t *Tracker) get(k entityKey) (entityState, bool) {
	if t == nil {
		return entityState{}, false
	}
	st, ok := t.m[k]
	return st, ok
}

func (t *Tracker) set(k entityKey, st entityState) {
	if t.m == nil {
		t.m = map[entityKey]entityState{}
	}
	t.m[k] = st
}

// grow makes room for n entities in a tracker that has none yet.
func (t *Tracker) grow(n int) {
	if t.m == nil {
		t.m = make(map[entityKey]entityState, n)
	}
}

// recordSnap records a snapshot an entity cache memoized: the entity's and
// those of the entities nested in it.
func (t *Tracker) recordSnap(k entityKey, m *snapMemo) {
	for _, n := range m.nested {
		t.recordRepo(n.key, n.hash)
	}
	if t != nil {
		t.set(k, entityState{repoHash: m.hash, hasRepo: true, base: m.base})
	}
}

func (t *Tracker) recordRepo(k entityKey, h uint64) {
	if t == nil {
		return
	}
	t.set(k, entityState{repoHash: h, hasRepo: true})
}

// markKnown records an entity that needs no repository comparison: it was stored
// whole, or the repository does not have it.
func (t *Tracker) markKnown(k entityKey) {
	if t == nil {
		return
	}
	if _, ok := t.m[k]; !ok {
		t.set(k, entityState{})
	}
}
