package session

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// Metadata describes a session's lifetime.
type Metadata struct {
	// Ref is the session's public reference ([Session.Ref]): the handle of admin
	// tools ([Manager.Session] accepts it). It does not let anyone use the
	// session: the store keeps only a hash of the ID's secret part.
	Ref string
	// Created is when the session started.
	Created time.Time
	// LastUsed is the last activity as stored (see [Session.LastActivity]).
	LastUsed time.Time
	// Lifetime is the session's own inactivity timeout ([Session.SetLifetime],
	// remember me), 0 when it has the manager's.
	Lifetime time.Duration
	// Expires is when the session ends if not used again (the earlier of the
	// inactivity timeout and the absolute lifetime); zero when it never does.
	Expires time.Time
	// Tags are the session's tags.
	Tags []string
	// Device is the User-Agent of the session's last recorded activity
	// (truncated to 200 bytes).
	Device string
	// Address is the client's address as Config.ClientAddress records it ("" by
	// default).
	Address string
}

// Touch makes the next commit rewrite the session's activity (last use) even if
// the update threshold has not passed. It is ErrNotStarted without a session.
func (s *Session) Touch(ctx context.Context) error {
	if err := s.acquire(ctx, true, true); err != nil {
		return err
	}
	defer s.unlock()
	s.st.touch = true
	return nil
}

// SetLifetime gives the session its own inactivity timeout d ("remember me": e.g.
// 30 days) and a persistent cookie of that Max-Age, refreshed whenever its
// activity is written; d = 0 goes back to the manager's InactivityTimeout and
// CookieLifetime. Config.AbsoluteLifetime still applies. The change is written
// at the next commit (with a new cookie). It is ErrNotStarted without a
// session.
func (s *Session) SetLifetime(ctx context.Context, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("session: SetLifetime(%v): negative", d)
	}
	if err := s.acquire(ctx, true, true); err != nil {
		return err
	}
	defer s.unlock()
	st := s.st
	d = d.Truncate(time.Millisecond)
	if st.meta.timeout == d {
		return nil
	}
	st.meta.timeout = d
	st.lifetimeSet, st.metaDirty = true, true
	st.touch = true // the expiry moves
	if st.request && !st.headersDone {
		st.needCookie = true
	}
	return nil
}

// LastActivity is the last time the session was used: for the current request's
// session the time of this request, for a session opened by an admin tool the
// stored time. It is ErrNotStarted without a session.
func (s *Session) LastActivity(ctx context.Context) (time.Time, error) {
	if err := s.acquire(ctx, false, true); err != nil {
		return time.Time{}, err
	}
	defer s.unlock()
	return s.st.act.last, nil
}

// Metadata returns the session's metadata record. It is ErrNotStarted without a
// session.
func (s *Session) Metadata(ctx context.Context) (Metadata, error) {
	if err := s.acquire(ctx, false, true); err != nil {
		return Metadata{}, err
	}
	defer s.unlock()
	st := s.st
	return st.m.metadataOf(st.ref, &st.meta, &st.act, st.storedLastOrNow(), st.tags), nil
}

// storedLastOrNow is the last activity as stored, or the start for a session not
// stored yet. Lock held.
func (lv *live) storedLastOrNow() time.Time {
	if lv.persisted {
		return lv.storedLast
	}
	return lv.act.last
}

// AddTag tags the session; [Manager.ByTag] and [Manager.DestroyByTag] find it by
// the tag (e.g. "user:42" to log a user out everywhere). Tags use the cache key
// alphabet ([A-Za-z0-9] and "-_.:@", up to 250 bytes); anything else is an error
// matching cache.ErrInvalidKey, so encode other values (hex, base64url) first.
// The change is written at the next commit. It is ErrNotStarted without a
// session.
func (s *Session) AddTag(ctx context.Context, tag string) error {
	return s.changeTag(ctx, tag, true)
}

// RemoveTag removes a tag; removing an absent tag does nothing.
func (s *Session) RemoveTag(ctx context.Context, tag string) error {
	return s.changeTag(ctx, tag, false)
}

func (s *Session) changeTag(ctx context.Context, tag string, add bool) error {
	if err := cache.ValidateKey(tag); err != nil {
		return fmt.Errorf("session: tag: %w", err)
	}
	if err := s.acquire(ctx, true, true); err != nil {
		return err
	}
	defer s.unlock()
	st := s.st
	i := slices.Index(st.tags, tag)
	switch {
	case add && i < 0:
		st.tags = append(slices.Clip(st.tags), tag)
		st.tagDel = slices.DeleteFunc(st.tagDel, func(t string) bool { return t == tag })
		st.tagAdd = append(st.tagAdd, tag)
	case !add && i >= 0:
		st.tags = slices.Delete(slices.Clone(st.tags), i, i+1)
		st.tagAdd = slices.DeleteFunc(st.tagAdd, func(t string) bool { return t == tag })
		st.tagDel = append(st.tagDel, tag)
	}
	return nil
}

// Tags returns the session's tags. It is ErrNotStarted without a session.
func (s *Session) Tags(ctx context.Context) ([]string, error) {
	if err := s.acquire(ctx, false, true); err != nil {
		return nil, err
	}
	defer s.unlock()
	return slices.Clone(s.st.tags), nil
}

// timeout is the session's inactivity timeout: its own (remember me) or the
// manager's; 0 means none.
func (m *Manager) timeout(md *metadata) time.Duration {
	if md.timeout > 0 {
		return md.timeout
	}
	return m.cfg.timeout
}

// expiry is when a session ends if unused after last (zero: never).
func (m *Manager) expiry(md *metadata, last time.Time) time.Time {
	var t time.Time
	if d := m.timeout(md); d > 0 {
		t = last.Add(d)
	}
	if a := m.cfg.absolute; a > 0 {
		if end := md.created.Add(a); t.IsZero() || end.Before(t) {
			t = end
		}
	}
	return t
}

// storeExpiry is the expiry written to the store: the session's expiry, or
// cache.NoExpiry for a session that never expires.
func (m *Manager) storeExpiry(md *metadata, last time.Time) time.Time {
	if t := m.expiry(md, last); !t.IsZero() {
		return t
	}
	return cache.NoExpiry
}

func (m *Manager) metadataOf(ref string, md *metadata, act *activity, last time.Time, tags []string) Metadata {
	return Metadata{
		Ref:      ref,
		Created:  md.created,
		LastUsed: last,
		Lifetime: md.timeout,
		Expires:  m.expiry(md, last),
		Tags:     slices.Clone(tags),
		Device:   act.device,
		Address:  act.address,
	}
}
