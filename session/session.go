package session

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/internal/telemetry"
)

// Session is one visitor's session as seen by one request (or by an admin tool).
// The middleware puts it into the request's context ([FromContext]); it starts
// lazily and is resumed from the cookie on first use. All methods are safe for
// concurrent use. A nil *Session (FromContext outside the middleware) answers
// every call with an error matching [ErrNoSession].
//
// A session is one record in the store: resuming it reads the whole record in
// one round trip, and values, bags and objects are decoded only when asked for.
// Writes are staged and reach the store at the next commit point — just before
// the response headers go out, and again when the handler returns — as one
// write of the fields that changed. The handler's return ends the request: a
// change after it (from a goroutine the handler left running) fails with
// [ErrRequestEnded] rather than go unsaved.
type Session struct {
	st *state
	ro bool // a read-only view
}

// phase is where a session stands in its request.
type phase uint8

const (
	phaseNone      phase = iota // no session (no cookie, or it resolved to nothing)
	phaseLazy                   // a well-formed cookie, not looked up yet
	phaseResumed                // loaded from the store
	phaseNew                    // started in this request
	phaseDestroyed              // destroyed in this request
)

// staged is a field waiting for the next commit; del marks a removal.
type staged struct {
	b   []byte
	del bool
}

// state is a session's state during one request, shared by its handles.
type state struct {
	m  *Manager
	mu sync.Mutex
	// life holds lifeUsed, set by every method of the session (a request whose
	// session was never used commits without taking the lock), and lifeEnded,
	// set by the request's last commit point (changes are refused after it).
	life atomic.Uint32

	// The flags sit together, beside life, to keep the request state small.
	phase       phase
	needCookie  bool // the client has not been given the current ID yet
	expire      bool // destroyed, or the cookie named no live session: expire it
	exposed     bool // the response depends on a session: mark it private
	metaWritten bool // the last commit wrote the activity (refresh a persistent cookie)

	// Request sessions only.
	request     bool
	readOnly    bool
	stateless   bool
	warned      bool
	headersDone bool  // the first commit point passed
	aborted     bool  // the error handler answered the request
	src         uint8 // where the request's ID came from: srcNone, srcCookie, srcHeader

	cookieID string // the well-formed ID from the request's cookie
	// live is the started (or resumed) session's data; nil without one, so that
	// a request that never has a session allocates little.
	*live

	owner  *reqState         // the middleware's request state (request sessions only)
	staged map[string]staged // field name -> change; survives Start (an extension may stage before it)
	ext    *extensions
	req    *http.Request
}

// live is a started session's data.
type live struct {
	id  string // the full ID; "" when an admin tool opened the session by reference
	ref string

	meta       metadata
	metaVer    cache.Version // version of the stored m field; 0 before the record exists
	act        activity
	storedLast time.Time // the last activity as stored
	persisted  bool      // the record exists in the store
	metaDirty  bool      // m must be written (renewal, lifetime)
	touch      bool      // Touch: write the activity at the next commit

	tags   []string // the session's tags, staged changes applied
	tagAdd []string // staged tag changes
	tagDel []string
	fields []cache.Field // the record's fields as last read or written
	bags   map[string]*bagState
	flash  *bagState
	// renewal is the reason of a renewal staged in this request ("": none,
	// ReasonRenew, ReasonRotation); reported when committed.
	renewal string
	// baseRenewed is the stored metadata's renewal time this request started
	// from: a rotation yields to one committed meanwhile by another request.
	baseRenewed time.Time
	// lifetimeSet: SetLifetime changed the session's own lifetime.
	lifetimeSet bool
	// created: the session was started by this request (Started event).
	created bool
}

// FromContext returns the request's session, put there by [Manager.Middleware]
// (or [Manager.NewContext]); ok is false outside them, and the *Session is then
// nil: its methods return errors matching ErrNoSession.
func FromContext(ctx context.Context) (*Session, bool) {
	s, ok := ctx.Value(ctxKey{}).(*Session)
	return s, ok
}

// ctxKey is the context key of the request's *Session.
type ctxKey struct{}

// use marks the session used and takes its lock; it fails on a nil session.
func (s *Session) use() error {
	if s == nil || s.st == nil {
		return ErrNoSession
	}
	s.st.life.Or(lifeUsed)
	s.st.mu.Lock()
	return nil
}

// The bits of state.life.
const (
	lifeUsed  = 1 << iota // a method of the session ran
	lifeEnded             // the request's last commit point passed
)

// used reports whether a method of the session ran.
func (st *state) used() bool { return st.life.Load()&lifeUsed != 0 }

// ended reports whether the request's last commit point passed.
func (st *state) ended() bool { return st.life.Load()&lifeEnded != 0 }

func (s *Session) unlock() { s.st.mu.Unlock() }

// acquire takes the session's lock, applies the route's rules (read-only,
// stateless) and resumes a lazy session; with started it also fails with
// ErrNotStarted when there is no session. On success the caller holds the lock
// and unlocks it.
func (s *Session) acquire(ctx context.Context, write, started bool) error {
	if err := s.use(); err != nil {
		return err
	}
	if err := s.enter(ctx, write); err != nil {
		s.unlock()
		return err
	}
	if started && !s.st.started() {
		s.unlock()
		return ErrNotStarted
	}
	return nil
}

// enter checks the route's rules and resumes the session when it is still lazy.
// It is called with the lock held by every method that uses the session.
func (s *Session) enter(ctx context.Context, write bool) error {
	st := s.st
	if st.stateless {
		if st.m.cfg.development {
			return ErrStateless
		}
		if !st.warned {
			st.warned = true
			st.m.log.Warn("session used on a stateless route", "method", st.method(), "path", st.path())
		}
	}
	if write && (s.ro || st.readOnly) {
		return ErrReadOnly
	}
	if write && st.ended() {
		return ErrRequestEnded
	}
	if st.phase == phaseLazy && st.resumeErr() == nil {
		st.resume(ctx)
	}
	return st.resumeErr()
}

func (st *state) started() bool { return st.phase == phaseResumed || st.phase == phaseNew }

// resume looks the cookie's ID up: one read of the whole record. A missing,
// corrupt, forged or expired session leaves the request without one and expires
// the cookie; a store failure is kept in resumeErr. Expired sessions are left to
// the collector: a request never deletes them.
func (st *state) resume(ctx context.Context) {
	tel := st.m.tel
	if tel == nil {
		st.load(ctx)
		return
	}
	ctx, span := tel.Start(ctx, telemetry.SpanResume)
	st.load(ctx)
	found := st.phase == phaseResumed
	if found {
		tel.SessionResumed(ctx)
	}
	span.SetFound(found)
	span.End(st.resumeErr())
}

// load is resume without the telemetry.
func (st *state) load(ctx context.Context) {
	m := st.m
	ref, verifier := splitID(st.cookieID)
	rec, err := m.store.Read(ctx, ref)
	if errors.Is(err, cache.ErrNotFound) {
		st.noSession()
		return
	}
	if err != nil {
		st.exts().resumeErr = fmt.Errorf("session: resuming %s: %w", ref, err)
		return
	}
	now := m.cfg.now()
	lv, err := m.open(rec, now)
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			m.log.Warn("session record unreadable; treating the request as without a session", "session", ref, "error", err)
		}
		st.noSession()
		return
	}
	current, ok := lv.opens(verifier, now)
	if !ok {
		// A forged cookie, or one replaced by a renewal: it names no session.
		st.noSession()
		return
	}
	lv.id = st.cookieID
	lv.baseRenewed = lv.meta.renewed
	st.phase = phaseResumed
	st.exposed = true
	st.live = lv
	if st.request {
		st.act.last = now
		// A rotated-out ID (a request in flight across a rotation) is let in
		// but never rotates again.
		// A response already begun cannot carry a new ID: a long-lived request
		// (Sync) rotates never.
		if current && !st.readOnly && !st.headersDone && m.cfg.rotateAfter > 0 && now.Sub(lv.meta.renewed) >= m.cfg.rotateAfter {
			st.rotate(now)
		}
	}
}

// opens reports whether verifier opens the session at now, and whether it is
// the current one (rather than one a rotation replaced less than
// RotationGrace ago). The hashes are compared in constant time.
func (lv *live) opens(verifier string, now time.Time) (current, ok bool) {
	h := verifierHash(verifier)
	if sameHash(lv.meta.verifier, h) {
		return true, true
	}
	if !lv.meta.previousUntil.IsZero() && now.Before(lv.meta.previousUntil) && sameHash(lv.meta.previous, h) {
		return false, true
	}
	return false, false
}

// noSession ends a lookup that found no live session: the request goes on
// without one and the response expires the cookie, so the browser stops
// sending a dead ID.
func (st *state) noSession() {
	st.phase = phaseNone
	if st.request { // read-only routes too: the cookie is the client's, not the store's
		st.expire = true
		st.exposed = true
	}
}

// Start starts a session if the request has none: it mints a new ID and the
// response will carry the cookie. Starting a started session is a no-op. An ID
// the server did not issue is never adopted.
func (s *Session) Start(ctx context.Context) error {
	if err := s.acquire(ctx, true, false); err != nil {
		return err
	}
	defer s.unlock()
	return s.st.start()
}

func (st *state) start() error {
	if st.started() {
		return nil
	}
	if st.request && st.headersDone {
		st.m.log.Error("session started after the response headers were sent; it cannot get its cookie",
			"method", st.method(), "path", st.path())
		return fmt.Errorf("session: start: %w", ErrHeadersSent)
	}
	now := st.m.cfg.now()
	id := newID()
	ref, verifier := splitID(id)
	st.phase = phaseNew
	st.exposed = true
	st.live = &live{
		id: id, ref: ref, metaDirty: true,
		meta:    metadata{created: now, verifier: verifierHash(verifier), renewed: now},
		act:     activity{last: now},
		created: true,
	}
	st.needCookie = true
	st.expire = false
	return nil
}

// IsStarted reports whether the request has a session. On first use it resumes the
// session from the cookie (one store read); a request without a cookie never
// touches the store.
func (s *Session) IsStarted(ctx context.Context) (bool, error) {
	if err := s.acquire(ctx, false, false); err != nil {
		return false, err
	}
	defer s.unlock()
	return s.st.started(), nil
}

// ID returns the session ID (the cookie's value). It is ErrNotStarted without a
// session. Never log it: use [Session.Ref].
func (s *Session) ID(ctx context.Context) (string, error) {
	if err := s.acquire(ctx, false, true); err != nil {
		return "", err
	}
	defer s.unlock()
	if s.st.id == "" {
		return "", fmt.Errorf("session: opened by its reference, and the store never holds the ID: %w", ErrNotFound)
	}
	return s.st.id, nil
}

// Ref returns the session's public reference: the part of the ID that names its
// record, which stays the same for the session's life (renewal keeps it). It is
// what logs, admin tools ([Manager.Session], [Metadata.Ref]) and session lists
// show; knowing it does not let anyone use the session. It is "" when the
// session is not started or has not been resumed yet (it never touches the
// store: call IsStarted first).
func (s *Session) Ref() string {
	if err := s.use(); err != nil {
		return ""
	}
	defer s.unlock()
	if !s.st.started() {
		return ""
	}
	return s.st.ref
}

// RenewID gives the session a new ID and keeps its data; the old ID resolves to
// nothing once the change is committed (at the next commit point, before the
// response headers, together with the request's other changes). Call it on
// login and on every change of privilege. Only the verifier changes: no data
// moves. Without a session it starts one. It is ErrHeadersSent once the
// response began (the client could not learn the new ID).
func (s *Session) RenewID(ctx context.Context) error {
	if err := s.acquire(ctx, true, false); err != nil {
		return err
	}
	defer s.unlock()
	st := s.st
	if !st.started() {
		return st.start()
	}
	if st.request && st.headersDone {
		return fmt.Errorf("session: renew ID: %w", ErrHeadersSent)
	}
	st.renew(st.m.cfg.now(), ReasonRenew)
	return nil
}

// renew replaces the verifier, staged for the next commit. A renewal
// (ReasonRenew) kills the previous ID at once; a rotation (ReasonRotation)
// keeps it working for RotationGrace. Lock held.
func (st *state) renew(now time.Time, reason string) {
	verifier := newVerifier()
	if reason == ReasonRotation {
		st.meta.previous, st.meta.previousUntil = st.meta.verifier, now.Add(st.m.cfg.rotationGrace)
	} else {
		st.meta.previous, st.meta.previousUntil = [32]byte{}, time.Time{}
	}
	st.id = st.ref + verifier
	st.meta.verifier = verifierHash(verifier)
	st.meta.renewed = now
	st.metaDirty = true
	if st.renewal != ReasonRenew {
		st.renewal = reason
	}
	st.needCookie = true
}

// rotate renews the ID for Config.RotateAfter. Lock held.
func (st *state) rotate(now time.Time) { st.renew(now, ReasonRotation) }

// Destroy ends the session: its record is deleted at once (one store call) and
// the response expires the cookie. reason is logged and given to the listeners
// (EventDestroyed; "" means ReasonLogout). Without a session it does nothing.
// The request may start a new session afterwards.
func (s *Session) Destroy(ctx context.Context, reason string) error {
	if err := s.acquire(ctx, true, false); err != nil {
		return err
	}
	defer s.unlock()
	st := s.st
	if !st.started() {
		return nil
	}
	if reason == "" {
		reason = ReasonLogout
	}
	if st.persisted {
		ok, err := st.m.store.Delete(ctx, st.ref)
		if err != nil {
			return fmt.Errorf("session: destroy: %w", err)
		}
		if ok {
			st.m.tel.SessionsDestroyed(ctx, reason, 1)
		}
		st.m.emit(Event{Kind: EventDestroyed, Ref: st.ref, Reason: reason, Time: st.m.cfg.now(),
			Metadata: st.m.metadataOf(st.ref, &st.meta, &st.act, st.storedLastOrNow(), st.tags)})
	}
	st.m.log.Info("session destroyed", "session", st.ref, "reason", reason)
	st.expire = st.cookieID != "" || !st.needCookie
	st.phase = phaseDestroyed
	st.exposed = true
	st.live = nil
	st.needCookie = false
	st.staged = nil
	return nil
}

// ReadOnly returns a view of the session whose reads work and whose writes
// return ErrReadOnly (Pimcore's getReadonly). The view writes nothing back; the
// session itself is unchanged. ReadOnly of a nil session is nil.
func (s *Session) ReadOnly() *Session {
	if s == nil {
		return nil
	}
	return &Session{st: s.st, ro: true}
}

// IsReadOnly reports whether writes through s are refused: a [Session.ReadOnly]
// view, or a request on a [ReadOnly] route.
func (s *Session) IsReadOnly() bool {
	if s == nil {
		return false
	}
	if s.ro {
		return true
	}
	if err := s.use(); err != nil {
		return false
	}
	defer s.unlock()
	return s.st.readOnly
}

// Commit writes a detached session's staged changes (a session from
// [Manager.Session] or [Manager.NewContext]): hooks, values, bags, flashes,
// tags and metadata, in one store write. Request sessions are committed by the
// middleware (ErrNotDetached).
func (s *Session) Commit(ctx context.Context) error {
	if s == nil || s.st == nil {
		return ErrNoSession
	}
	if s.st.request {
		return ErrNotDetached
	}
	if err := s.st.runHooks(ctx); err != nil {
		return err
	}
	if err := s.use(); err != nil {
		return err
	}
	defer s.unlock()
	return s.st.commit(ctx, true)
}

// method and path name the request in logs (an Exchange's call in path).
func (st *state) method() string {
	if st.req != nil {
		return st.req.Method
	}
	return "CALL"
}

func (st *state) path() string {
	switch {
	case st.req != nil:
		return st.req.URL.Path
	case st.ext != nil && st.ext.peer != nil:
		return st.ext.peer.Method
	}
	return ""
}
