package scope

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"

	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/inject"
	"github.com/fxsession/fxsession/session"
)

// group is the fx value group that collects the registrations of an app.
const group = "fxsession.scope.registrations"

// DefaultRetries is how many times [Handle.Update] tries before it gives up with
// [ErrConflict], unless [Retries] says otherwise.
const DefaultRetries = 10

var (
	// ErrConflict: [Handle.Update] kept meeting concurrent writes of the same object
	// and gave up after its retries. It also matches cache.ErrConflict.
	ErrConflict = errors.New("scope: update conflict")
	// ErrNotRegistered: a [Handle] for a type no scope.Provide registered.
	ErrNotRegistered = errors.New("scope: type is not session-scoped")
	// ErrNoSession is session.ErrNoSession: the context carries no session;
	// serve the handler through session.Manager.Middleware (or use
	// Manager.NewContext outside HTTP).
	ErrNoSession = session.ErrNoSession
	// ErrNotStored: [Handle.Update] with [MustStore] changed an object of a
	// visitor who has no session, and the change did not start one: it lives
	// only as long as the request. Start the session first (session.Session.Start)
	// or give the type an autostart field.
	ErrNotStored = errors.New("scope: change not stored: no session")
	// ErrNotReady: a Handle was used before the fx app finished constructing.
	ErrNotReady = errors.New("scope: the fx app has not been constructed yet")
)

// Registration is one scope.Provide, scope.Entities or scope.Implementations of
// an fx app. fx collects them in a value group; [Handle] receives them to find the
// app's registry. Applications never use it directly.
type Registration struct {
	desc     *descriptor
	ready    bool
	values   []reflect.Value
	graph    string
	logger   *slog.Logger
	registry *registry
}

type descKind uint8

const (
	kindProvider descKind = iota
	kindRequest
	kindEntities
	kindImplementations
)

// descriptor is what one registration call knows before fx runs. It is immutable
// and may be shared by several apps built from the same fx.Option.
type descriptor struct {
	kind    descKind
	name    string
	ctor    *ctorInfo // providers
	leaves  []leaf    // everything the startup invoke asks fx for
	injects []injectField
	opts    options
	repo    any // entities given as a value
	iface   reflect.Type
	impls   []reflect.Type
}

type injectField struct {
	index []int
	leaf  int
	obj   *paramObject // an fx.In struct (a Handle) instead of a leaf
	name  string
}

type options struct {
	key             string
	retries         int
	constructOnLoad bool
}

// Option configures one session-scoped type.
type Option interface{ apply(*options) error }

type optionFunc func(*options) error

func (f optionFunc) apply(o *options) error { return f(o) }

// keyPrefix starts the names of the session fields scope stores objects under.
const keyPrefix = "scope:"

// Key fixes the name the type is stored under ("scope:" + name) instead of the
// one derived from its package path and name, so that moving or renaming the
// type keeps the sessions' stored objects. name uses the cache key alphabet.
func Key(name string) Option {
	return optionFunc(func(o *options) error {
		if err := cache.ValidateKey(keyPrefix + name); err != nil {
			return fmt.Errorf("scope.Key(%q): %w", name, err)
		}
		o.key = keyPrefix + name
		return nil
	})
}

// Retries sets how many times [Handle.Update] tries (default [DefaultRetries]).
func Retries(n int) Option {
	return optionFunc(func(o *options) error {
		if n < 1 {
			return fmt.Errorf("scope.Retries(%d): want at least 1", n)
		}
		o.retries = n
		return nil
	})
}

// ConstructOnLoad makes every load of the type from a session call its
// constructor. Without it, once the first load in the process has called the
// constructor, later loads start from a copy of what it returned when that
// copy is the same as a new call: the constructor set only dependencies the
// container gave (singletons) and plain values (no pointer, slice, map,
// channel, func or interface inside). Pass it when the constructor must run
// for each load for what it does outside the object (a log line, a metric) or
// computes anew each time (a timestamp in a plain field).
func ConstructOnLoad() Option {
	return optionFunc(func(o *options) error {
		o.constructOnLoad = true
		return nil
	})
}

// Provide registers constructor as the provider of a session-scoped type: the
// pointer to a struct it returns (optionally with an error). The type is not
// provided to fx as a value: handlers and singletons reach it through an
// injected [Handle], per request.
//
// The constructor's parameters are resolved like any fx constructor's: singletons
// (resolved once, when the app starts), other session-scoped types (the request's
// instance), fx.In parameter structs with `name`, `optional` and `group` tags, and
// fx.Annotate with fx.ParamTags. Fields tagged `inject:""` (or
// `inject:"name=NAME,optional"`) that the constructor leaves zero are filled the
// same way.
//
// fx start fails, with an error naming the type, the field and the fix, when the
// type's state cannot be stored, when it is registered twice, when an entity it
// holds has no repository, when a singleton constructor takes it directly (a
// captive dependency: take a Handle instead), or when a parameter is missing.
func Provide(constructor any, opts ...Option) fx.Option {
	return provide(kindProvider, "Provide", constructor, opts)
}

// provide registers a scoped constructor of the given kind; call names the
// registering function in messages.
func provide(kind descKind, call string, constructor any, opts []Option) fx.Option {
	info, err := inspectConstructor(constructor, call)
	if err != nil {
		return fx.Error(err)
	}
	d := &descriptor{kind: kind, name: info.name, ctor: info}
	for _, o := range opts {
		if err := o.apply(&d.opts); err != nil {
			return fx.Error(fmt.Errorf("scope.%s(%s): %w", call, info.name, err))
		}
	}
	fields, err := inject.Fields(info.result)
	if err != nil {
		return fx.Error(fmt.Errorf("scope.%s(%s): %w", call, info.name, err))
	}
	for _, f := range fields {
		switch {
		case f.Inject && f.Type.Kind() == reflect.Struct && embeds(f.Type, inType):
			// A parameter object such as a Handle: filled like a constructor parameter.
			if f.InjectName != "" || f.InjectOptional {
				return fx.Error(fmt.Errorf("scope.%s(%s): field %s is an fx.In struct: tag it `inject:\"\"` (put names and optional on its fields)", call, info.name, f.Name))
			}
			obj, err := info.object(f.Type, "field "+f.Name)
			if err != nil {
				return fx.Error(fmt.Errorf("scope.%s(%s): %w", call, info.name, err))
			}
			d.injects = append(d.injects, injectField{index: f.Index, leaf: -1, obj: obj, name: f.Name})
		case f.Inject:
			d.injects = append(d.injects, injectField{index: f.Index, leaf: len(info.leaves), name: f.Name})
			info.leaves = append(info.leaves, leaf{t: f.Type, name: f.InjectName, optional: f.InjectOptional,
				what: fmt.Sprintf("field %s (%s, tagged inject)", f.Name, f.Type)})
		case f.Kind == inject.State && f.Type.Kind() == reflect.Struct && embeds(f.Type, inType):
			return fx.Error(fmt.Errorf("scope.%s(%s): field %s is a %s, an fx parameter object, and would be stored as state: tag it `inject:\"\"` so that fx fills it, or take it as a constructor parameter", call, info.name, f.Name, f.Type))
		}
	}
	d.leaves = info.leaves
	return d.options()
}

// Entities registers how an entity type is found by its ID: repository is a
// constructor of a repository (provided to the app by this call, so inject it
// elsewhere by its type and do not fx.Provide it again), or a ready repository
// value. A repository has the methods of [inject.Repository] (Find(ctx, id) (E,
// error)) and optionally [inject.BatchRepository] (FindMany), for an entity type
// E (a type with EntityID() string).
func Entities(repository any) fx.Option {
	if repository == nil {
		return fx.Error(errors.New("scope.Entities(nil): want a repository constructor or value"))
	}
	d := &descriptor{kind: kindEntities, name: funcName(repository)}
	if fn, name, ok, err := unwrapAnnotated("Entities", repository); ok {
		// fx.Annotate(constructor, fx.ParamTags(...)): fx provides it; the
		// registration asks for its result.
		if err != nil {
			return fx.Error(err)
		}
		d.name = name
		t := reflect.TypeOf(fn)
		d.leaves = []leaf{{t: t.Out(0), what: "the repository " + t.Out(0).String()}}
		return fx.Options(fx.Provide(repository), d.options())
	}
	v := reflect.ValueOf(repository)
	if v.Kind() != reflect.Func {
		d.repo = repository
		return d.options()
	}
	t := v.Type()
	if t.NumOut() == 0 || t.NumOut() > 2 || (t.NumOut() == 2 && t.Out(1) != errorType) {
		return fx.Error(fmt.Errorf("scope.Entities(%s): a repository constructor returns the repository, optionally with an error", d.name))
	}
	d.leaves = []leaf{{t: t.Out(0), what: "the repository " + t.Out(0).String()}}
	return fx.Options(fx.Provide(repository), d.options())
}

// Repository registers R, a repository already provided to the app (by
// fx.Provide or fx.Supply), as the way its entity type is found by ID. Use it when
// the repository is also used elsewhere, e.g. a catalog that session-scoped
// objects depend on and whose products they hold:
//
//	fx.Provide(shop.OpenCatalog),
//	scope.Repository[*shop.Catalog](),
func Repository[R any]() fx.Option {
	t := reflect.TypeFor[R]()
	d := &descriptor{kind: kindEntities, name: "Repository[" + t.String() + "]"}
	d.leaves = []leaf{{t: t, what: "the repository " + t.String()}}
	return d.options()
}

// Implementations registers the concrete types that interface-typed state of
// session-scoped objects may hold: stored state only ever decodes into registered
// types. Pass one value of each type, e.g. scope.Implementations[Shape](Circle{},
// &Square{}).
func Implementations[I any](impls ...I) fx.Option {
	iface := reflect.TypeFor[I]()
	d := &descriptor{kind: kindImplementations, name: "Implementations[" + iface.String() + "]", iface: iface}
	if iface.Kind() != reflect.Interface {
		return fx.Error(fmt.Errorf("scope.%s: %s is not an interface type", d.name, iface))
	}
	for i, v := range impls {
		t := reflect.TypeOf(any(v))
		if t == nil {
			return fx.Error(fmt.Errorf("scope.%s: value %d is nil; pass a value of each implementation", d.name, i+1))
		}
		d.impls = append(d.impls, t)
	}
	return d.options()
}

// options is the fx form of a registration: a module (so that its startup invoke
// runs before the application's own invokes) with the registration in the value
// group and the invoke that resolves its parameters.
func (d *descriptor) options() fx.Option {
	opts := []fx.Option{
		fx.Provide(fx.Annotate(func() *Registration { return &Registration{desc: d} }, fx.ResultTags(`group:"`+group+`"`))),
		fx.Invoke(d.invoke()),
	}
	switch d.kind {
	case kindProvider:
		opts = append(opts, fx.Provide(d.marker(markerType)), fx.ErrorHook(directUse{t: d.ctor.result, handle: "Handle", lifetime: "session"}))
	case kindRequest:
		opts = append(opts, fx.Provide(d.marker(requestMarkerType)), fx.ErrorHook(directUse{t: d.ctor.result, handle: "RequestHandle", lifetime: "request"}))
	}
	return fx.Module("fxsession.scope", opts...)
}

// marker returns a constructor of the marker function of the descriptor's type,
// which its handle requires (see Handle.Registered, RequestHandle.Registered).
func (d *descriptor) marker(markerType func(reflect.Type) reflect.Type) any {
	mt := markerType(d.ctor.result)
	fn := reflect.MakeFunc(mt, func([]reflect.Value) []reflect.Value {
		return []reflect.Value{reflect.Zero(d.ctor.result)}
	})
	ctor := reflect.FuncOf(nil, []reflect.Type{mt}, false)
	return reflect.MakeFunc(ctor, func([]reflect.Value) []reflect.Value { return []reflect.Value{fn} }).Interface()
}

// directUse explains an fx start that failed because something took the
// session-scoped type t directly ("missing type: *T"): fx cannot say that it
// is session-scoped and that a Handle reaches it.
type directUse struct {
	t                reflect.Type
	handle, lifetime string
}

// HandleError logs the explanation next to fx's error.
func (u directUse) HandleError(err error) {
	if err == nil || !mentionsMissing(err.Error(), u.t.String()) {
		return
	}
	slog.Default().Error(fmt.Sprintf("fxsession: %s is %s-scoped, so fx does not provide it: take a scope.%s[%s] instead and call its Get(ctx) in each request", u.t, u.lifetime, u.handle, u.t),
		"type", u.t.String())
}

// mentionsMissing reports whether msg says that type t is missing (dig's
// "missing type: T", T followed by the end, a space, a comma or a parenthesis).
func mentionsMissing(msg, t string) bool {
	const prefix = "missing type: "
	for {
		i := strings.Index(msg, prefix+t)
		if i < 0 {
			return false
		}
		rest := msg[i+len(prefix)+len(t):]
		if rest == "" || strings.ContainsRune(" ,)\n;", rune(rest[0])) {
			return true
		}
		msg = rest
	}
}

// invoke builds the startup invoke: a function whose single fx.In parameter asks
// for the registrations, the DOT graph, the logger and every leaf (optionally).
func (d *descriptor) invoke() any {
	st := invokeStruct(d.leaves)
	ft := reflect.FuncOf([]reflect.Type{st}, []reflect.Type{errorType}, false)
	return reflect.MakeFunc(ft, func(args []reflect.Value) []reflect.Value {
		errV := reflect.New(errorType).Elem()
		if err := d.resolved(args[0]); err != nil {
			errV.Set(reflect.ValueOf(err))
		}
		return []reflect.Value{errV}
	}).Interface()
}

func (d *descriptor) resolved(a reflect.Value) error {
	regs := a.Field(1).Interface().([]*Registration)
	var mine *Registration
	for _, r := range regs {
		if r.desc == d && !r.ready {
			mine = r
			break
		}
	}
	if mine == nil {
		return fmt.Errorf("scope: internal error: registration of %s not found in the fx value group", d.name)
	}
	mine.values = make([]reflect.Value, len(d.leaves))
	for i, l := range d.leaves {
		v := reflect.New(l.t).Elem()
		v.Set(a.Field(fixedFields + i))
		mine.values[i] = v
	}
	mine.graph = string(a.Field(2).Interface().(fx.DotGraph))
	mine.logger, _ = a.Field(3).Interface().(*slog.Logger)
	mine.ready = true
	for _, r := range regs {
		if !r.ready {
			return nil // the last registration's invoke builds the registry
		}
	}
	return build(regs)
}
