package session

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/fxsession/fxsession/cache"
)

// checkKey validates a user or extension key.
func checkKey(key string) error {
	if err := cache.ValidateKey(key); err != nil {
		return fmt.Errorf("session: key: %w", err)
	}
	if len(key) > maxUserKey {
		return fmt.Errorf("session: key: %w: %d bytes, longer than %d", cache.ErrInvalidKey, len(key), maxUserKey)
	}
	return nil
}

// Put stores v (encoded with msgpack) under key. It is staged and written at the
// next commit. Keys use the cache key alphabet ([A-Za-z0-9] and "-_.:@"), up to
// 240 bytes; the encoded value is limited by Config.MaxPayload. It is
// ErrNotStarted without a session.
func (s *Session) Put(ctx context.Context, key string, v any) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if s == nil || s.st == nil {
		return ErrNoSession
	}
	b, err := encodeValue(key, v, s.st.m.cfg.maxPayload)
	if err != nil {
		return err
	}
	if err := s.acquire(ctx, true, true); err != nil {
		return err
	}
	defer s.unlock()
	s.st.stage(prefixValue+key, b, false)
	return nil
}

// Get decodes the value stored under key into dst (a pointer). A missing key is
// an error matching ErrNotFound; bytes that do not fit dst give an error matching
// ErrDecode. It is ErrNotStarted without a session.
func (s *Session) Get(ctx context.Context, key string, dst any) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := s.use(); err != nil {
		return err
	}
	b, err := s.read(ctx, prefixValue+key)
	s.unlock()
	if err != nil {
		return err
	}
	return decodeValue(key, b, dst)
}

// Has reports whether a value is stored under key (false without a session).
func (s *Session) Has(ctx context.Context, key string) (bool, error) {
	if err := checkKey(key); err != nil {
		return false, err
	}
	if err := s.use(); err != nil {
		return false, err
	}
	defer s.unlock()
	_, err := s.read(ctx, prefixValue+key)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrNotStarted):
		return false, nil
	}
	return false, err
}

// Remove deletes the value under key at the next commit (nothing without a
// session).
func (s *Session) Remove(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := s.acquire(ctx, true, false); err != nil {
		return err
	}
	defer s.unlock()
	if s.st.started() {
		s.st.stage(prefixValue+key, nil, true)
	}
	return nil
}

// read returns the bytes of a field: staged, or as the record was read or last
// written. It never touches the store beyond the resume. Lock held.
func (s *Session) read(ctx context.Context, name string) ([]byte, error) {
	if err := s.enter(ctx, false); err != nil {
		return nil, err
	}
	st := s.st
	if !st.started() {
		return nil, ErrNotStarted
	}
	b, _, ok := st.field(name)
	if !ok {
		return nil, fmt.Errorf("session: %q: %w", name, ErrNotFound)
	}
	return b, nil
}

// field returns a field's bytes and stored version (0 when only staged): the
// staged change, else the record's field. Lock held, session started.
func (st *state) field(name string) ([]byte, cache.Version, bool) {
	if v, ok := st.staged[name]; ok {
		if v.del {
			return nil, 0, false
		}
		return v.b, 0, true
	}
	for _, f := range st.fields {
		if f.Name == name {
			return f.Value, f.Version, true
		}
	}
	return nil, 0, false
}

// storedField returns the record's field as last read or written (staged
// changes aside). Lock held.
func (st *state) storedField(name string) (cache.Field, bool) {
	for _, f := range st.fields {
		if f.Name == name {
			return f, true
		}
	}
	return cache.Field{}, false
}

// setField records a field as the store now holds it (nil value and version
// 0: absent). Lock held.
func (st *state) setField(name string, b []byte, v cache.Version, present bool) {
	i := slices.IndexFunc(st.fields, func(f cache.Field) bool { return f.Name == name })
	switch {
	case !present && i >= 0:
		st.fields = slices.Delete(st.fields, i, i+1)
	case !present:
	case i >= 0:
		st.fields[i].Value, st.fields[i].Version = b, v
	default:
		st.fields = append(st.fields, cache.Field{Name: name, Value: b, Version: v})
	}
}

func (st *state) stage(name string, b []byte, del bool) {
	if st.staged == nil {
		st.staged = make(map[string]staged)
	}
	st.staged[name] = staged{b: b, del: del}
}
