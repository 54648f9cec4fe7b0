package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/internal/telemetry"
)

// Extension is the view of a request's session that extensions use: package
// scope keeps its session-scoped objects through it. Applications do not need
// it. It offers request-local values, commit hooks, and raw fields under the
// extension's own names, stored in the session's record beside its values (an
// extension's name never collides with [Session.Put] keys or bags).
//
// An Extension of a nil session (no session in the context) answers every call
// with an error matching ErrNoSession.
type Extension struct{ s *Session }

// ExtensionOf returns the extension view of s.
func ExtensionOf(s *Session) Extension { return Extension{s: s} }

// Session returns the session the view is of.
func (e Extension) Session() *Session { return e.s }

// Development reports whether the manager runs in development mode
// (Config.Development): extensions warn about misuse there.
func (e Extension) Development() bool {
	return e.s != nil && e.s.st != nil && e.s.st.m.cfg.development
}

// Logger is the manager's logger.
func (e Extension) Logger() *slog.Logger {
	if e.s == nil || e.s.st == nil {
		return slog.Default()
	}
	return e.s.st.m.log
}

// Field returns the extension's field name as the request knows it: as read
// when the session was resumed (the whole record is read in one round trip),
// or as last written or staged by this request. It never touches the store
// beyond the resume. A field not stored matches ErrNotFound; its version is 0
// when only staged. It is ErrNotStarted without a session.
func (e Extension) Field(ctx context.Context, name string) ([]byte, cache.Version, error) {
	if err := checkKey(name); err != nil {
		return nil, 0, err
	}
	if err := e.s.acquire(ctx, false, true); err != nil {
		return nil, 0, err
	}
	defer e.s.unlock()
	st := e.s.st
	b, v, ok := st.field(prefixExt + name)
	if !ok {
		return nil, 0, fmt.Errorf("session: field %q: %w", name, ErrNotFound)
	}
	return b, v, nil
}

// ReadField reads the extension's field afresh from the store (one round trip),
// for a retry after a conflict, and updates the request's copy. A field not
// stored matches ErrNotFound. It is ErrNotStarted without a session.
func (e Extension) ReadField(ctx context.Context, name string) ([]byte, cache.Version, error) {
	if err := checkKey(name); err != nil {
		return nil, 0, err
	}
	if err := e.s.acquire(ctx, false, true); err != nil {
		return nil, 0, err
	}
	defer e.s.unlock()
	st := e.s.st
	if !st.persisted {
		return nil, 0, fmt.Errorf("session: field %q: %w", name, ErrNotFound)
	}
	fname := prefixExt + name
	rec, err := st.m.store.Read(ctx, st.ref, fname)
	switch {
	case errors.Is(err, cache.ErrNotFound):
		st.gone()
		return nil, 0, fmt.Errorf("session: field %q: the session was destroyed: %w", name, ErrNotStarted)
	case err != nil:
		return nil, 0, fmt.Errorf("session: reading field %q: %w", name, err)
	}
	f, ok := rec.Field(fname)
	st.setField(fname, f.Value, f.Version, ok)
	if !ok {
		return nil, 0, fmt.Errorf("session: field %q: %w", name, ErrNotFound)
	}
	return f.Value, f.Version, nil
}

// StageField stages the extension's field for the next commit. It is written if
// the session is started by then (on an unstarted session it waits for a Start
// that may come from an [Extension.OnCommit] hook); only the last staged value
// is written. value is kept: do not modify it afterwards.
func (e Extension) StageField(ctx context.Context, name string, value []byte) error {
	if err := checkKey(name); err != nil {
		return err
	}
	if err := e.s.use(); err != nil {
		return err
	}
	defer e.s.unlock()
	st := e.s.st
	if len(value) > st.m.cfg.maxPayload {
		return fmt.Errorf("%w: %q is %d bytes, limit %d", cache.ErrValueTooLarge, name, len(value), st.m.cfg.maxPayload)
	}
	if err := e.s.enter(ctx, true); err != nil {
		return err
	}
	st.stage(prefixExt+name, value, false)
	return nil
}

// WriteField writes the extension's field at once, only if its stored version is
// expect (0: only if absent), and returns the new version. A conflict matches
// cache.ErrConflict. It replaces a staged change of the same field. The session
// must be started (ErrNotStarted); a session started in this request is created
// in the store by the same write, so it must still be able to send its cookie.
func (e Extension) WriteField(ctx context.Context, name string, value []byte, expect cache.Version) (cache.Version, error) {
	if err := checkKey(name); err != nil {
		return 0, err
	}
	if err := e.s.use(); err != nil {
		return 0, err
	}
	defer e.s.unlock()
	st := e.s.st
	if len(value) > st.m.cfg.maxPayload {
		return 0, fmt.Errorf("%w: %q is %d bytes, limit %d", cache.ErrValueTooLarge, name, len(value), st.m.cfg.maxPayload)
	}
	if err := e.s.enter(ctx, true); err != nil {
		return 0, err
	}
	if !st.started() {
		return 0, ErrNotStarted
	}
	return st.writeField(ctx, prefixExt+name, value, expect)
}

// OnCommit registers fn to run at each commit point of this request (before the
// response headers go out, and again when the handler returns), before the
// session writes its changes. fn may call Start and StageField. Errors are
// logged and, before the headers, answered with the error handler. Hooks do not
// run on read-only routes.
func (e Extension) OnCommit(fn func(ctx context.Context) error) error {
	if err := e.s.use(); err != nil {
		return err
	}
	x := e.s.st.exts()
	x.hooks = append(x.hooks, fn)
	e.s.unlock()
	return nil
}

// OnEnd registers fn to run when the request is over: its handler returned (or
// panicked) and its session was committed. Package scope closes request-scoped
// objects with it. A panic in fn is logged.
func (e Extension) OnEnd(fn func()) error {
	if err := e.s.use(); err != nil {
		return err
	}
	x := e.s.st.exts()
	if x.ends == nil {
		x.ends = x.end0[:0]
	}
	x.ends = append(x.ends, fn)
	e.s.unlock()
	return nil
}

// Refresher is implemented by request-local values (Extension.SetLocal) that
// hold what they read from the session: after [Session.Sync] made the session
// read again from the store on its next use, Sync calls their Refresh, so that
// they read afresh too (package scope drops the objects it loaded).
type Refresher interface{ Refresh() }

// Local returns the request-local value stored under key by SetLocal (nil if
// none). Locals live only as long as the request and are never stored.
func (e Extension) Local(key any) any {
	if err := e.s.use(); err != nil {
		return nil
	}
	defer e.s.unlock()
	if e.s.st.ext == nil {
		return nil
	}
	return e.s.st.ext.local(key)
}

// LoadOrStoreLocal returns the request-local value under key, storing value
// there first when there is none, atomically; loaded reports whether a value
// was there.
func (e Extension) LoadOrStoreLocal(key, value any) (actual any, loaded bool, err error) {
	if err := e.s.use(); err != nil {
		return nil, false, err
	}
	defer e.s.unlock()
	x := e.s.st.exts()
	if v := x.local(key); v != nil {
		return v, true, nil
	}
	x.setLocal(key, value)
	return value, false, nil
}

// SetLocal stores a request-local value (see Local).
func (e Extension) SetLocal(key, value any) error {
	if err := e.s.use(); err != nil {
		return err
	}
	e.s.st.exts().setLocal(key, value)
	e.s.unlock()
	return nil
}

// Metrics returns the view of the manager's OpenTelemetry metrics that
// extensions count their events in (package scope: its decoded objects and its
// Update conflicts). With the metrics off (Config.MeterProvider nil) or without
// a session it counts nothing.
func (e Extension) Metrics() ExtensionMetrics {
	if e.s == nil || e.s.st == nil {
		return ExtensionMetrics{}
	}
	return ExtensionMetrics{t: e.s.st.m.tel}
}

// ExtensionMetrics counts an extension's events in the manager's
// OpenTelemetry metrics, by the Go type of the extension's object (as reflect
// prints it; keep the set of types small). Its zero value counts nothing, and
// so does the value of a manager without metrics, at the cost of a nil check.
type ExtensionMetrics struct{ t *telemetry.Telemetry }

// Decoded counts an object of type typ decoded from the extension's field
// (fxsession.objects.decoded).
func (x ExtensionMetrics) Decoded(ctx context.Context, typ reflect.Type) {
	x.t.ObjectDecoded(ctx, typ)
}

// Conflict counts a compare-and-set write of the extension's field
// ([Extension.WriteField]) of an object of type typ that failed on a conflict
// (fxsession.update.conflicts) and, when retry, the new attempt the extension
// makes after it (fxsession.update.retries).
func (x ExtensionMetrics) Conflict(ctx context.Context, typ reflect.Type, retry bool) {
	x.t.UpdateConflict(ctx, typ, retry)
}

// extensions is what extensions keep in a request's session. The common case,
// one extension with one hook and one local, fits in its fixed slots: no
// allocation besides the record itself.
type extensions struct {
	hooks  []func(context.Context) error
	hook0  [1]func(context.Context) error // hooks' first backing array
	has0   bool                           // key0 holds a local
	key0   any
	val0   any
	locals map[any]any // the locals beyond key0

	ends []func()  // OnEnd hooks
	end0 [1]func() // ends' first backing array

	cctx     *commitContext // the request's commit context (middleware)
	commitMu sync.Mutex     // held by a commit point while it runs (middleware)
	cctx0    commitContext  // cctx's first home: a request rarely needs a second

	resumeErr error // the store failed to resume the session (kept here: it is rare)

	peer  *Peer         // the client of an Exchange (the request's req is nil then)
	alive chan struct{} // stops the keep-alive of a long-lived request
}

// exts returns the extensions record, creating it. Lock held.
func (st *state) exts() *extensions {
	if st.ext == nil {
		st.ext = &extensions{}
		st.ext.hooks = st.ext.hook0[:0]
	}
	return st.ext
}

// resumeErr returns the error of a failed resume, if any. Lock held.
func (st *state) resumeErr() error {
	if st.ext == nil {
		return nil
	}
	return st.ext.resumeErr
}

// local returns the local under key.
func (x *extensions) local(key any) any {
	if x.has0 && x.key0 == key {
		return x.val0
	}
	return x.locals[key]
}

// setLocal stores the local under key.
func (x *extensions) setLocal(key, value any) {
	switch {
	case !x.has0:
		x.has0, x.key0, x.val0 = true, key, value
	case x.key0 == key:
		x.val0 = value
	default:
		if x.locals == nil {
			x.locals = make(map[any]any)
		}
		x.locals[key] = value
	}
}

// refreshers are the locals that implement Refresher. Lock held.
func (x *extensions) refreshers() []Refresher {
	var out []Refresher
	if r, ok := x.val0.(Refresher); ok && x.has0 {
		out = append(out, r)
	}
	for _, v := range x.locals {
		if r, ok := v.(Refresher); ok {
			out = append(out, r)
		}
	}
	return out
}

// hookCount is the number of OnCommit hooks. Lock held.
func (st *state) hookCount() int {
	if st.ext == nil {
		return 0
	}
	return len(st.ext.hooks)
}
