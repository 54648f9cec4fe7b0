package session

import (
	"context"
	"fmt"
	"strings"
)

// StoredValue describes one value a session holds in the store, for admin tools.
type StoredValue struct {
	// Key is the value's logical key: "<kind>:<name>" (user values, bags, the flash
	// bag, session-scoped objects), without the session's storage ID.
	Key string
	// Size is the stored size in bytes.
	Size int
}

// Entries lists the values a session holds in the store (by ID or hash, as
// [Manager.Session]), reading them in batches. An unknown session matches
// ErrNotFound.
func (m *Manager) Entries(ctx context.Context, idOrHash string) ([]StoredValue, error) {
	storageID, err := m.storageIDOf(ctx, idOrHash)
	if err != nil {
		return nil, err
	}
	var keys []string
	for k, err := range m.data.Tagged(ctx, storageID) {
		if err != nil {
			return nil, fmt.Errorf("session: entries: %w", err)
		}
		keys = append(keys, k)
	}
	out := make([]StoredValue, 0, len(keys))
	for len(keys) > 0 {
		batch := keys[:min(len(keys), 100)]
		keys = keys[len(batch):]
		entries, err := m.data.GetMany(ctx, batch)
		if err != nil {
			return nil, fmt.Errorf("session: entries: %w", err)
		}
		for _, e := range entries {
			if e.Exists() {
				out = append(out, StoredValue{Key: strings.TrimPrefix(e.Key, storageID+":"), Size: len(e.Value)})
			}
		}
	}
	return out, nil
}

// Size is the number of bytes a session's values take in the store (its
// metadata not counted). An unknown session matches ErrNotFound.
func (m *Manager) Size(ctx context.Context, idOrHash string) (int, error) {
	entries, err := m.Entries(ctx, idOrHash)
	n := 0
	for _, e := range entries {
		n += e.Size
	}
	return n, err
}

func (m *Manager) storageIDOf(ctx context.Context, idOrHash string) (string, error) {
	hash, err := m.hashOf(idOrHash)
	if err != nil {
		return "", err
	}
	e, err := m.meta.Get(ctx, hash)
	if err != nil {
		return "", fmt.Errorf("session %s: %w", short(hash), err)
	}
	md, err := decodeMetadata(e.Value)
	if err != nil {
		return "", fmt.Errorf("session %s: %w", short(hash), err)
	}
	return md.storageID, nil
}
