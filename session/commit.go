package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/internal/backoff"
	"github.com/fxsession/fxsession/internal/telemetry"
)

// open turns a record read from the store into a live session, checking that it
// is well formed and not expired at now (ErrNotFound).
func (m *Manager) open(rec cache.Record, now time.Time) (*live, error) {
	mf, ok := rec.Field(fieldMeta)
	if !ok {
		return nil, fmt.Errorf("%w: no metadata field", errCorrupt)
	}
	md, err := decodeMetadata(mf.Value)
	if err != nil {
		return nil, err
	}
	var act activity
	if af, ok := rec.Field(fieldActivity); ok {
		if act, err = decodeActivity(af.Value); err != nil {
			return nil, err
		}
	} else {
		act.last = md.created
	}
	if e := m.expiry(&md, act.last); !e.IsZero() && !e.After(now) {
		return nil, fmt.Errorf("session %s: expired: %w", rec.Key, ErrNotFound)
	}
	return &live{
		ref: rec.Key, meta: md, metaVer: mf.Version, act: act, storedLast: act.last,
		persisted: true, tags: rec.Tags, fields: rec.Fields,
	}, nil
}

// runHooks runs the OnCommit hooks, including hooks registered while they run.
func (st *state) runHooks(ctx context.Context) error {
	var errs []error
	for i := 0; ; i++ {
		st.mu.Lock()
		if st.readOnly || i >= st.hookCount() {
			st.mu.Unlock()
			return errors.Join(errs...)
		}
		fn := st.ext.hooks[i]
		st.mu.Unlock()
		if err := fn(ctx); err != nil {
			errs = append(errs, err)
		}
	}
}

// touchDue reports whether this commit writes the activity: on request, for a
// new session, or when the stored one is older than the threshold (with no
// threshold: older than this request's, so that a request writes it once, not
// at each commit point). Lock held.
func (st *state) touchDue(now time.Time) bool {
	switch {
	case st.touch || !st.persisted:
		return true
	case !st.request:
		return false
	case st.m.cfg.threshold > 0:
		return now.Sub(st.storedLast) >= st.m.cfg.threshold
	}
	return st.storedLast.Before(st.act.last)
}

// pending reports whether a commit would write anything. Lock held.
func (st *state) pending() bool {
	if st.readOnly || !st.started() {
		return false
	}
	if len(st.staged) > 0 || !st.persisted || st.metaDirty || len(st.tagAdd) > 0 || len(st.tagDel) > 0 {
		return true
	}
	for _, bs := range st.bags {
		if bs.dirty {
			return true
		}
	}
	if st.flash != nil && st.flash.dirty {
		return true
	}
	// The request's time (its load or start) rather than the clock's: a
	// request's threshold check needs no reading of the clock of its own.
	return st.touchDue(st.act.last)
}

// commit writes the staged changes, dirty bags, tags, metadata and (when due)
// the activity in one store write. Lock held. canSendCookie is false after the
// response headers went out: a session that still needs its cookie then cannot
// be saved.
func (st *state) commit(ctx context.Context, canSendCookie bool) error {
	st.metaWritten = false
	if st.readOnly || !st.started() {
		st.staged = nil
		return nil
	}
	if st.needCookie && !canSendCookie {
		st.staged = nil
		st.m.log.Error("session changed after the response headers were sent but its cookie was never sent; not saved",
			"session", st.ref)
		return nil
	}
	if err := st.stageBags(); err != nil {
		st.staged = nil
		return err
	}
	if !st.pending() {
		return nil
	}
	return st.write(ctx, nil)
}

// write sends the session's changes to the store in one Write, with extra (an
// extension's field written at once, for a session not stored yet) when given.
// A session not stored yet is created by it. On a conflict of the metadata
// (another request of the session wrote it) it reads the metadata again,
// applies this request's change on top and tries again. Lock held.
func (st *state) write(ctx context.Context, extra *cache.FieldWrite) error {
	tel := st.m.tel
	if tel == nil {
		return st.writeRecord(ctx, extra)
	}
	ctx, span := tel.Start(ctx, telemetry.SpanCommit)
	err := st.writeRecord(ctx, extra)
	tel.Committed(ctx, err)
	span.End(err)
	return err
}

// writeRecord is write without the telemetry.
func (st *state) writeRecord(ctx context.Context, extra *cache.FieldWrite) error {
	m := st.m
	b := backoff.Backoff{Min: 500 * time.Microsecond, Max: 16 * time.Millisecond}
	for attempt := 1; ; attempt++ {
		now := m.cfg.now()
		touch := st.touchDue(now)
		if touch && st.request {
			if st.act.last.Before(now) {
				st.act.last = now
			}
			st.recordDevice()
		}
		w := st.build(touch, extra)
		v, err := m.store.Write(ctx, st.ref, w)
		if err == nil {
			st.written(ctx, w, v, touch)
			return m.enforceCaps(ctx, w.AddTags, st.ref)
		}
		switch {
		case errors.Is(err, cache.ErrNotFound) && st.persisted:
			// Destroyed (or expired) while this request ran: nothing to update.
			m.log.Warn("session vanished while saving it (destroyed or expired concurrently)", "session", st.ref)
			st.gone()
			return nil
		case !errors.Is(err, cache.ErrConflict) || !st.persisted || attempt >= metaAttempts:
			return fmt.Errorf("session: saving %s: %w", st.ref, err)
		}
		if err := st.reloadMeta(ctx); err != nil {
			return err
		}
		if attempt > 1 && !b.Wait(ctx) {
			return fmt.Errorf("session: saving %s: %w", st.ref, ctx.Err())
		}
	}
}

// metaAttempts bounds the retries of a write whose metadata meets concurrent
// writers of the same session.
const metaAttempts = 16

// build makes the Write of the session's changes. Lock held.
func (st *state) build(touch bool, extra *cache.FieldWrite) cache.Write {
	m := st.m
	w := cache.Write{Create: !st.persisted}
	n := len(st.staged) + 3
	w.Fields = make([]cache.FieldWrite, 0, n)
	if !st.persisted {
		w.Fields = append(w.Fields, cache.SetIf(fieldMeta, st.meta.encode(), 0))
		w.AddTags = st.tags
	} else {
		if st.metaDirty {
			w.Fields = append(w.Fields, cache.SetIf(fieldMeta, st.meta.encode(), st.metaVer))
		}
		w.AddTags, w.RemoveTags = st.tagAdd, st.tagDel
	}
	if touch {
		w.Fields = append(w.Fields, cache.Set(fieldActivity, st.act.encode()))
		w.Expires = m.storeExpiry(&st.meta, st.act.last)
	}
	for name, v := range st.staged {
		if extra != nil && extra.Name == name {
			continue
		}
		if v.del {
			w.Fields = append(w.Fields, cache.Remove(name))
		} else {
			w.Fields = append(w.Fields, cache.Set(name, v.b))
		}
	}
	if extra != nil {
		w.Fields = append(w.Fields, *extra)
	}
	return w
}

// written records a successful Write of version v. Lock held.
func (st *state) written(ctx context.Context, w cache.Write, v cache.Version, touch bool) {
	for _, f := range w.Fields {
		st.setField(f.Name, f.Value, v, !f.Remove)
		if f.Name == fieldMeta {
			st.metaVer = v
		}
	}
	if touch {
		st.storedLast = st.act.last
		st.metaWritten = true
	}
	m := st.m
	if st.created {
		st.created = false
		m.tel.SessionStarted(ctx)
		m.emit(Event{Kind: EventStarted, Ref: st.ref, Time: st.act.last, Metadata: m.metadataOf(st.ref, &st.meta, &st.act, st.act.last, st.tags)})
	} else if st.renewal != "" {
		m.tel.SessionRenewed(ctx, st.renewal)
		m.log.Info("session ID renewed", "session", st.ref, "reason", st.renewal)
		m.emit(Event{Kind: EventRenewed, Ref: st.ref, Reason: st.renewal, Time: st.meta.renewed,
			Metadata: m.metadataOf(st.ref, &st.meta, &st.act, st.storedLastOrNow(), st.tags)})
	}
	st.renewal, st.lifetimeSet = "", false
	st.baseRenewed = st.meta.renewed
	st.persisted = true
	st.metaDirty, st.touch = false, false
	st.tagAdd, st.tagDel = nil, nil
	st.staged = nil
}

// gone records that the session's record vanished under this request. Lock held.
func (st *state) gone() {
	st.phase = phaseDestroyed
	st.live = nil
	st.staged = nil
	st.needCookie = false
	st.expire = st.request
}

// reloadMeta reads the stored metadata after a conflict and applies this
// request's changes on top: a renewal keeps its new verifier. Lock held.
func (st *state) reloadMeta(ctx context.Context) error {
	rec, err := st.m.store.Read(ctx, st.ref, fieldMeta)
	if errors.Is(err, cache.ErrNotFound) {
		return nil // the next write reports the vanished session
	}
	if err != nil {
		return fmt.Errorf("session: saving %s: %w", st.ref, err)
	}
	return st.refreshMeta(rec)
}

// refreshMeta takes the metadata of a freshly read record, keeping this
// request's own changes (a renewal's verifier, a lifetime). Lock held.
func (st *state) refreshMeta(rec cache.Record) error {
	f, ok := rec.Field(fieldMeta)
	if !ok {
		return fmt.Errorf("session: saving %s: %w: no metadata", st.ref, errCorrupt)
	}
	fresh, err := decodeMetadata(f.Value)
	if err != nil {
		return fmt.Errorf("session: saving %s: %w", st.ref, err)
	}
	own := st.meta
	switch {
	case st.renewal == ReasonRenew:
		// An explicit renewal (login) wins: the new ID must be the only one.
		fresh.verifier, fresh.renewed = own.verifier, own.renewed
		fresh.previous, fresh.previousUntil = own.previous, own.previousUntil
	case st.renewal == ReasonRotation && fresh.renewed.Equal(st.baseRenewed):
		fresh.verifier, fresh.renewed = own.verifier, own.renewed
		fresh.previous, fresh.previousUntil = own.previous, own.previousUntil
	case st.renewal == ReasonRotation:
		// Another request rotated (or renewed) meanwhile: keep its ID. This
		// request's cookie still opens the session for the grace period, and
		// the browser learns the new ID from the other response.
		st.renewal = ""
		st.id = st.cookieID
		st.needCookie = false
	}
	if st.lifetimeSet {
		fresh.timeout = own.timeout
	}
	st.meta, st.metaVer = fresh, f.Version
	st.baseRenewed = fresh.renewed
	st.metaDirty = st.renewal != "" || st.lifetimeSet
	st.setField(fieldMeta, f.Value, f.Version, true)
	return nil
}

// writeField writes an extension's field at once, only if its stored version is
// expect (0: absent), creating the session's record first when it is new (in
// the same store write). Lock held, session started.
func (st *state) writeField(ctx context.Context, name string, value []byte, expect cache.Version) (cache.Version, error) {
	if st.request && st.headersDone && st.needCookie {
		return 0, fmt.Errorf("session: saving a new session: %w", ErrHeadersSent)
	}
	fw := cache.SetIf(name, value, expect)
	if st.persisted {
		// Only the field: the request's other changes wait for the commit.
		v, err := st.m.store.Write(ctx, st.ref, cache.Write{Fields: []cache.FieldWrite{fw}})
		if errors.Is(err, cache.ErrNotFound) {
			st.gone()
			return 0, fmt.Errorf("session: field %q: the session was destroyed: %w", name, ErrNotStarted)
		}
		if err != nil {
			return 0, fmt.Errorf("session: field %q: %w", name, err)
		}
		st.setField(name, value, v, true)
		delete(st.staged, name)
		return v, nil
	}
	if err := st.stageBags(); err != nil {
		return 0, err
	}
	if err := st.write(ctx, &fw); err != nil {
		return 0, err
	}
	f, _ := st.storedField(name)
	return f.Version, nil
}
