package session

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// reqState is everything the middleware allocates for a request, in one
// allocation: the session's state, its handle, the request context that carries
// it and the wrapping ResponseWriter.
type reqState struct {
	state
	ctx reqContext
	rw  responseWriter
}

// reqContext is the request's context with the session in it. It embeds the
// parent, so deadlines, cancellation and other values behave as the parent's;
// it saves the allocation of a context.WithValue.
type reqContext struct {
	context.Context
	root Session // the request's session
}

// Value returns the session for its key and asks the parent otherwise.
func (c *reqContext) Value(key any) any {
	if _, ok := key.(ctxKey); ok {
		return &c.root
	}
	return c.Context.Value(key)
}

// Middleware gives each request a lazy session ([FromContext]) and commits it:
// just before the response's first byte (a wrapping ResponseWriter that keeps
// http.Flusher, http.Hijacker, io.ReaderFrom and http.ResponseController
// working) and again when next returns. It works with any router.
//
// A request without an ID (the cookie, or the header of Config.IDFrom) gets an
// unstarted session and costs no store access; an ID is checked for length and
// alphabet and, when well-formed, looked up on the session's first use only.
//
// A long-lived request (one that flushes or hijacks its response: server-sent
// events, WebSockets) keeps its session alive while it runs: its activity is
// written at the update threshold, so the session does not expire under a
// connection that stays open. The request's end hooks (request-scoped objects'
// Close) run when the handler returns, also when it panics.
//
// Not inlined: the handler it returns is compiled here, where WithContext is
// inlined into it and its request copy joins the state's allocation.
//
//go:noinline
func (m *Manager) Middleware(next http.Handler) http.Handler {
	m.seal()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hs := &httpState{}
		rs := &hs.reqState
		m.initRequest(r.Context(), rs)
		rs.rw.rs = rs
		rs.rw.ResponseWriter = w
		if id, src := m.requestID(r.Header); src != srcNone {
			rs.cookieID, rs.src = id, src
			rs.phase = phaseLazy
		}
		// The request with the session's context lives in the same allocation
		// as the state: WithContext is inlined, so its copy stays on the stack
		// and is copied here, where the handler's *http.Request points.
		hs.req = *r.WithContext(&rs.ctx)
		r = &hs.req
		rs.req = r
		defer func() {
			if !rs.ended() {
				rs.endAbruptly() // the handler panicked: finish did not run
			}
			// A session never used has no end hooks and nothing to commit.
			if rs.used() {
				rs.end()
			}
		}()
		next.ServeHTTP(&rs.rw, r)
		rs.finish()
	})
}

// httpState is the middleware's one allocation per request: the request state
// and the handler's request, which carries the state's context.
type httpState struct {
	reqState
	req http.Request
}

// newRequest makes a request's state, its session and its context.
func (m *Manager) newRequest(parent context.Context) *reqState {
	rs := &reqState{}
	m.initRequest(parent, rs)
	return rs
}

// initRequest prepares a zero request state, its session and its context.
func (m *Manager) initRequest(parent context.Context, rs *reqState) {
	rs.m = m
	rs.owner = rs
	rs.request = true
	rs.ctx.root.st = &rs.state
	rs.ctx.Context = parent
}

// idle reports whether the request never needed its session: nothing to commit
// and no header to add. Lock held.
func (rs *reqState) idle() bool {
	return (rs.phase == phaseNone || rs.phase == phaseLazy) && !rs.exposed && rs.hookCount() == 0 && rs.resumeErr() == nil
}

// passIdle marks the headers done when the request is idle, in one hold of the
// lock: a Start from another goroutine comes before (and is committed, its
// cookie sent) or after (and fails with ErrHeadersSent). final also ends the
// request.
func (rs *reqState) passIdle(final bool) bool {
	rs.mu.Lock()
	idle := rs.idle()
	if idle {
		rs.headersDone = true
		if final {
			rs.life.Or(lifeEnded)
		}
	}
	rs.mu.Unlock()
	return idle
}

// beforeHeaders is the first commit point: the response is about to begin.
// final: it is also the request's last (the handler returned without writing).
func (rs *reqState) beforeHeaders(final bool) {
	if rs.headersDone {
		return
	}
	if rs.passIdle(final) {
		return
	}
	m := rs.m
	err := rs.commitPoint(atHeaders, final)
	rs.mu.Lock()
	if err == nil {
		err = rs.resumeErr()
	}
	rs.headersDone = true
	var out idOut
	exposed := rs.exposed
	if err == nil {
		out = rs.idOut()
	}
	rs.mu.Unlock()

	if err != nil {
		rs.aborted = true
		m.log.Error("session failed before the response", "method", rs.method(), "path", rs.path(), "error", err)
		if m.cfg.errorHandler != nil {
			m.cfg.errorHandler(rs.rw.ResponseWriter, rs.req, err)
		} else {
			http.Error(rs.rw.ResponseWriter, "Service Unavailable: the session could not be loaded or saved", http.StatusServiceUnavailable)
		}
		return
	}
	h := rs.rw.ResponseWriter.Header()
	if exposed {
		m.markPrivate(h)
	}
	rs.writeID(h, out)
}

// maxAge is the Max-Age of the session's cookie in seconds (0: a browser
// session cookie): the session's own lifetime (remember me) up to the absolute
// lifetime, else Config.CookieLifetime. Lock held, session started.
func (rs *reqState) maxAge() int {
	m := rs.m
	if rs.live == nil || rs.meta.timeout <= 0 {
		return m.cfg.cookieMaxAge
	}
	d := rs.meta.timeout
	if a := m.cfg.absolute; a > 0 {
		d = min(d, rs.meta.created.Add(a).Sub(m.cfg.now()))
	}
	return max(1, int(d/time.Second))
}

func (m *Manager) newCookie(r *http.Request, value string) *http.Cookie {
	return &http.Cookie{
		Name:     m.cfg.cookieName,
		Value:    value,
		Path:     m.cfg.cookiePath,
		Domain:   m.cfg.cookieDomain,
		MaxAge:   m.cfg.cookieMaxAge,
		Secure:   m.secure(r),
		HttpOnly: m.cfg.httpOnly,
		SameSite: m.cfg.sameSite,
	}
}

// secure decides the cookie's Secure attribute.
func (m *Manager) secure(r *http.Request) bool {
	if m.cfg.forceSecure {
		return true
	}
	switch m.cfg.secure {
	case SecureAlways:
		return true
	case SecureNever:
		return false
	}
	if r.TLS != nil {
		return true
	}
	if len(m.cfg.trusted) == 0 || !strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		return false
	}
	addr, ok := remoteAddr(r.RemoteAddr)
	if !ok {
		return false
	}
	for _, p := range m.cfg.trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// remoteAddr parses a request's RemoteAddr: host:port as net/http sets it, or a
// bare IP as some proxy middlewares rewrite it.
func remoteAddr(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}

// finish is the last commit point: the handler returned. It ends the request:
// a change after it fails with ErrRequestEnded rather than go unsaved.
func (rs *reqState) finish() {
	if rs.life.CompareAndSwap(0, lifeEnded) {
		return // never used: nothing to commit, no keep-alive to stop
	}
	rs.stopKeepAlive()
	if !rs.headersDone {
		rs.beforeHeaders(true)
		return
	}
	if err := rs.commitPoint(afterHeaders, true); err != nil {
		rs.m.log.Error("session commit after the response began", "method", rs.method(), "path", rs.path(), "error", err)
	}
}

// endAbruptly ends a request whose handler panicked: nothing more is saved.
func (rs *reqState) endAbruptly() {
	if rs.life.CompareAndSwap(0, lifeEnded) {
		return
	}
	rs.mu.Lock()
	rs.life.Or(lifeEnded)
	rs.mu.Unlock()
}

// pointAt is where a commit point stands with respect to the response headers.
type pointAt uint8

const (
	atHeaders    pointAt = iota // just before them: a new session's cookie can still go out
	afterHeaders                // after them
	atNow                       // where the request stands when the point runs (Sync)
)

// commitPoint runs the hooks and commits, in a context detached from the
// request's cancellation and bounded by CommitTimeout. A request with neither
// hooks nor anything to write skips it all (and the context's timer). The
// request's commit points run one at a time (a Sync, a keep-alive and the
// response's own may meet). final ends the request, in the lock's hold that
// commits: a change is either in the last write or refused.
func (rs *reqState) commitPoint(at pointAt, final bool) error {
	rs.mu.Lock()
	rs.metaWritten = false
	// After the error handler answered, the request's last point saves nothing.
	work := !(final && rs.aborted) && rs.resumeErr() == nil && (rs.hookCount() > 0 && !rs.readOnly || rs.pending())
	if !work {
		if final {
			rs.life.Or(lifeEnded)
		}
		rs.mu.Unlock()
		return nil
	}
	e := rs.exts()
	rs.mu.Unlock()

	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	// One context for the request's commit points, in place of
	// context.WithTimeout(context.WithoutCancel(…)) at each: made at the first
	// point with work, restarted at the next unless someone kept it (asked for
	// its Done channel). It lives with the extensions' record, not in reqState,
	// to keep a request without a session small.
	switch {
	case e.cctx == nil:
		e.cctx = &e.cctx0
		e.cctx.parent = context.WithoutCancel(&rs.ctx)
	case e.cctx.kept():
		e.cctx = &commitContext{parent: e.cctx.parent}
	}
	ctx := e.cctx
	ctx.begin(time.Now().Add(rs.m.cfg.commitTimeout))
	defer ctx.end()
	err := rs.runHooks(ctx)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if final {
		rs.life.Or(lifeEnded)
	}
	if err == nil {
		err = rs.commit(ctx, at == atHeaders || at == atNow && !rs.headersDone)
	}
	return err
}

// markPrivate keeps shared caches from storing a response that depends on a
// session: Cache-Control private (unless already private or no-store, with
// "public" removed) and Vary on what carries the ID (Cookie, and the ID header
// when configured).
func (m *Manager) markPrivate(h http.Header) {
	markPrivate(h)
	if m.cfg.idHeader != "" {
		vary(h, m.cfg.idHeader)
	}
}

// markPrivate is Cache-Control private and Vary: Cookie.
func markPrivate(h http.Header) {
	cc := h.Get("Cache-Control")
	if cc == "" && len(h["Vary"]) == 0 {
		// The usual response: both headers from one allocation.
		v := make([]string, 2)
		v[0], v[1] = "private", "Cookie"
		h["Cache-Control"], h["Vary"] = v[0:1:1], v[1:2:2]
		return
	}
	switch {
	case cc == "":
		h.Set("Cache-Control", "private")
	case hasToken(cc, "private") || hasToken(cc, "no-store"):
	default:
		parts := []string{"private"}
		for p := range strings.SplitSeq(cc, ",") {
			if p = strings.TrimSpace(p); p != "" && !strings.EqualFold(p, "public") {
				parts = append(parts, p)
			}
		}
		h.Set("Cache-Control", strings.Join(parts, ", "))
	}
	vary(h, "Cookie")
}

// vary adds name to the Vary header unless it is there (or "*" is).
func vary(h http.Header, name string) {
	for _, v := range h.Values("Vary") {
		if hasToken(v, name) || hasToken(v, "*") {
			return
		}
	}
	h.Add("Vary", name)
}

// hasToken reports whether the comma-separated list has token (case-insensitive;
// "max-age=1" counts as "max-age").
func hasToken(list, token string) bool {
	for p := range strings.SplitSeq(list, ",") {
		p = strings.TrimSpace(p)
		if i := strings.IndexByte(p, '='); i >= 0 {
			p = p[:i]
		}
		if strings.EqualFold(p, token) {
			return true
		}
	}
	return false
}

// responseWriter commits the session before the response's first byte.
type responseWriter struct {
	http.ResponseWriter
	rs *reqState
}

// WriteHeader commits the session, then writes the header. Informational (1xx)
// headers other than 101 pass through without a commit.
func (w *responseWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		if !w.rs.aborted {
			w.ResponseWriter.WriteHeader(code)
		}
		return
	}
	w.rs.beforeHeaders(false)
	if w.rs.aborted {
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write commits the session before the first byte, then writes.
func (w *responseWriter) Write(p []byte) (int, error) {
	w.rs.beforeHeaders(false)
	if w.rs.aborted {
		return 0, ErrAborted
	}
	return w.ResponseWriter.Write(p)
}

// ReadFrom commits the session, then copies with the wrapped writer's ReadFrom
// (sendfile) when it has one.
func (w *responseWriter) ReadFrom(r io.Reader) (int64, error) {
	w.rs.beforeHeaders(false)
	if w.rs.aborted {
		return 0, ErrAborted
	}
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{w.ResponseWriter}, r)
}

// writerOnly hides a writer's ReadFrom so io.Copy does not loop into it.
type writerOnly struct{ io.Writer }

// Flush commits the session, then flushes.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// FlushError commits the session, then flushes, reporting failures (used by
// http.ResponseController).
func (w *responseWriter) FlushError() error {
	w.rs.beforeHeaders(false)
	if w.rs.aborted {
		return ErrAborted
	}
	w.rs.startKeepAlive()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack commits the session (its cookie header goes nowhere unless the hijacker
// copies the header), then hands over the connection. It matches
// http.ErrNotSupported when the wrapped writer cannot hijack.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.rs.beforeHeaders(false)
	if w.rs.aborted {
		return nil, nil, ErrAborted
	}
	conn, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("session: hijack: %w", err)
	}
	w.rs.startKeepAlive()
	return conn, rw, nil
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ReadOnly makes every request through h use its session read-only (Pimcore's
// read-only admin session): reads work, writes return ErrReadOnly, and nothing
// is written back (not even the last-activity touch). A cookie that names no
// live session is still expired: that writes nothing to the store. Use it inside
// [Manager.Middleware].
func ReadOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s, ok := FromContext(r.Context()); ok && s.use() == nil {
			s.st.readOnly = true
			s.unlock()
		}
		h.ServeHTTP(w, r)
	})
}

// Stateless marks the requests through h as not meant to use a session
// (Symfony's _stateless): using it is ErrStateless in development mode
// (Config.Development) and a logged warning in production. Use it inside
// [Manager.Middleware].
func Stateless(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s, ok := FromContext(r.Context()); ok && s.use() == nil {
			s.st.stateless = true
			s.unlock()
		}
		h.ServeHTTP(w, r)
	})
}
