package session

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// Session is one visitor's session as seen by one request (or by an admin tool).
// The middleware puts it into the request's context ([FromContext]); it starts
// lazily and is resumed from the cookie on first use. All methods are safe for
// concurrent use.
//
// Values are stored one entry per key, so a request writes only what it changed.
// Writes are staged and reach the store at the next commit point: just before
// the response headers go out, and again when the handler returns.
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

// staged is a value waiting for the next commit; del marks a removal.
type staged struct {
	b   []byte
	del bool
}

// cached is a value read from the store in this request; found=false records that
// the key is absent.
type cached struct {
	b     []byte
	found bool
}

// tagOp is a tag change, replayed onto fresh metadata after a version conflict.
type tagOp struct {
	tag string
	add bool
}

// Logical keys: the part of a data key after "<storageID>:".
const (
	kindValue = "v:"
	kindEntry = "e:"
	kindBag   = "b:"
	keyFlash  = "f:flashes"
	// ReservedPrefix starts the keys of extensions ([Session.GetEntry]); user keys
	// ([Session.Put]) may not start with it.
	ReservedPrefix = "scope:"
	// maxUserKey leaves room for "<storageID>:<kind>:" within cache.MaxKeyLen.
	maxUserKey = cache.MaxKeyLen - 22 - 3
)

// state is a session's state during one request, shared by its handles.
type state struct {
	m  *Manager
	mu sync.Mutex
	// used is set by every method of the session: a request whose session was
	// never used commits without taking the lock.
	used atomic.Bool

	phase     phase
	cookieID  string // the well-formed ID from the request's cookie
	resumeErr error
	// live is the started (or resumed) session's data; nil without one, so that
	// a request that never has a session allocates little.
	*live

	needCookie  bool // the client has not been given the current ID yet
	expire      bool // destroyed: send an expiring cookie
	exposed     bool // the response depends on a session: mark it private
	metaWritten bool // the last commit wrote metadata (refresh a persistent cookie)

	// Request sessions only.
	request     bool
	readOnly    bool
	stateless   bool
	warned      bool
	headersDone bool // the first commit point passed
	aborted     bool // the error handler answered the request

	owner  *reqState         // the middleware's request state (request sessions only)
	staged map[string]staged // survives Start: PutEntry may stage before it
	ext    *extensions
	req    *http.Request
}

// extensions is what extensions (scope/) keep in a request's session. The
// common case, one extension with one hook and one local, fits in its fixed
// slots: no allocation besides the record itself.
type extensions struct {
	hooks  []func(context.Context) error
	hook0  [1]func(context.Context) error // hooks' first backing array
	has0   bool                           // key0 holds a local
	key0   any
	val0   any
	locals map[any]any // the locals beyond key0

	cctx *commitContext // the request's commit context (middleware)
}

// exts returns the extensions record, creating it. Lock held.
func (st *state) exts() *extensions {
	if st.ext == nil {
		st.ext = &extensions{}
		st.ext.hooks = st.ext.hook0[:0]
	}
	return st.ext
}

// local returns the local under key.
func (e *extensions) local(key any) any {
	if e.has0 && e.key0 == key {
		return e.val0
	}
	return e.locals[key]
}

// setLocal stores the local under key.
func (e *extensions) setLocal(key, value any) {
	switch {
	case !e.has0:
		e.has0, e.key0, e.val0 = true, key, value
	case e.key0 == key:
		e.val0 = value
	default:
		if e.locals == nil {
			e.locals = make(map[any]any)
		}
		e.locals[key] = value
	}
}

// hookCount is the number of OnCommit hooks. Lock held.
func (st *state) hookCount() int {
	if st.ext == nil {
		return 0
	}
	return len(st.ext.hooks)
}

// live is a started session's data.
type live struct {
	id, hash    string
	meta        metadata
	metaVer     cache.Version
	storedLast  time.Time // lastActivity as stored
	persisted   bool      // the metadata entry exists in the store
	metaDirty   bool      // tags changed or the ID moved: metadata must be written
	touchForced bool
	dataWritten bool // data was written immediately (CompareAndPutEntry)
	tagOps      []tagOp

	cache map[string]cached
	bags  map[string]*bagState
	flash *bagState
}

// FromContext returns the request's session, put there by [Manager.Middleware]
// (or [Manager.NewContext]); ok is false outside them.
func FromContext(ctx context.Context) (*Session, bool) {
	s, ok := ctx.Value(ctxKey{}).(*Session)
	return s, ok
}

// ctxKey is the context key of the request's *Session.
type ctxKey struct{}

func (s *Session) lock() {
	s.st.used.Store(true)
	s.st.mu.Lock()
}
func (s *Session) unlock() { s.st.mu.Unlock() }

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
			st.m.log.Warn("session used on a stateless route", "method", st.req.Method, "path", st.req.URL.Path)
		}
	}
	if write && (s.ro || st.readOnly) {
		return ErrReadOnly
	}
	if st.phase == phaseLazy && st.resumeErr == nil {
		st.resume(ctx)
	}
	return st.resumeErr
}

func (st *state) started() bool { return st.phase == phaseResumed || st.phase == phaseNew }

// resume looks the cookie's ID up. A missing, corrupt or expired session leaves
// the request without one; a store failure is kept in resumeErr.
func (st *state) resume(ctx context.Context) {
	m := st.m
	hash := hashID(st.cookieID)
	e, err := m.meta.Get(ctx, hash)
	if errors.Is(err, cache.ErrNotFound) {
		st.phase = phaseNone
		return
	}
	if err != nil {
		st.resumeErr = fmt.Errorf("session: resuming %s: %w", hash[:shortHashLength], err)
		return
	}
	md, err := decodeMetadata(e.Value)
	if err != nil {
		m.log.Warn("session metadata unreadable; treating the request as without a session",
			"session", hash[:shortHashLength], "error", err)
		st.phase = phaseNone
		return
	}
	now := m.cfg.now()
	if m.expired(&md, now) {
		st.phase = phaseNone
		if !st.readOnly {
			if err := m.destroyStored(ctx, hash, md.storageID); err != nil {
				m.log.Error("destroying expired session", "session", hash[:shortHashLength], "error", err)
			} else {
				m.log.Info("session destroyed", "session", hash[:shortHashLength], "reason", "expired")
			}
		}
		return
	}
	st.phase = phaseResumed
	st.exposed = true
	st.live = &live{
		id: st.cookieID, hash: hash, meta: md, metaVer: e.Version,
		storedLast: md.lastActivity, persisted: true,
	}
	if st.request {
		st.meta.lastActivity = now
	}
}

// Start starts a session if the request has none: it mints a new ID (256 bits from
// crypto/rand) and the response will carry the cookie. Starting a started session
// is a no-op. An ID the server did not issue is never adopted.
func (s *Session) Start(ctx context.Context) error {
	s.lock()
	defer s.unlock()
	if err := s.enter(ctx, true); err != nil {
		return err
	}
	return s.st.start()
}

func (st *state) start() error {
	if st.started() {
		return nil
	}
	if st.request && st.headersDone {
		st.m.log.Error("session started after the response headers were sent; it cannot get its cookie",
			"method", st.req.Method, "path", st.req.URL.Path)
		return fmt.Errorf("session: start: %w", ErrHeadersSent)
	}
	now := st.m.cfg.now()
	id := newID()
	st.phase = phaseNew
	st.exposed = true
	st.live = &live{
		id: id, hash: hashID(id), metaDirty: true,
		meta: metadata{storageID: newStorageID(), created: now, lastActivity: now},
	}
	st.needCookie = true
	st.expire = false
	return nil
}

// IsStarted reports whether the request has a session. On first use it resumes the
// session from the cookie (one store read); a request without a cookie never
// touches the store.
func (s *Session) IsStarted(ctx context.Context) (bool, error) {
	s.lock()
	defer s.unlock()
	if err := s.enter(ctx, false); err != nil {
		return false, err
	}
	return s.st.started(), nil
}

// ID returns the session ID (the cookie's value). It is ErrNotStarted without a
// session. Never log it: use [Session.HashedID].
func (s *Session) ID(ctx context.Context) (string, error) {
	s.lock()
	defer s.unlock()
	if err := s.enter(ctx, false); err != nil {
		return "", err
	}
	if !s.st.started() {
		return "", ErrNotStarted
	}
	if s.st.id == "" {
		return "", fmt.Errorf("session: opened by its hash, and the store never holds the ID: %w", ErrNotFound)
	}
	return s.st.id, nil
}

// HashedID returns a short prefix of the hash of the session ID, for logs. It is
// "" when the session is not started or has not been resumed yet (it never
// touches the store: call IsStarted first).
func (s *Session) HashedID() string {
	s.lock()
	defer s.unlock()
	if !s.st.started() {
		return ""
	}
	return s.st.hash[:shortHashLength]
}

// RenewID gives the session a new ID and keeps its data; the old ID resolves to
// nothing from now on. Call it on login and on every change of privilege. Only
// the metadata entry moves. Without a session it starts one. It is
// ErrHeadersSent once the response began (the client could not learn the new ID).
func (s *Session) RenewID(ctx context.Context) error {
	s.lock()
	defer s.unlock()
	if err := s.enter(ctx, true); err != nil {
		return err
	}
	st := s.st
	if !st.started() {
		return st.start()
	}
	if st.request && st.headersDone {
		return fmt.Errorf("session: renew ID: %w", ErrHeadersSent)
	}
	id := newID()
	hash := hashID(id)
	if st.persisted {
		v, err := st.m.meta.CompareAndSet(ctx, cache.Item{Key: hash, Value: st.meta.encode(), Tags: st.meta.tags}, 0)
		if err != nil {
			return fmt.Errorf("session: renew ID: %w", err)
		}
		if _, err := st.m.meta.Delete(ctx, st.hash); err != nil {
			// Both IDs work until the old one's deletion succeeds: report it.
			_, _ = st.m.meta.Delete(context.WithoutCancel(ctx), hash)
			return fmt.Errorf("session: renew ID: removing the old ID: %w", err)
		}
		st.metaVer = v
		st.storedLast = st.meta.lastActivity
		st.metaDirty, st.touchForced, st.tagOps = false, false, nil
	}
	st.m.log.Info("session ID renewed", "session", hash[:shortHashLength], "previous", st.hash[:shortHashLength])
	st.id, st.hash = id, hash
	st.needCookie = true
	return nil
}

// Destroy ends the session: its values and metadata are removed at once and the
// response expires the cookie. reason is logged. Without a session it does
// nothing. The request may start a new session afterwards.
func (s *Session) Destroy(ctx context.Context, reason string) error {
	s.lock()
	defer s.unlock()
	if err := s.enter(ctx, true); err != nil {
		return err
	}
	st := s.st
	if !st.started() {
		return nil
	}
	if st.persisted || st.dataWritten {
		if err := st.m.destroyStored(ctx, st.hash, st.meta.storageID); err != nil {
			return fmt.Errorf("session: destroy: %w", err)
		}
	}
	st.m.log.Info("session destroyed", "session", st.hash[:shortHashLength], "reason", reason)
	st.expire = st.cookieID != "" || !st.needCookie
	st.phase = phaseDestroyed
	st.exposed = true
	st.live = nil
	st.needCookie = false
	st.staged = nil
	return nil
}

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

func checkUserKey(key string) error {
	if len(key) >= len(ReservedPrefix) && key[:len(ReservedPrefix)] == ReservedPrefix {
		return fmt.Errorf("session: key %q: %w: the prefix %q is reserved", key, cache.ErrInvalidKey, ReservedPrefix)
	}
	return checkKey(key)
}

// Put stores v (encoded with msgpack) under key. It is staged and written at the
// next commit. Keys use the cache key alphabet ([A-Za-z0-9] and "-_.:@"), up to
// 225 bytes; the encoded value is limited by Config.MaxPayload. It is
// ErrNotStarted without a session.
func (s *Session) Put(ctx context.Context, key string, v any) error {
	if err := checkUserKey(key); err != nil {
		return err
	}
	b, err := encodeValue(key, v, s.st.m.cfg.maxPayload)
	if err != nil {
		return err
	}
	s.lock()
	defer s.unlock()
	if err := s.enter(ctx, true); err != nil {
		return err
	}
	if !s.st.started() {
		return ErrNotStarted
	}
	s.st.stage(kindValue+key, b, false)
	return nil
}

// Get decodes the value stored under key into dst (a pointer). A missing key is
// an error matching ErrNotFound; bytes that do not fit dst give an error matching
// ErrDecode. It is ErrNotStarted without a session.
func (s *Session) Get(ctx context.Context, key string, dst any) error {
	if err := checkUserKey(key); err != nil {
		return err
	}
	s.lock()
	b, err := s.read(ctx, kindValue+key)
	s.unlock()
	if err != nil {
		return err
	}
	return decodeValue(key, b, dst)
}

// Has reports whether a value is stored under key (false without a session).
func (s *Session) Has(ctx context.Context, key string) (bool, error) {
	if err := checkUserKey(key); err != nil {
		return false, err
	}
	s.lock()
	defer s.unlock()
	_, err := s.read(ctx, kindValue+key)
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
	if err := checkUserKey(key); err != nil {
		return err
	}
	s.lock()
	defer s.unlock()
	if err := s.enter(ctx, true); err != nil {
		return err
	}
	if s.st.started() {
		s.st.stage(kindValue+key, nil, true)
	}
	return nil
}

// read returns the bytes of a logical key: staged, read earlier in this request,
// or from the store. Called with the lock held.
func (s *Session) read(ctx context.Context, lk string) ([]byte, error) {
	if err := s.enter(ctx, false); err != nil {
		return nil, err
	}
	st := s.st
	if !st.started() {
		return nil, ErrNotStarted
	}
	if v, ok := st.staged[lk]; ok {
		if v.del {
			return nil, fmt.Errorf("session: %q: %w", lk[2:], ErrNotFound)
		}
		return v.b, nil
	}
	if v, ok := st.cache[lk]; ok {
		if !v.found {
			return nil, fmt.Errorf("session: %q: %w", lk[2:], ErrNotFound)
		}
		return v.b, nil
	}
	e, err := st.load(ctx, lk)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if st.cache == nil {
		st.cache = make(map[string]cached)
	}
	st.cache[lk] = cached{b: e.Value, found: err == nil}
	if err != nil {
		return nil, fmt.Errorf("session: %q: %w", lk[2:], ErrNotFound)
	}
	return e.Value, nil
}

// load reads one data entry from the store; a new session that wrote nothing yet
// has nothing to read.
func (st *state) load(ctx context.Context, lk string) (cache.Entry, error) {
	if st.phase == phaseNew && !st.persisted && !st.dataWritten {
		return cache.Entry{}, ErrNotFound
	}
	e, err := st.m.data.Get(ctx, st.meta.storageID+":"+lk)
	if err != nil {
		return cache.Entry{}, fmt.Errorf("session: reading %q: %w", lk, err)
	}
	return e, nil
}

func (st *state) stage(lk string, b []byte, del bool) {
	if st.staged == nil {
		st.staged = make(map[string]staged)
	}
	st.staged[lk] = staged{b: b, del: del}
}

// GetEntry reads an extension's raw entry (its key starts with "scope:" or
// another prefix the extension owns; it never collides with [Session.Put] keys
// or bags). It reads through to the store on every call and does not see staged
// PutEntry values. It is ErrNotStarted without a session and matches
// ErrNotFound when the entry is absent.
func (s *Session) GetEntry(ctx context.Context, key string) ([]byte, cache.Version, error) {
	if err := checkKey(key); err != nil {
		return nil, 0, err
	}
	s.lock()
	defer s.unlock()
	if err := s.enter(ctx, false); err != nil {
		return nil, 0, err
	}
	if !s.st.started() {
		return nil, 0, ErrNotStarted
	}
	e, err := s.st.load(ctx, kindEntry+key)
	if err != nil {
		return nil, 0, err
	}
	return e.Value, e.Version, nil
}

// GetEntries reads several extension entries in one store round trip
// (cache GetMany), in the order of keys: a missing one has only its Key set
// (Exists reports false). Keys are the extension's keys, as in GetEntry. It is
// ErrNotStarted without a session.
func (s *Session) GetEntries(ctx context.Context, keys []string) ([]cache.Entry, error) {
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return nil, err
		}
	}
	s.lock()
	defer s.unlock()
	if err := s.enter(ctx, false); err != nil {
		return nil, err
	}
	st := s.st
	if !st.started() {
		return nil, ErrNotStarted
	}
	out := make([]cache.Entry, len(keys))
	if st.phase == phaseNew && !st.persisted && !st.dataWritten || len(keys) == 0 {
		for i, k := range keys {
			out[i].Key = k
		}
		return out, nil
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = st.meta.storageID + ":" + kindEntry + k
	}
	got, err := st.m.data.GetMany(ctx, full)
	if err != nil {
		return nil, fmt.Errorf("session: reading entries: %w", err)
	}
	if len(got) != len(keys) {
		return nil, fmt.Errorf("session: reading entries: the store answered %d entries for %d keys", len(got), len(keys))
	}
	for i, e := range got {
		e.Key = keys[i]
		if !e.Exists() {
			e = cache.Entry{Key: keys[i]}
		}
		out[i] = e
	}
	return out, nil
}

// PutEntry stages an extension's raw entry. It is written at the next commit if
// the session is started by then (on an unstarted session it waits for a Start
// that may come from an [Session.OnCommit] hook); only the last staged value per
// key is written. value is kept: do not modify it afterwards.
func (s *Session) PutEntry(ctx context.Context, key string, value []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if len(value) > s.st.m.cfg.maxPayload {
		return fmt.Errorf("%w: %q is %d bytes, limit %d", cache.ErrValueTooLarge, key, len(value), s.st.m.cfg.maxPayload)
	}
	s.lock()
	defer s.unlock()
	if err := s.enter(ctx, true); err != nil {
		return err
	}
	s.st.stage(kindEntry+key, value, false)
	return nil
}

// CompareAndPutEntry writes an extension's raw entry at once, only if its stored
// version is expected (0: only if absent), and returns the new version. A
// conflict matches cache.ErrConflict. It clears a staged PutEntry of the same key.
// The session must be started (ErrNotStarted); a session started in this request
// is saved first, so it must still be able to send its cookie.
func (s *Session) CompareAndPutEntry(ctx context.Context, key string, value []byte, expected cache.Version) (cache.Version, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	if len(value) > s.st.m.cfg.maxPayload {
		return 0, fmt.Errorf("%w: %q is %d bytes, limit %d", cache.ErrValueTooLarge, key, len(value), s.st.m.cfg.maxPayload)
	}
	s.lock()
	defer s.unlock()
	if err := s.enter(ctx, true); err != nil {
		return 0, err
	}
	st := s.st
	if !st.started() {
		return 0, ErrNotStarted
	}
	if err := st.ensurePersisted(ctx); err != nil {
		return 0, err
	}
	lk := kindEntry + key
	v, err := st.m.data.CompareAndSet(ctx, cache.Item{
		Key: st.meta.storageID + ":" + lk, Value: value, Tags: []string{st.meta.storageID},
	}, expected)
	if err != nil {
		return 0, fmt.Errorf("session: entry %q: %w", key, err)
	}
	st.dataWritten = true
	delete(st.staged, lk)
	return v, nil
}

// ensurePersisted writes a new session's metadata now, so that data written
// immediately belongs to a session the collector knows.
func (st *state) ensurePersisted(ctx context.Context) error {
	if st.persisted {
		return nil
	}
	if st.request && st.headersDone && st.needCookie {
		return fmt.Errorf("session: saving a new session: %w", ErrHeadersSent)
	}
	return st.writeMeta(ctx)
}

// Touch makes the next commit rewrite the metadata (last activity) even if the
// update threshold has not passed. It is ErrNotStarted without a session.
func (s *Session) Touch(ctx context.Context) error {
	s.lock()
	defer s.unlock()
	if err := s.enter(ctx, true); err != nil {
		return err
	}
	if !s.st.started() {
		return ErrNotStarted
	}
	s.st.touchForced = true
	return nil
}

// LastActivity is the last time the session was used: for the current request's
// session the time of this request, for a session opened by an admin tool the
// stored time. It is ErrNotStarted without a session.
func (s *Session) LastActivity(ctx context.Context) (time.Time, error) {
	s.lock()
	defer s.unlock()
	if err := s.enter(ctx, false); err != nil {
		return time.Time{}, err
	}
	if !s.st.started() {
		return time.Time{}, ErrNotStarted
	}
	return s.st.meta.lastActivity, nil
}

// Metadata describes a session's lifetime.
type Metadata struct {
	// Hash is the hex SHA-256 of the session ID: the handle of admin tools
	// ([Manager.Session] accepts it); the store keeps nothing else of the ID.
	Hash string
	// Created is when the session started.
	Created time.Time
	// LastUsed is the last activity (see [Session.LastActivity]).
	LastUsed time.Time
	// Lifetime is the cookie's lifetime (0: a browser session cookie).
	Lifetime time.Duration
	// Expires is when the session ends if not used again (the earlier of the
	// inactivity timeout and the absolute lifetime); zero when it never does.
	Expires time.Time
	// Tags are the session's tags.
	Tags []string
}

// Metadata returns the session's metadata record. It is ErrNotStarted without a
// session.
func (s *Session) Metadata(ctx context.Context) (Metadata, error) {
	s.lock()
	defer s.unlock()
	if err := s.enter(ctx, false); err != nil {
		return Metadata{}, err
	}
	if !s.st.started() {
		return Metadata{}, ErrNotStarted
	}
	return s.st.m.metadataOf(s.st.hash, &s.st.meta), nil
}

// AddTag tags the session; [Manager.ByTag] and [Manager.DestroyByTag] find it by
// the tag (e.g. "user:42" to log a user out everywhere). Tags use the cache key
// alphabet ([A-Za-z0-9] and "-_.:@", up to 250 bytes); anything else is an error
// matching cache.ErrInvalidKey, so encode other values (hex, base64url) first.
// It is ErrNotStarted without a session.
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
	s.lock()
	defer s.unlock()
	if err := s.enter(ctx, true); err != nil {
		return err
	}
	st := s.st
	if !st.started() {
		return ErrNotStarted
	}
	if applyTag(&st.meta.tags, tag, add) {
		st.tagOps = append(st.tagOps, tagOp{tag: tag, add: add})
		st.metaDirty = true
	}
	return nil
}

// applyTag adds or removes tag in tags and reports whether they changed.
func applyTag(tags *[]string, tag string, add bool) bool {
	i := slices.Index(*tags, tag)
	switch {
	case add && i < 0:
		*tags = append(slices.Clip(*tags), tag)
		return true
	case !add && i >= 0:
		*tags = slices.Delete(slices.Clone(*tags), i, i+1)
		return true
	}
	return false
}

// Tags returns the session's tags. It is ErrNotStarted without a session.
func (s *Session) Tags(ctx context.Context) ([]string, error) {
	s.lock()
	defer s.unlock()
	if err := s.enter(ctx, false); err != nil {
		return nil, err
	}
	if !s.st.started() {
		return nil, ErrNotStarted
	}
	return slices.Clone(s.st.meta.tags), nil
}

// ReadOnly returns a view of the session whose reads work and whose writes
// return ErrReadOnly (Pimcore's getReadonly). The view writes nothing back; the
// session itself is unchanged.
func (s *Session) ReadOnly() *Session { return &Session{st: s.st, ro: true} }

// IsReadOnly reports whether writes through s are refused: a [Session.ReadOnly]
// view, or a request on a [ReadOnly] route.
func (s *Session) IsReadOnly() bool {
	if s.ro {
		return true
	}
	s.lock()
	defer s.unlock()
	return s.st.readOnly
}

// OnCommit registers fn to run at each commit point of this request (before the
// response headers go out, and again when the handler returns), before the
// session writes its staged values and metadata. fn may call Start and
// PutEntry. Errors are logged and, before the headers, answered with the error
// handler. Hooks do not run on read-only routes.
func (s *Session) OnCommit(fn func(ctx context.Context) error) {
	s.lock()
	e := s.st.exts()
	e.hooks = append(e.hooks, fn)
	s.unlock()
}

// Local returns the request-local value stored under key by SetLocal (nil if
// none). Locals live only as long as the request and are never stored.
func (s *Session) Local(key any) any {
	s.lock()
	defer s.unlock()
	if s.st.ext == nil {
		return nil
	}
	return s.st.ext.local(key)
}

// SetLocal stores a request-local value for extensions (see Local).
func (s *Session) SetLocal(key, value any) {
	s.lock()
	s.st.exts().setLocal(key, value)
	s.unlock()
}

// Commit writes a detached session's staged changes (a session from
// [Manager.Session] or [Manager.NewContext]): hooks, values, bags, flashes and
// metadata. Request sessions are committed by the middleware (ErrNotDetached).
func (s *Session) Commit(ctx context.Context) error {
	if s.st.request {
		return ErrNotDetached
	}
	if err := s.st.runHooks(ctx); err != nil {
		return err
	}
	s.lock()
	defer s.unlock()
	return s.st.commit(ctx, true)
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

// commit writes staged values, dirty bags and metadata. Called with the lock held.
// canSendCookie is false after the response headers went out: a session that
// still needs its cookie then cannot be saved.
func (st *state) commit(ctx context.Context, canSendCookie bool) error {
	st.metaWritten = false
	if st.readOnly {
		st.staged = nil
		return nil
	}
	if !st.started() {
		st.staged = nil
		return nil
	}
	if st.needCookie && !canSendCookie {
		st.staged = nil
		st.m.log.Error("session changed after the response headers were sent but its cookie was never sent; not saved",
			"session", st.hash[:shortHashLength])
		return nil
	}
	if err := st.stageBags(); err != nil {
		st.staged = nil
		return err
	}
	if err := st.writeData(ctx); err != nil {
		return err
	}
	now := st.m.cfg.now()
	touch := st.request && (st.m.cfg.threshold == 0 || now.Sub(st.storedLast) >= st.m.cfg.threshold)
	if !st.persisted || st.metaDirty || st.touchForced || touch {
		if st.request && st.meta.lastActivity.Before(now) {
			st.meta.lastActivity = now
		}
		if err := st.writeMeta(ctx); err != nil {
			return err
		}
		st.metaWritten = true
	}
	return nil
}

// pending reports whether a commit would write anything. Lock held.
func (st *state) pending() bool {
	if st.readOnly || !st.started() {
		return false
	}
	if len(st.staged) > 0 || !st.persisted || st.metaDirty || st.touchForced {
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
	return st.request && (st.m.cfg.threshold == 0 || st.m.cfg.now().Sub(st.storedLast) >= st.m.cfg.threshold)
}

// writeData writes the staged values in one SetMany and removes the staged
// removals. The staged set is cleared whatever happens.
func (st *state) writeData(ctx context.Context) error {
	if len(st.staged) == 0 {
		return nil
	}
	sid := st.meta.storageID
	tags := []string{sid}
	items := make([]cache.Item, 0, len(st.staged))
	var dels []string
	for lk, v := range st.staged {
		if v.del {
			dels = append(dels, sid+":"+lk)
			continue
		}
		items = append(items, cache.Item{Key: sid + ":" + lk, Value: v.b, Tags: tags})
	}
	if st.cache == nil {
		st.cache = make(map[string]cached, len(st.staged))
	}
	for lk, v := range st.staged {
		st.cache[lk] = cached{b: v.b, found: !v.del}
	}
	st.staged = nil
	if len(items) > 0 {
		if err := st.m.data.SetMany(ctx, items); err != nil {
			st.cache = nil
			return fmt.Errorf("session: saving values: %w", err)
		}
		st.dataWritten = true
	}
	for _, k := range dels {
		if _, err := st.m.data.Delete(ctx, k); err != nil {
			st.cache = nil
			return fmt.Errorf("session: removing a value: %w", err)
		}
	}
	return nil
}

// writeMeta writes the metadata entry with a version check. On a conflict (another
// request of the same session wrote it) it reloads it, replays this request's tag
// changes and tries again.
func (st *state) writeMeta(ctx context.Context) error {
	m := st.m
	expected := st.metaVer
	if !st.persisted {
		expected = 0
	}
	for attempt := 0; ; attempt++ {
		v, err := m.meta.CompareAndSet(ctx, cache.Item{Key: st.hash, Value: st.meta.encode(), Tags: st.meta.tags}, expected)
		if err == nil {
			st.metaVer = v
			st.storedLast = st.meta.lastActivity
			st.persisted = true
			st.metaDirty, st.touchForced, st.tagOps = false, false, nil
			return nil
		}
		if !errors.Is(err, cache.ErrConflict) || attempt >= metaAttempts || !st.persisted {
			return fmt.Errorf("session: saving metadata: %w", err)
		}
		if attempt > 0 {
			// Several requests of one session write at once: let one through.
			if err := sleepCtx(ctx, time.Duration(attempt)*time.Millisecond/2+rand.N(time.Millisecond)); err != nil {
				return fmt.Errorf("session: saving metadata: %w", err)
			}
		}
		e, err := m.meta.Get(ctx, st.hash)
		if errors.Is(err, cache.ErrNotFound) {
			// Destroyed or renewed by a concurrent request: nothing to update.
			m.log.Warn("session vanished while saving its metadata (destroyed or renewed concurrently)",
				"session", st.hash[:shortHashLength])
			st.metaDirty, st.touchForced, st.tagOps = false, false, nil
			return nil
		}
		if err != nil {
			return fmt.Errorf("session: saving metadata: %w", err)
		}
		fresh, err := decodeMetadata(e.Value)
		if err != nil {
			return fmt.Errorf("session: saving metadata: %w", err)
		}
		for _, op := range st.tagOps {
			applyTag(&fresh.tags, op.tag, op.add)
		}
		if st.meta.lastActivity.After(fresh.lastActivity) {
			fresh.lastActivity = st.meta.lastActivity
		}
		st.meta = fresh
		expected = e.Version
	}
}

// metaAttempts bounds the retries of a metadata write that meets concurrent
// writers of the same session.
const metaAttempts = 16

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
