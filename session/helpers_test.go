package session

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/filestore"
	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/cache/redisstore"
)

// backendCase opens a fresh, empty store for one test.
type backendCase struct {
	name string
	// open opens the store. A store whose clock can be set uses now (the test's
	// fake clock, which Config.Now gets too), so that the store and the manager
	// agree on time; the others run on the real clock.
	open func(t *testing.T, now func() time.Time) cache.Store
}

// backends lists the real stores every behaviour test runs against: memory on
// the test's clock, file and Redis (a real redis-server, started by TestMain) on
// the real one. The test clock starts in the future, so those stores never see
// a session expire; the manager decides expiry with its own clock, and the
// collector passes that clock to the store (GCOptions.Before).
func backends() []backendCase {
	return []backendCase{
		{"memory", func(t *testing.T, now func() time.Time) cache.Store {
			s := memstore.New(memstore.Options{Now: now})
			t.Cleanup(func() { _ = s.Close() })
			return s
		}},
		{"file", func(t *testing.T, _ func() time.Time) cache.Store {
			s, err := filestore.Open(filestore.Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatalf("filestore.Open: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}},
		{"redis", func(t *testing.T, _ func() time.Time) cache.Store {
			s, err := redisstore.New(testRedis.Client(), redisstore.Options{Namespace: cachetest.Namespace("t")})
			if err != nil {
				t.Fatalf("redisstore.New: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}},
	}
}

// backend is one opened store with the clock it runs on.
type backend struct {
	name  string
	store cache.Store
	clock *clock
}

// backend opens a fresh store of bc on a fresh fake clock.
func (bc backendCase) backend(t *testing.T) *backend {
	t.Helper()
	c := newClock()
	return &backend{name: bc.name, store: bc.open(t, c.Now), clock: c}
}

// forEachBackend runs fn as a subtest per backend, named after the backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, b *backend)) {
	t.Helper()
	for _, bc := range backends() {
		t.Run(bc.name, func(t *testing.T) { fn(t, bc.backend(t)) })
	}
}

// memoryBackend is the memory store on a fake clock, for tests of behaviour
// that does not depend on the store.
func memoryBackend(t *testing.T) *backend {
	t.Helper()
	return backends()[0].backend(t)
}

// errInjected is the failure of a store call made to fail.
var errInjected = cache.Unavailable("test", errors.New("injected failure"))

// clock is a settable clock for Config.Now (and the store's Now).
type clock struct {
	mu sync.Mutex
	t  time.Time
}

// newClock starts in the future, so that a store on the real clock never sees
// the sessions of a test expire under it.
func newClock() *clock { return &clock{t: time.Date(2040, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// logBuffer collects logs for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// harness drives a manager through httptest, counting the store calls.
type harness struct {
	t     *testing.T
	m     *Manager
	calls *cachetest.Counter
	clock *clock
	logs  *logBuffer
	base  cache.Store // the store without the counter
	// fail makes every store call fail with errInjected.
	fail atomic.Bool
	// before, when set, runs before every store call (after it is counted); an
	// error it returns fails the call. Tests use it to race a request.
	before atomic.Pointer[cachetest.Hook]
}

// newHarness builds a manager over b's store (counted), with b's clock and
// captured logs; cfg's Now and Logger are set unless given.
func newHarness(t *testing.T, b *backend, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, calls: &cachetest.Counter{}, clock: b.clock, logs: &logBuffer{}, base: b.store}
	if cfg.Now == nil {
		cfg.Now = h.clock.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	m, err := New(cachetest.Wrap(b.store, h.hook), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.m = m
	return h
}

func (h *harness) hook(ctx context.Context, c cachetest.Call) error {
	_ = h.calls.Hook(ctx, c)
	if h.fail.Load() {
		return errInjected
	}
	if fn := h.before.Load(); fn != nil {
		return (*fn)(ctx, c)
	}
	return nil
}

// onCall runs fn before the store calls that follow (until the returned
// function is called); fn sees each call and may fail it.
func (h *harness) onCall(fn cachetest.Hook) (stop func()) {
	h.before.Store(&fn)
	return func() { h.before.Store(nil) }
}

// wantCalls checks the store calls made since the last Reset: exactly the
// operations given, in order.
func (h *harness) wantCalls(what string, ops ...cachetest.Op) {
	h.t.Helper()
	var got []cachetest.Op
	for _, c := range h.calls.Calls() {
		got = append(got, c.Op)
	}
	if !slices.Equal(got, ops) {
		h.t.Errorf("%s: store calls %v, want %v", what, got, ops)
	}
}

// do runs one request through the middleware with the given cookie value ("" for
// none) and returns the recorded response.
func (h *harness) do(cookie string, fn func(w http.ResponseWriter, r *http.Request)) *httptest.ResponseRecorder {
	h.t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if cookie != "" {
		r.Header.Set("Cookie", h.m.cfg.cookieName+"="+cookie)
	}
	w := httptest.NewRecorder()
	h.m.Middleware(http.HandlerFunc(fn)).ServeHTTP(w, r)
	return w
}

// sess returns the request's session or fails the test.
func sess(t *testing.T, r *http.Request) *Session {
	t.Helper()
	s, ok := FromContext(r.Context())
	if !ok || s == nil {
		t.Fatal("no session in the request context")
	}
	return s
}

// sessionCookie returns the session cookie a response set, or nil.
func sessionCookie(t *testing.T, w *httptest.ResponseRecorder, name string) *http.Cookie {
	t.Helper()
	var found *http.Cookie
	for _, c := range w.Result().Cookies() {
		if c.Name == name {
			if found != nil {
				t.Fatalf("two Set-Cookie headers for %s: %q", name, w.Header().Values("Set-Cookie"))
			}
			found = c
		}
	}
	return found
}

// expiresCookie reports whether the response expires the session cookie
// (Set-Cookie with Max-Age<0 as parsed, "Max-Age=0" on the wire).
func expiresCookie(t *testing.T, w *httptest.ResponseRecorder, name string) bool {
	t.Helper()
	c := sessionCookie(t, w, name)
	return c != nil && c.MaxAge < 0 && c.Value == ""
}

// startSession runs a request that starts a session, applies fn, and returns the ID.
func (h *harness) startSession(fn func(ctx context.Context, s *Session) error) string {
	h.t.Helper()
	w := h.do("", func(w http.ResponseWriter, r *http.Request) {
		s := sess(h.t, r)
		if err := s.Start(r.Context()); err != nil {
			h.t.Errorf("Start: %v", err)
		}
		if fn != nil {
			if err := fn(r.Context(), s); err != nil {
				h.t.Errorf("start hook: %v", err)
			}
		}
	})
	c := sessionCookie(h.t, w, h.m.cfg.cookieName)
	if c == nil {
		h.t.Fatalf("no session cookie; status %d, headers %v, body %q", w.Code, w.Header(), w.Body)
	}
	return c.Value
}

// started reports whether a request with cookie id finds its session.
func (h *harness) started(id string) bool {
	h.t.Helper()
	var ok bool
	h.do(id, func(w http.ResponseWriter, r *http.Request) {
		var err error
		if ok, err = sess(h.t, r).IsStarted(r.Context()); err != nil {
			h.t.Errorf("IsStarted: %v", err)
		}
	})
	return ok
}

// ns is the manager's namespace of the store, without the counter.
func (h *harness) ns() cache.Store {
	h.t.Helper()
	sub, err := h.base.Sub(h.m.cfg.namespace)
	if err != nil {
		h.t.Fatal(err)
	}
	return sub
}

// records reads every record of the manager's namespace (through the uncounted
// store), sorted by key.
func (h *harness) records() []cache.Record {
	h.t.Helper()
	ns := h.ns()
	var out []cache.Record
	for k, err := range ns.Keys(context.Background()) {
		if err != nil {
			h.t.Fatal(err)
		}
		r, err := ns.Read(context.Background(), k)
		if errors.Is(err, cache.ErrNotFound) {
			continue
		}
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b cache.Record) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// record reads the record of the session with ID (or reference) id, failing the
// test when it is absent.
func (h *harness) record(id string) cache.Record {
	h.t.Helper()
	r, err := h.ns().Read(context.Background(), id[:RefLength])
	if err != nil {
		h.t.Fatalf("the record of %s: %v", id[:RefLength], err)
	}
	return r
}

// fieldNames returns the sorted names of a record's fields.
func fieldNames(r cache.Record) []string {
	var out []string
	for _, f := range r.Fields {
		out = append(out, f.Name)
	}
	slices.Sort(out)
	return out
}

func mustContain(t *testing.T, what, got, want string) {
	t.Helper()
	if !strings.Contains(got, want) {
		t.Errorf("%s = %q, want it to contain %q", what, got, want)
	}
}
