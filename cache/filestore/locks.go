package filestore

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// A lock taken with Lock is a file in the namespace's locks folder, named after
// the lock and written in the record format: the lock's name as key, its
// deadline as expiry, the owner's token as the field "token". It is changed
// under the same file locks as a record, so processes sharing the folder exclude
// each other. Lock files are not fsynced: after a machine crash a lock is free
// (or held until its deadline).
const tokenField = "token"

// Lock takes the lock called name for ttl and returns the owner token.
func (s *Store) Lock(ctx context.Context, name string, ttl time.Duration) (string, error) {
	if err := cache.ValidateKey(name); err != nil {
		return "", fmt.Errorf("filestore: lock: %w", err)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("filestore: lock %q: ttl %v is not positive", name, ttl)
	}
	if err := s.check(ctx, "lock"); err != nil {
		return "", err
	}
	h, err := s.hold(ctx, s.locksDir(), fileName(name), true)
	if err != nil {
		return "", fail("lock", name, err)
	}
	defer h.release()
	now := time.Now()
	cur := s.current(h)
	if cur != nil && !cur.expired(now) {
		return "", fmt.Errorf("filestore: lock %q: %w", name, cache.ErrLocked)
	}
	token, v := crand.Text(), s.sh.version(0, now)
	data, err := encode(&record{key: name, version: v, expires: unixNano(now.Add(ttl)),
		fields: []cache.Field{{Name: tokenField, Value: []byte(token), Version: v}}})
	if err != nil {
		return "", fmt.Errorf("filestore: lock %q: %w", name, err)
	}
	if err := h.replace(data, false, s.sh.syncFile); err != nil {
		return "", fail("lock", name, err)
	}
	return token, nil
}

// Unlock releases the lock if token still owns it.
func (s *Store) Unlock(ctx context.Context, name, token string) (bool, error) {
	if err := cache.ValidateKey(name); err != nil {
		return false, fmt.Errorf("filestore: unlock: %w", err)
	}
	if err := s.check(ctx, "unlock"); err != nil {
		return false, err
	}
	h, err := s.hold(ctx, s.locksDir(), fileName(name), false)
	if err != nil || h == nil {
		if err != nil {
			err = fail("unlock", name, err)
		}
		return false, err
	}
	defer h.release()
	cur := s.current(h)
	if cur == nil || cur.expired(time.Now()) {
		return false, nil
	}
	if i := cur.field(tokenField); i < 0 || string(cur.fields[i].Value) != token {
		return false, nil
	}
	if err := h.remove(); err != nil {
		return false, fail("unlock", name, err)
	}
	return true, nil
}
