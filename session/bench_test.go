package session

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/fxsession/fxsession/cache/memstore"
)

// benchWriter is a ResponseWriter that costs nothing, so that benchmarks measure
// the middleware and not a recorder.
type benchWriter struct {
	h    http.Header
	code int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }

var okBody = []byte("ok")

func benchManager(b *testing.B) *Manager {
	b.Helper()
	s := memstore.New(memstore.Options{})
	b.Cleanup(func() { _ = s.Close() })
	m, err := New(s, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func runBench(b *testing.B, h http.Handler, cookie string) {
	b.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if cookie != "" {
		r.Header.Set("Cookie", "theme=dark; fxsession="+cookie)
	}
	w := &benchWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, r)
	}
}

// BenchmarkBareHandler is the floor the middleware benchmarks compare with.
func BenchmarkBareHandler(b *testing.B) {
	runBench(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(okBody) }), "")
}

// BenchmarkNoCookie: an anonymous request through the middleware whose handler
// never looks at the session.
func BenchmarkNoCookie(b *testing.B) {
	m := benchManager(b)
	runBench(b, m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(okBody) })), "")
}

// BenchmarkNoCookieIsStarted: an anonymous request whose handler asks whether a
// session exists (what a session-scoped handle does first).
func BenchmarkNoCookieIsStarted(b *testing.B) {
	m := benchManager(b)
	runBench(b, m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := FromContext(r.Context())
		if ok, _ := s.IsStarted(r.Context()); ok {
			b.Fatal("started")
		}
		_, _ = w.Write(okBody)
	})), "")
}

// BenchmarkCookieUnused: a request with a session cookie whose handler does not
// use the session (no store access).
func BenchmarkCookieUnused(b *testing.B) {
	m := benchManager(b)
	id := benchSession(b, m)
	runBench(b, m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(okBody) })), id)
}

// benchSession creates a session holding "n" = 42 and returns its ID.
func benchSession(b *testing.B, m *Manager) string {
	b.Helper()
	ctx, s := m.NewContext(context.Background(), "")
	if err := s.Start(ctx); err != nil {
		b.Fatal(err)
	}
	if err := s.Put(ctx, "n", 42); err != nil {
		b.Fatal(err)
	}
	if err := s.Commit(ctx); err != nil {
		b.Fatal(err)
	}
	id, _ := s.ID(ctx)
	return id
}

// BenchmarkReadSmallValue: resume a session (memory store) and read one int.
func BenchmarkReadSmallValue(b *testing.B) {
	m := benchManager(b)
	id := benchSession(b, m)
	runBench(b, m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := FromContext(r.Context())
		var n int
		if err := s.Get(r.Context(), "n", &n); err != nil || n != 42 {
			b.Fatalf("Get = %d, %v", n, err)
		}
		_, _ = w.Write(okBody)
	})), id)
}

// BenchmarkWriteSmallValue: resume a session (memory store) and write one int.
func BenchmarkWriteSmallValue(b *testing.B) {
	m := benchManager(b)
	id := benchSession(b, m)
	i := 0
	runBench(b, m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := FromContext(r.Context())
		i++
		if err := s.Put(r.Context(), "n", i); err != nil {
			b.Fatal(err)
		}
		_, _ = w.Write(okBody)
	})), id)
}

type floorKey struct{}

// floorMiddleware is the least any context-carried session middleware does:
// one context.WithValue and one Request.WithContext.
//
//go:noinline
func floorMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), floorKey{}, w)))
	})
}

// BenchmarkContextFloor measures floorMiddleware: compare BenchmarkNoCookie with
// it as well as with BenchmarkBareHandler.
func BenchmarkContextFloor(b *testing.B) {
	runBench(b, floorMiddleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(okBody) })), "")
}
