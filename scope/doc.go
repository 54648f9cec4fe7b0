// Package scope gives an fx application a session lifetime: objects that live as
// long as a visitor's HTTP session, the way singletons live as long as the
// process. It is the Go form of Neos Flow's @Flow\Scope("session"), Spring's
// @SessionScope and CDI's @SessionScoped.
//
//	app := fx.New(
//		session.Module,                      // sessions (package session)
//		fx.Provide(shop.OpenCatalog),        // a singleton
//		scope.Provide(NewShoppingBasket),    // a session-scoped type
//		scope.Repository[*shop.Catalog](),   // how its products (entities) are found
//		fx.Invoke(routes),
//	)
//
//	func routes(mux *http.ServeMux, basket scope.Handle[*ShoppingBasket]) {
//		mux.HandleFunc("POST /basket/items", func(w http.ResponseWriter, r *http.Request) {
//			err := basket.Update(r.Context(), func(b *ShoppingBasket) error {
//				return b.Add(r.Context(), r.FormValue("sku"), 1)
//			})
//			...
//		})
//	}
//
// Serve the handlers through the session middleware (session.Manager.Middleware);
// scope finds the request's session in the context.
//
// # Lifetimes
//
// A session-scoped type is a pointer to a struct with a constructor registered by
// [Provide]. Its constructor takes singletons and other session-scoped types like
// any fx constructor. Code reaches the request's instance through an injected
// [Handle] (a typed scoped proxy) and the request's context: [Handle.Get] returns
// the same instance for every call of one request, also from several goroutines;
// a session-scoped type that depends on another gets that same instance.
//
// A request-scoped type ([ProvideRequest]) lives as long as one request: code
// reaches its instance through a [RequestHandle], every Get of a request returns
// the same one, and it is closed (a Close() error method, or [AtRequestEnd])
// when the request ends, also when the handler panics. It is never stored and
// needs no session. Side by side:
//
//	lifetime   registered with        reached through         stored
//	singleton  fx.Provide             the value itself        no
//	session    scope.Provide          scope.Handle[T]         in the session
//	request    scope.ProvideRequest   scope.RequestHandle[T]  no
//
// A longer lifetime may take a shorter one only through its handle: fx start
// fails when a singleton takes a session- or request-scoped type, or a
// session-scoped type a request-scoped one, naming both and the fix.
//
// Everything slow happens once, when the fx app is constructed: the constructor's
// singleton parameters are resolved, the storage plan of the type is built (package
// inject) and validated. The request path never calls fx or dig.
//
// # Lazy start
//
// Until a session starts, every request gets a fresh instance from the
// constructor; nothing is stored, no cookie is sent and the store is not touched,
// so a shared cache in front can serve anonymous pages. Once the session exists,
// an object is loaded (decoded) on the first Get of a request that asks for it —
// the types a request does not touch cost nothing — and written at the request's
// commit (before the response headers, and again when the handler returns) only
// when its encoded state changed.
//
// # Autostart
//
// A session starts when code starts it (session.Session.Start), when a field
// tagged `session:"autostart"` changed during the request, or when a method that
// embeds the mark calls it — the Go form of Flow's @Flow\Session(autoStart = TRUE):
//
//	type ShoppingBasket struct {
//		scope.Autostart
//		Items []LineItem `msgpack:"items" session:"autostart"`
//	}
//
//	func (b *ShoppingBasket) Clear() {
//		b.StartSession() // like @Flow\Session(autoStart = TRUE) on this method
//		b.Items = nil
//	}
//
// The call is the method's first line, where a Flow reviewer looks for the
// annotation; it is a plain method call, so there is no code generation and no
// proxy. [Autostart] is transient (never stored). The session starts at the
// request's commit point, before the response headers, so the cookie goes out
// with the response; [Handle.Update] starts it (and writes the object) at once.
//
// # Stripping and re-injection
//
// What the container gave an object is never stored: its constructor's parameters
// (kept in unexported fields, or in exported fields of a parameter's type) and its
// fields tagged `inject:""` (`inject:"name=NAME,optional"`; a Handle field too).
// Loading starts from what the constructor gives — a call, or a copy of its
// first result when that result holds only the container's singletons and plain
// values (see [ConstructOnLoad]) — so after a load those fields hold the
// container's live instances again; `inject` fields the constructor leaves zero
// are filled from the container. Fields tagged `session:"-"` are transient: never
// stored, back at their fresh value.
//
// # Entities
//
// An entity — a type with EntityID() string whose repository is registered with
// [Entities] or [Repository] — reachable from an object's state is stored as a
// reference while unchanged and whole when it was modified or is new; references
// are fetched on load in one batch per type (FindMany). A reference whose entity
// is gone loads as absent with a warning. See package inject for the details.
//
// # Atomic updates
//
// [Handle.Update] reads the stored state afresh, applies a function and writes
// with a version check, retrying on conflict: concurrent requests of one session
// lose no change. Within one process, Updates of one object of one session also
// wait for each other, so the retries only absorb writers in other processes.
//
// # Changed types after a deploy
//
// Stored state is a msgpack map of field names, so adding or removing fields never
// fails a load. An object whose stored state no longer fits its type (a field
// changed its kind) loads as a fresh instance with a warning naming the type and
// the session's hashed ID; the session's other objects are unaffected and the
// request succeeds. Use [Key] to keep the stored name when a type moves.
//
// # Startup validation
//
// fx fails to construct the app, with an error naming the type, the field and the
// fix, when: a singleton constructor takes a session-scoped type directly (a
// captive dependency: take a Handle instead), state has a field that cannot be
// stored (func, chan, unsafe.Pointer, an interface without [Implementations]), a
// type is registered twice, an entity type has no repository, a constructor does
// not return a pointer to a struct, a parameter is not provided, or session-scoped
// types depend on each other in a cycle.
//
// # fx.Annotate
//
// [Provide] accepts fx.Annotate(constructor, fx.ParamTags(...)). fx.Annotate
// returns a value of an unexported fx type; scope builds it the way fx does (its
// Build method, pinned by a test against fx v1.24). ResultTags, As and lifecycle
// hooks are refused: session-scoped types are found by type alone. A constructor
// with an fx.In parameter struct (names, optional, groups) works without
// fx.Annotate.
package scope
