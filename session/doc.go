// Package session is fxsession's low-level session layer: a visitor's session,
// its manager, the HTTP middleware, cookies, metadata, bags and flashes, tags, ID
// renewal and garbage collection. It stores through a [cache.Store] (memory,
// file, Redis, SQL). The session lifetime for fx objects (package scope) is
// built on it.
//
// # Usage
//
// Create a [Manager] with [New] (or provide one with [Module]) and wrap the
// router with [Manager.Middleware]. Handlers find the request's [Session] with
// [FromContext]:
//
//	m, _ := session.New(store, session.Config{})
//	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
//		s, _ := session.FromContext(r.Context())
//		_ = s.RenewID(r.Context())          // starts one if needed; new ID on login
//		_ = s.AddTag(r.Context(), "user:42") // for Manager.DestroyByTag
//		_ = s.Put(r.Context(), "user", 42)
//	})
//	http.ListenAndServe(":8080", m.Middleware(mux))
//
// # Lazy sessions
//
// A request without a session cookie gets an unstarted session: it costs no
// store access and the response gets no Set-Cookie, so a cache in front
// (Varnish) can serve anonymous pages. A session starts only when code calls
// [Session.Start] (or [Session.RenewID]). A request that carries a cookie is
// looked up in the store on the session's first use only, so routes that never
// touch the session never touch the store either. Responses of requests that
// had a session carry "Cache-Control: private" and "Vary: Cookie".
//
// # Commit points
//
// Writes ([Session.Put], bags, flashes, tags) are staged in memory and written
// just before the response's first byte (the middleware wraps the
// ResponseWriter; http.Flusher, http.Hijacker, io.ReaderFrom and
// http.ResponseController keep working) and again when the handler returns,
// for changes made while the response streamed. A request that changed nothing
// writes nothing, except a metadata touch at most once per
// Config.UpdateMetadataThreshold (default 60 s). A session started after the
// response began cannot send its cookie: [Session.Start] returns
// ErrHeadersSent and the mistake is logged.
//
// # Storage
//
// A session is one record of the store's namespace Config.Namespace (default
// "session"), keyed by its reference ([Session.Ref], the public part of its ID).
// The record's fields are the metadata ("m": the start, the SHA-256 of the ID's
// secret part, the session's own lifetime), the last activity ("a"), one field
// per value ("v:<key>"), per bag ("b:<name>"), the flash bag ("f") and per
// extension object ("e:<name>", package scope's objects); the record's tags are
// the session's tags and its expiry the session's. Resuming a session reads its
// whole record in one store round trip; a commit is one write of the fields
// that changed. The metadata is written only when it changes (start, renewal),
// conditional on its version: a renewal that meets another one reads it again
// and retries, and tags are added and removed by the store, so concurrent
// requests of one session lose no tag or touch. Renewing the ID replaces the
// secret's hash and moves no data. Destroying a session deletes its record in
// one call, and a request racing the destroy never brings it back (its write
// needs the record to exist).
//
// # Security
//
//   - A session ID is 65 characters of unpadded base64url ([IDLength]) from
//     crypto/rand: a 128-bit selector, the session's public reference
//     ([Session.Ref], [RefLength]: the key of its record, what logs and admin
//     tools show), and a 256-bit verifier, the secret.
//   - The store never holds an ID nor a verifier, only the verifier's SHA-256,
//     compared in constant time: a leaked store, backup or admin listing gives
//     no usable cookie. Renewal replaces the verifier, so the previous cookie
//     stops working at the commit.
//   - Cookie values are checked for exact length, alphabet and canonical
//     encoding ([ValidID]) before any store access; anything else counts as no
//     session.
//   - Strict mode, always: an ID the server did not issue (or that expired, was
//     destroyed or renewed) is never adopted: the request proceeds without a
//     session and its response expires the cookie; starting always mints a new
//     ID. Call [Session.RenewID] on login and on every privilege change (session
//     fixation).
//   - The cookie is HttpOnly and SameSite=Lax by default; Secure follows the
//     request (TLS, or X-Forwarded-Proto from [Config.TrustedProxies]) unless
//     configured; SameSite None forces Secure; [Config.HostPrefix] sends a
//     "__Host-" cookie that other subdomains cannot set or overwrite.
//   - Sessions end after Config.InactivityTimeout (default one hour) and
//     optionally after Config.AbsoluteLifetime, checked on every resume;
//     expired sessions are removed by a background collector, a bounded number
//     per run ([Manager.CollectGarbage]), never by a request.
//   - Stored values are limited by Config.MaxPayload (default 1 MiB). They are
//     msgpack, decoded only into the Go type the caller passes; before
//     decoding, their structure is checked so that corrupt or hostile bytes
//     cannot make the decoder allocate for billions of elements or recurse
//     without bound.
//
// # Bags, flashes, read-only and stateless routes
//
// Named attribute bags ([Session.Bag], registered with [RegisterBag] or
// [Manager.RegisterBag] before serving) keep a group of values in one field, as
// Symfony's registerBag. [Session.Flashes] holds messages read once.
// [Session.ReadOnly] returns a view that refuses writes with [ErrReadOnly]; the
// [ReadOnly] route wrapper does it for a whole route, which then writes nothing
// back. [Stateless] marks routes that must not use the session: an error in
// development mode, a warning in production.
//
// # Concurrent requests of one session
//
// Every value is its own field of the session's record, so two requests of a
// session that change different values (or different session-scoped objects, or
// different bags) both survive. For one object changed concurrently, scope's Handle.Update is an
// optimistic, version-checked write. Handlers that cannot be written that way
// (read, decide, write) opt into a per-session lock with the [Exclusive] route
// wrapper: it serialises the session's requests across processes through a
// cache-layer lock with an owner token (Config.LockTTL, Config.LockWait; a 503
// when the lock cannot be had), and read-only routes never lock.
//
// # Administration
//
// [Manager.All], [Manager.ByTag], [Manager.Session] (by ID or reference),
// [Manager.Destroy], [Manager.DestroyByTag], [Manager.DestroyAll] and
// [Manager.CollectGarbage] serve admin commands.
package session
