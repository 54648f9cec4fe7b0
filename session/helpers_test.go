package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/filestore"
	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/cache/redisstore"
)

// backendCase opens a fresh, empty backend for one test.
type backendCase struct {
	name string
	open func(t *testing.T) cache.Backend
}

// backends lists the real backends every behaviour test runs against.
func backends() []backendCase {
	return []backendCase{
		{"memory", func(t *testing.T) cache.Backend {
			s := memstore.New(memstore.Options{JanitorInterval: -1})
			t.Cleanup(func() { _ = s.Close() })
			return s
		}},
		{"file", func(t *testing.T) cache.Backend {
			s, err := filestore.Open(filestore.Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatalf("filestore.Open: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}},
		{"redis", func(t *testing.T) cache.Backend {
			ns := fmt.Sprintf("t%d", redisNamespaces.Add(1))
			s, err := redisstore.New(testRedis.Client(), redisstore.Options{Namespace: ns})
			if err != nil {
				t.Fatalf("redisstore.New: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}},
	}
}

// redisNamespaces numbers the namespaces of the shared redis-server, one per test.
var redisNamespaces atomic.Int64

// forEachBackend runs fn as a subtest per backend, named after the backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, b cache.Backend)) {
	t.Helper()
	for _, bc := range backends() {
		t.Run(bc.name, func(t *testing.T) { fn(t, bc.open(t)) })
	}
}

// counting wraps a backend and counts the calls that reach it, across Subs.
type counting struct {
	cache.Backend
	c *counts
}

type counts struct {
	reads, writes atomic.Int64
	fail          atomic.Bool // every call fails with ErrUnavailable
}

var errInjected = cache.Unavailable("test", errors.New("injected failure"))

func (c counting) r() error {
	c.c.reads.Add(1)
	if c.c.fail.Load() {
		return errInjected
	}
	return nil
}

func (c counting) w() error {
	c.c.writes.Add(1)
	if c.c.fail.Load() {
		return errInjected
	}
	return nil
}

func (c counting) Get(ctx context.Context, key string) (cache.Entry, error) {
	if err := c.r(); err != nil {
		return cache.Entry{}, err
	}
	return c.Backend.Get(ctx, key)
}

func (c counting) GetMany(ctx context.Context, keys []string) ([]cache.Entry, error) {
	if err := c.r(); err != nil {
		return nil, err
	}
	return c.Backend.GetMany(ctx, keys)
}

func (c counting) Has(ctx context.Context, key string) (bool, error) {
	if err := c.r(); err != nil {
		return false, err
	}
	return c.Backend.Has(ctx, key)
}

func (c counting) Set(ctx context.Context, it cache.Item) (cache.Version, error) {
	if err := c.w(); err != nil {
		return 0, err
	}
	return c.Backend.Set(ctx, it)
}

func (c counting) SetMany(ctx context.Context, items []cache.Item) error {
	if err := c.w(); err != nil {
		return err
	}
	return c.Backend.SetMany(ctx, items)
}

func (c counting) CompareAndSet(ctx context.Context, it cache.Item, v cache.Version) (cache.Version, error) {
	if err := c.w(); err != nil {
		return 0, err
	}
	return c.Backend.CompareAndSet(ctx, it, v)
}

func (c counting) Delete(ctx context.Context, key string) (bool, error) {
	if err := c.w(); err != nil {
		return false, err
	}
	return c.Backend.Delete(ctx, key)
}

func (c counting) FlushByTag(ctx context.Context, tag string) (int, error) {
	if err := c.w(); err != nil {
		return 0, err
	}
	return c.Backend.FlushByTag(ctx, tag)
}

func (c counting) Flush(ctx context.Context) error {
	if err := c.w(); err != nil {
		return err
	}
	return c.Backend.Flush(ctx)
}

func (c counting) Tagged(ctx context.Context, tag string) iter.Seq2[string, error] {
	if err := c.r(); err != nil {
		return func(yield func(string, error) bool) { yield("", err) }
	}
	return c.Backend.Tagged(ctx, tag)
}

func (c counting) All(ctx context.Context) iter.Seq2[cache.Entry, error] {
	if err := c.r(); err != nil {
		return func(yield func(cache.Entry, error) bool) { yield(cache.Entry{}, err) }
	}
	return c.Backend.All(ctx)
}

func (c counting) Sub(name string) (cache.Backend, error) {
	b, err := c.Backend.Sub(name)
	if err != nil {
		return nil, err
	}
	return counting{Backend: b, c: c.c}, nil
}

func (c *counts) total() int64 { return c.reads.Load() + c.writes.Load() }

// clock is a settable clock for Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

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

// harness drives a manager through httptest.
type harness struct {
	t      *testing.T
	m      *Manager
	counts *counts
	clock  *clock
	logs   *logBuffer
	base   cache.Backend
}

// newHarness builds a manager over b (counted), with a fake clock and captured
// logs; cfg's Now and Logger are set unless given.
func newHarness(t *testing.T, b cache.Backend, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, counts: &counts{}, clock: newClock(), logs: &logBuffer{}, base: b}
	if cfg.Now == nil {
		cfg.Now = h.clock.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	m, err := New(counting{Backend: b, c: h.counts}, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.m = m
	return h
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
	if !ok {
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
		h.t.Fatalf("no session cookie; headers %v", w.Header())
	}
	return c.Value
}

// storedKeys lists every key of both namespaces of the manager (through the
// uncounted base backend).
func (h *harness) storedEntries() []cache.Entry {
	h.t.Helper()
	var out []cache.Entry
	for _, ns := range []string{"meta", "data"} {
		root, err := h.base.Sub(h.m.cfg.namespace)
		if err != nil {
			h.t.Fatal(err)
		}
		sub, err := root.Sub(ns)
		if err != nil {
			h.t.Fatal(err)
		}
		for e, err := range sub.All(context.Background()) {
			if err != nil {
				h.t.Fatal(err)
			}
			e.Key = ns + "/" + e.Key
			out = append(out, e)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func mustContain(t *testing.T, what, got, want string) {
	t.Helper()
	if !strings.Contains(got, want) {
		t.Errorf("%s = %q, want it to contain %q", what, got, want)
	}
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }
