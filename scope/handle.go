package scope

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
	"time"

	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/internal/backoff"
	"github.com/fxsession/fxsession/session"
)

// Handle reaches the request's instance of the session-scoped type T (a pointer
// to a struct registered with [Provide]): the Go form of a scoped proxy. Inject it
// where you would have injected T — a handler's constructor, a singleton, an fx.In
// struct, another session-scoped constructor — and call Get with the request's
// context.
//
// Handle is an fx parameter object (it embeds fx.In), which is how it can be
// injected for every T without a provider per type; fx fills its fields.
//
// A Handle for a type that no [Provide] registered fails fx start: the app
// reports "missing type: func(scope.registerItWithScopeProvide) T". Register T
// with scope.Provide(<constructor returning T>).
type Handle[T any] struct {
	fx.In
	// Registrations links the handle to the app's session-scoped types; fx fills
	// it. Do not set it yourself.
	Registrations []*Registration `group:"fxsession.scope.registrations"`
	// Registered is provided by scope.Provide for its type only, so that fx
	// start fails for a Handle of a type never registered. Do not set it
	// yourself; it is never called.
	Registered func(registerItWithScopeProvide) T
}

// registerItWithScopeProvide is the parameter of the marker function
// scope.Provide provides for its type. Its name is the fix fx shows when a
// Handle's type was never registered: "missing type:
// func(scope.registerItWithScopeProvide) *T".
type registerItWithScopeProvide struct{}

// markerType is the type of Handle[T].Registered for t.
func markerType(t reflect.Type) reflect.Type {
	return reflect.FuncOf([]reflect.Type{reflect.TypeFor[registerItWithScopeProvide]()}, []reflect.Type{t}, false)
}

// isMarker reports whether t is the marker type of some T, and returns T.
func isMarker(t reflect.Type) (reflect.Type, bool) {
	if t.Kind() != reflect.Func || t.NumIn() != 1 || t.NumOut() != 1 || t.In(0) != reflect.TypeFor[registerItWithScopeProvide]() {
		return nil, false
	}
	return t.Out(0), true
}

func (h Handle[T]) lookup() (*registry, *entry, error) {
	if len(h.Registrations) == 0 {
		return nil, nil, fmt.Errorf("%w: %v: register it with scope.Provide(<constructor returning %v>)", ErrNotRegistered, reflect.TypeFor[T](), reflect.TypeFor[T]())
	}
	r := h.Registrations[0].registry
	if r == nil {
		return nil, nil, ErrNotReady
	}
	e := r.byType[reflect.TypeFor[T]()]
	if e == nil {
		return nil, nil, fmt.Errorf("%w: %v: register it with scope.Provide(<constructor returning %v>)", ErrNotRegistered, reflect.TypeFor[T](), reflect.TypeFor[T]())
	}
	return r, e, nil
}

func (r *registry) request(ctx context.Context) (*reqState, error) {
	s, ok := session.FromContext(ctx)
	if !ok || s == nil {
		return nil, ErrNoSession
	}
	return r.state(s)
}

// Get returns the request's instance of T. Every Get of one request returns the
// same instance, also from several goroutines. Before the session starts it is a
// fresh instance from the constructor (nothing is stored, no cookie is sent);
// afterwards it is loaded from the session on the first Get of the request (only
// the types a request asks for are loaded) and written back at the request's
// commit when its encoded state changed.
func (h Handle[T]) Get(ctx context.Context) (T, error) {
	var zero T
	r, e, err := h.lookup()
	if err != nil {
		return zero, err
	}
	st, err := r.request(ctx)
	if err != nil {
		return zero, err
	}
	inst, err := st.instance(ctx, e)
	if err != nil {
		return zero, err
	}
	return inst.obj.(T), nil
}

// Update changes T atomically: it builds an instance from the stored state (as
// this request last read or wrote it — the session's resume reads the whole
// record — or afresh), applies fn, and writes the result with a version check
// (compare-and-set). When another request wrote in between, it reads afresh and
// applies fn again, after a jittered pause (none after a stale copy), up to
// [Retries] attempts (default 10), and then returns an error matching
// [ErrConflict] (and cache.ErrConflict).
// Concurrent Updates of one object in one session lose no change; fn may run
// more than once and should only change the object.
//
// Afterwards Get returns the updated instance in this request; changes made
// earlier in the request to an instance from Get (and not yet committed) are
// replaced by it, so change an object either through Update or through Get, not
// both. An error from fn is returned as is and nothing is written. fn must not
// call Update of the same type (it would wait for itself).
//
// Before the session starts, fn changes the request's instance; when that
// triggers autostart (an autostart field changed, or StartSession was called) the
// session starts and the object is written at once. When it does not — T has no
// autostart field, or fn left them alone — the change stays on the request's
// instance and is stored only if something else starts the session during the
// request (Neos Flow's semantics): otherwise it is gone with the request, and
// Update still returns nil. In development mode (session Config.Development)
// that is logged as a warning, once per type. Pass [MustStore] to be told
// instead: Update then returns an error matching [ErrNotStored].
func (h Handle[T]) Update(ctx context.Context, fn func(T) error, opts ...UpdateOption) error {
	r, e, err := h.lookup()
	if err != nil {
		return err
	}
	st, err := r.request(ctx)
	if err != nil {
		return err
	}
	var o updateOptions
	for _, opt := range opts {
		opt.applyUpdate(&o)
	}
	return st.update(ctx, e, o, func(obj any) error { return fn(obj.(T)) })
}

// UpdateOption changes how one [Handle.Update] behaves.
type UpdateOption interface{ applyUpdate(*updateOptions) }

type updateOptions struct {
	mustStore bool
}

type mustStore struct{}

func (mustStore) applyUpdate(o *updateOptions) { o.mustStore = true }

// MustStore makes [Handle.Update] return an error matching [ErrNotStored] when
// the visitor has no session and the change does not start one (the change then
// lives only as long as the request), instead of nil.
func MustStore() UpdateOption { return mustStore{} }

// Autostart, embedded in a session-scoped type, lets a method start the session,
// the Go form of Neos Flow's @Flow\Session(autoStart = TRUE):
//
//	type ShoppingBasket struct {
//		scope.Autostart
//		Items []string `msgpack:"items"`
//	}
//
//	func (b *ShoppingBasket) Add(sku string) {
//		b.StartSession() // this method starts the session
//		b.Items = append(b.Items, sku)
//	}
//
// The session starts at the request's commit point, before the response
// headers, like a change to an autostart field. Autostart is never stored.
type Autostart struct {
	hook *autostartHook
}

type autostartHook struct{ called atomic.Bool }

// StartSession marks that the session must start at the end of this request.
// Outside a request (an instance built by hand) it does nothing.
func (a *Autostart) StartSession() {
	if a != nil && a.hook != nil {
		a.hook.called.Store(true)
	}
}

// update is Handle.Update without the type parameter.
func (st *reqState) update(ctx context.Context, e *entry, o updateOptions, fn func(any) error) error {
	started, err := st.sess.IsStarted(ctx)
	if err != nil {
		return err
	}
	if !started {
		inst, err := st.instance(ctx, e)
		if err != nil {
			return err
		}
		// fn runs without scope's locks held: it may call Get, or write the response.
		if err := fn(inst.obj); err != nil {
			return err
		}
		sl := &st.slots[e.idx]
		sl.mu.Lock()
		defer sl.mu.Unlock()
		trigger, err := inst.triggered(e)
		if err != nil || inst.stored {
			return err
		}
		if !trigger {
			inst.updated = true
			if o.mustStore {
				return fmt.Errorf("%w: %s changed without a session, and the change does not start one", ErrNotStored, e.t)
			}
			return nil
		}
		if err := st.sess.Start(ctx); err != nil {
			return err
		}
		enc, err := e.plan.Encode(ctx, inst.obj, inst.tracker)
		if err != nil {
			return err
		}
		if _, err := st.ext.WriteField(ctx, e.key, enc, 0); err != nil {
			return err
		}
		inst.baseline, inst.stored = enc, true
		return nil
	}

	key := lockKey{sess: st.sess.Ref(), idx: e.idx}
	l, err := st.reg.updates.lock(ctx, key)
	if err != nil {
		return fmt.Errorf("scope: update of %s: %w", e.t, err)
	}
	defer st.reg.updates.unlock(key, l)
	sl := &st.slots[e.idx]
	// The first attempt starts from the field as this request last read or
	// wrote it, when known, else as the session's resume read it (the whole
	// record comes in one round trip): no read. A stale copy fails the version
	// check and is read afresh at once.
	var (
		seen        []byte
		seenVersion cache.Version
		useSeen     bool
	)
	sl.mu.Lock()
	if cur := sl.inst.Load(); cur != nil && cur.seenKnown {
		seen, seenVersion, useSeen = cur.seen, cur.seenVersion, true
	}
	sl.mu.Unlock()
	if !useSeen {
		b, v, ferr := st.ext.Field(ctx, e.key)
		switch {
		case errors.Is(ferr, cache.ErrNotFound):
			useSeen = true // absent as of the resume
		case ferr == nil && v != 0: // stored (a staged change has no version)
			seen, seenVersion, useSeen = b, v, true
		}
	}
	pause := backoff.Backoff{Min: time.Millisecond, Max: 64 * time.Millisecond}
	for attempt := 1; ; attempt++ {
		var (
			data    []byte
			version cache.Version
		)
		fromSeen := useSeen
		if useSeen {
			data, version, useSeen = seen, seenVersion, false
		} else {
			data, version, err = st.ext.ReadField(ctx, e.key)
			if err != nil && !errors.Is(err, cache.ErrNotFound) {
				return err
			}
		}
		inst, err := st.build(ctx, e, data)
		if err != nil {
			return err
		}
		if err := fn(inst.obj); err != nil {
			return err
		}
		var baseline []byte
		if version != 0 {
			baseline = data
		}
		enc, changed, err := e.plan.EncodeChanged(ctx, inst.obj, inst.tracker, baseline)
		if err != nil {
			return err
		}
		if !changed && fromSeen {
			// Nothing to write against a copy that may be stale: only the
			// stored state can tell.
			attempt--
			continue
		}
		if !changed {
			inst.baseline = data
			inst.seen, inst.seenVersion, inst.seenKnown = data, version, true
			// Clean until Get hands it out; an object holding entities is always
			// compared, as its entities may be shared with other code.
			inst.clean.Store(!e.plan.HasEntities())
			sl.install(inst)
			return nil
		}
		newVersion, err := st.ext.WriteField(ctx, e.key, enc, version)
		if err == nil {
			inst.baseline = enc
			inst.seen, inst.seenVersion, inst.seenKnown = enc, newVersion, true
			inst.clean.Store(!e.plan.HasEntities())
			sl.install(inst)
			return nil
		}
		if !errors.Is(err, cache.ErrConflict) {
			return err
		}
		if attempt >= e.retries {
			st.ext.Metrics().Conflict(ctx, e.t, false)
			return fmt.Errorf("%w: %s in session %s after %d attempts: %w", ErrConflict, e.t, st.sess.Ref(), attempt, err)
		}
		st.ext.Metrics().Conflict(ctx, e.t, true)
		if fromSeen {
			continue // a stale copy: read afresh at once, without a pause
		}
		if !pause.Wait(ctx) {
			return fmt.Errorf("scope: update of %s: %w", e.t, ctx.Err())
		}
	}
}

// install makes inst the request's instance.
func (sl *slot) install(inst *instance) {
	sl.mu.Lock()
	sl.inst.Store(inst)
	sl.mu.Unlock()
}
