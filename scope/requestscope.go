package scope

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"

	"go.uber.org/fx"

	"github.com/fxsession/fxsession/session"
)

// ProvideRequest registers constructor as the provider of a request-scoped type:
// one instance per request, made on the request's first Get and dropped when the
// request ends. Code reaches it through an injected [RequestHandle], never
// directly, as a session-scoped type through a [Handle].
//
// The constructor's parameters are resolved like [Provide]'s: singletons
// (resolved once, when the app starts), session-scoped types (the request's
// instance: the session is resumed, never started, for that), other
// request-scoped types (this request's instances), fx.In parameter structs and
// `inject`-tagged fields. A context.Context parameter is the context of the
// request's first Get of the type (its values, deadline and cancellation).
// Nothing of a request-scoped object is stored.
//
// When the request ends — the handler returned or panicked — the request's
// instances that have a Close() error method are closed in the reverse order of
// their construction, and so are the functions registered with
// [AtRequestEnd]; their errors are logged. Handlers run through the session
// middleware (session.Manager.Middleware) or a transport that uses
// session.Exchange (package grpcsession); the request scope works without a
// session and never starts one.
//
// fx start fails, with an error naming both types and the fix, when a singleton
// constructor takes a request-scoped type directly (take a RequestHandle), when
// a session-scoped type takes one (it would keep one request's instance for the
// whole session: take a RequestHandle and call its Get in each request), or when
// a parameter is missing.
func ProvideRequest(constructor any, opts ...Option) fx.Option {
	return provide(kindRequest, "ProvideRequest", constructor, opts)
}

// RequestHandle reaches the request's instance of the request-scoped type T (a
// pointer to a struct registered with [ProvideRequest]). Inject it where you
// would have injected T, and call Get with the request's context. Like
// [Handle], it is an fx parameter object: no provider per T is needed.
//
// A RequestHandle for a type that no ProvideRequest registered fails fx start:
// the app reports "missing type: func(scope.registerItWithScopeProvideRequest) T".
type RequestHandle[T any] struct {
	fx.In
	// Registrations links the handle to the app's scoped types; fx fills it. Do
	// not set it yourself.
	Registrations []*Registration `group:"fxsession.scope.registrations"`
	// Registered is provided by scope.ProvideRequest for its type only, so that
	// fx start fails for a RequestHandle of a type never registered. Do not set
	// it yourself; it is never called.
	Registered func(registerItWithScopeProvideRequest) T
}

// registerItWithScopeProvideRequest is the parameter of the marker function
// scope.ProvideRequest provides for its type.
type registerItWithScopeProvideRequest struct{}

// requestMarkerType is the type of RequestHandle[T].Registered for t.
func requestMarkerType(t reflect.Type) reflect.Type {
	return reflect.FuncOf([]reflect.Type{reflect.TypeFor[registerItWithScopeProvideRequest]()}, []reflect.Type{t}, false)
}

// Get returns the request's instance of T, constructing it on the first Get of
// the request. Every Get of one request returns the same instance, also from
// several goroutines. It is ErrNoSession outside the session middleware (or an
// Exchange): the request's end is what closes the instance.
func (h RequestHandle[T]) Get(ctx context.Context) (T, error) {
	var zero T
	if len(h.Registrations) == 0 || h.Registrations[0].registry == nil {
		return zero, fmt.Errorf("%w: %v: register it with scope.ProvideRequest(<constructor returning %v>)", ErrNotRegistered, reflect.TypeFor[T](), reflect.TypeFor[T]())
	}
	r := h.Registrations[0].registry
	e := r.byType[reflect.TypeFor[T]()]
	if e == nil || !e.request {
		return zero, fmt.Errorf("%w: %v is not request-scoped: register it with scope.ProvideRequest(<constructor returning %v>)", ErrNotRegistered, reflect.TypeFor[T](), reflect.TypeFor[T]())
	}
	rq, err := r.requestScope(ctx)
	if err != nil {
		return zero, err
	}
	obj, err := rq.instance(ctx, e)
	if err != nil {
		return zero, err
	}
	return obj.(T), nil
}

// AtRequestEnd registers fn to run when the request of ctx ends, with the
// request-scoped objects' Close methods, in the reverse order of registration
// (the latest first); an error it returns is logged. A request-scoped
// constructor uses it for clean-up that is not a Close method.
func AtRequestEnd(ctx context.Context, fn func() error) error {
	s, ok := session.FromContext(ctx)
	if !ok || s == nil {
		return ErrNoSession
	}
	rq, err := requestEnds(s)
	if err != nil {
		return err
	}
	rq.mu.Lock()
	rq.closers = append(rq.closers, closer{name: "AtRequestEnd", fn: fn})
	rq.mu.Unlock()
	return nil
}

// reqScope is one request's request-scoped instances and end hooks.
type reqScope struct {
	sess *session.Session

	mu      sync.Mutex
	reg     *registry // set by the first Get (nil while only AtRequestEnd ran)
	slots   []reqSlot
	closers []closer // in construction order; run backwards
	ended   bool

	inline  [2]reqSlot // slots' array when the app has at most two request-scoped types
	closer0 [2]closer  // closers' first backing array
}

type reqSlot struct {
	mu  sync.Mutex
	obj atomic.Value // the instance, once made
}

type closer struct {
	name string
	fn   func() error
}

// requestScopeKey is the session local of a request's scope.
type requestScopeKey struct{}

// requestScope returns the request's scope, ready for r's types.
func (r *registry) requestScope(ctx context.Context) (*reqScope, error) {
	s, ok := session.FromContext(ctx)
	if !ok || s == nil {
		return nil, ErrNoSession
	}
	rq, err := requestEnds(s)
	if err != nil {
		return nil, err
	}
	rq.mu.Lock()
	defer rq.mu.Unlock()
	if rq.reg == nil {
		rq.reg = r
		if n := len(r.requests); n <= len(rq.inline) {
			rq.slots = rq.inline[:n]
		} else {
			rq.slots = make([]reqSlot, n)
		}
	}
	if rq.reg != r {
		return nil, fmt.Errorf("scope: one request used the request-scoped types of two fx apps")
	}
	return rq, nil
}

// requestEnds returns the request's scope, creating it (and its end hook) once.
func requestEnds(s *session.Session) (*reqScope, error) {
	ext := session.ExtensionOf(s)
	fresh := &reqScope{sess: s}
	fresh.closers = fresh.closer0[:0]
	v, loaded, err := ext.LoadOrStoreLocal(requestScopeKey{}, fresh)
	if err != nil {
		return nil, err
	}
	rq := v.(*reqScope)
	if !loaded {
		if err := ext.OnEnd(rq.end); err != nil {
			return nil, err
		}
	}
	return rq, nil
}

// instance returns the request's instance of e, constructing it once.
func (rq *reqScope) instance(ctx context.Context, e *entry) (any, error) {
	sl := &rq.slots[e.idx]
	if obj := sl.obj.Load(); obj != nil {
		return obj, nil
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if obj := sl.obj.Load(); obj != nil {
		return obj, nil
	}
	rq.mu.Lock()
	ended := rq.ended
	rq.mu.Unlock()
	if ended {
		return nil, fmt.Errorf("scope: %s asked for after its request ended", e.t)
	}
	obj, err := rq.construct(ctx, e)
	if err != nil {
		return nil, err
	}
	if c, ok := obj.(io.Closer); ok { // an io.Closer is any Close() error
		rq.mu.Lock()
		rq.closers = append(rq.closers, closer{name: e.t.String(), fn: c.Close})
		rq.mu.Unlock()
	}
	sl.obj.Store(obj)
	return obj, nil
}

// construct calls e's constructor with singletons, the request's session-scoped
// instances and its request-scoped ones.
func (rq *reqScope) construct(ctx context.Context, e *entry) (any, error) {
	v, err := callConstructor(ctx, e, rq)
	if err != nil {
		return nil, err
	}
	return v.Interface(), nil
}

// dep is the request's instance of d: request-scoped from this scope,
// session-scoped from the session's.
func (rq *reqScope) dep(ctx context.Context, d *entry) (any, error) {
	if d.request {
		return rq.instance(ctx, d)
	}
	st, err := rq.reg.state(rq.sess)
	if err != nil {
		return nil, err
	}
	return st.dep(ctx, d)
}

// end closes the request's instances and runs its end hooks, the latest first.
func (rq *reqScope) end() {
	rq.mu.Lock()
	rq.ended = true
	closers := slices.Clone(rq.closers)
	rq.closers = nil
	rq.mu.Unlock()
	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		c := closers[i]
		if err := closeOne(c); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
		}
	}
	if len(errs) > 0 {
		logger := session.ExtensionOf(rq.sess).Logger()
		if rq.reg != nil {
			logger = rq.reg.logger
		}
		logger.Error("fxsession: closing request-scoped objects", "error", errors.Join(errs...))
	}
}

// closeOne runs one closer, turning a panic into an error.
func closeOne(c closer) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return c.fn()
}
