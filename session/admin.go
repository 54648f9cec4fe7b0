package session

import (
	"context"
	"fmt"
	"strings"
)

// StoredValue is one field a session's record holds in the store, for admin
// tools.
type StoredValue struct {
	// Key is the field's name in the record: "v:<key>" for a value
	// ([Session.Put]), "b:<name>" for a bag, "f" for the flash bag, "e:<name>"
	// for an extension's field (package scope's objects), "m" and "a" for the
	// session's metadata and activity.
	Key string
	// Kind is "value", "bag", "flashes", "object", "metadata" or "activity".
	Kind string
	// Name is the key without its kind prefix (the Put key, the bag's name, the
	// extension's name).
	Name string
	// Value is the stored bytes (msgpack).
	Value []byte
}

// Size is the stored size in bytes.
func (v StoredValue) Size() int { return len(v.Value) }

// Entries lists the fields a session's record holds (by reference or ID, as
// [Manager.Session]), in one store read. An unknown session matches
// ErrNotFound.
func (m *Manager) Entries(ctx context.Context, refOrID string) ([]StoredValue, error) {
	ref, verifier, err := refOf(refOrID)
	if err != nil {
		return nil, err
	}
	rec, err := m.store.Read(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", ref, err)
	}
	lv, err := m.open(rec, m.cfg.now())
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", ref, err)
	}
	if verifier != "" {
		if _, ok := lv.opens(verifier, m.cfg.now()); !ok {
			return nil, fmt.Errorf("session %s: the ID is not the session's current one: %w", ref, ErrNotFound)
		}
	}
	out := make([]StoredValue, 0, len(rec.Fields))
	for _, f := range rec.Fields {
		v := StoredValue{Key: f.Name, Name: f.Name, Value: f.Value}
		switch {
		case f.Name == fieldMeta:
			v.Kind = "metadata"
		case f.Name == fieldActivity:
			v.Kind = "activity"
		case f.Name == fieldFlash:
			v.Kind = "flashes"
		case strings.HasPrefix(f.Name, prefixValue):
			v.Kind, v.Name = "value", f.Name[len(prefixValue):]
		case strings.HasPrefix(f.Name, prefixBag):
			v.Kind, v.Name = "bag", f.Name[len(prefixBag):]
		case strings.HasPrefix(f.Name, prefixExt):
			v.Kind, v.Name = "object", f.Name[len(prefixExt):]
		default:
			v.Kind = "unknown"
		}
		out = append(out, v)
	}
	return out, nil
}

// Size is the number of bytes a session's record takes in the store (its
// fields' values). An unknown session matches ErrNotFound.
func (m *Manager) Size(ctx context.Context, refOrID string) (int, error) {
	entries, err := m.Entries(ctx, refOrID)
	n := 0
	for _, e := range entries {
		n += len(e.Value)
	}
	return n, err
}
