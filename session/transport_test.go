package session

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/memstore"
)

// doHeader runs one request carrying header: value through the middleware.
func (h *harness) doHeader(header, value string, fn func(w http.ResponseWriter, r *http.Request)) *httptest.ResponseRecorder {
	h.t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if value != "" {
		r.Header.Set(header, value)
	}
	w := httptest.NewRecorder()
	h.m.Middleware(http.HandlerFunc(fn)).ServeHTTP(w, r)
	return w
}

// TestIDFromHeader: API clients carry the ID in a header; a new or renewed ID
// comes back in the response header, a destroyed session's empty; the rules of
// the cookie hold (strict mode, no store access for malformed values).
func TestIDFromHeader(t *testing.T) {
	for _, c := range []struct {
		name          string
		cfg           Config
		reqH, respH   string
		prefix        string
		cookieAllowed bool
	}{
		{"X-Session-Token", Config{IDFrom: IDFromHeader}, "X-Session-Token", "X-Session-Token", "", false},
		{"Authorization", Config{IDFrom: IDFromHeader, IDHeader: "authorization"}, "Authorization", "X-Session-Token", "Session ", false},
		{"cookie or header", Config{IDFrom: IDFromCookieOrHeader, IDHeader: "X-Api-Session", IDResponseHeader: "X-New-Session"}, "X-Api-Session", "X-New-Session", "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, memoryBackend(t), c.cfg)
			start := func(w http.ResponseWriter, r *http.Request) {
				s := sess(t, r)
				if err := s.Start(r.Context()); err != nil {
					t.Fatal(err)
				}
				_ = s.Put(r.Context(), "k", "v")
			}
			w := h.doHeader(c.reqH, "", start)
			id := w.Header().Get(c.respH)
			if !ValidID(id) {
				t.Fatalf("a new session's ID not in %s: %v", c.respH, w.Header())
			}
			if got := sessionCookie(t, w, h.m.cfg.cookieName) != nil; got != c.cookieAllowed {
				t.Fatalf("cookie sent = %v, want %v", got, c.cookieAllowed)
			}
			if !strings.Contains(strings.Join(w.Header().Values("Vary"), ","), h.m.cfg.idHeader) {
				t.Fatalf("Vary %q does not name %s", w.Header().Values("Vary"), h.m.cfg.idHeader)
			}
			// The header opens the session; nothing is sent back when nothing changes.
			h.calls.Reset()
			w = h.doHeader(c.reqH, c.prefix+id, func(w http.ResponseWriter, r *http.Request) {
				var v string
				if err := sess(t, r).Get(r.Context(), "k", &v); err != nil || v != "v" {
					t.Fatalf("Get through the header: %q, %v", v, err)
				}
			})
			if w.Header().Get(c.respH) != "" || sessionCookie(t, w, h.m.cfg.cookieName) != nil {
				t.Fatalf("an unchanged session sent an ID: %v", w.Header())
			}
			h.wantCalls("resume through the header", cachetest.OpRead)
			// Malformed or foreign values never reach the store.
			h.calls.Reset()
			for _, bad := range []string{"nope", id + "x", "Bearer " + id, c.prefix + id[:64], c.prefix + id + "="} {
				if c.prefix == "" && strings.HasPrefix(bad, "Bearer") {
					continue
				}
				h.doHeader(c.reqH, bad, func(w http.ResponseWriter, r *http.Request) { _, _ = sess(t, r).IsStarted(r.Context()) })
			}
			h.wantCalls("malformed header values")
			// Strict mode: an ID the server did not issue is not adopted.
			forged := newID()
			w = h.doHeader(c.reqH, c.prefix+forged, func(w http.ResponseWriter, r *http.Request) {
				if started, _ := sess(t, r).IsStarted(r.Context()); started {
					t.Fatal("an unknown ID was adopted")
				}
			})
			if v, ok := w.Header()[c.respH]; !ok || len(v) != 1 || v[0] != "" {
				t.Fatalf("a dead ID was not answered with an empty %s: %v", c.respH, w.Header())
			}
			// Renewal: the new ID in the header; the old one is dead.
			w = h.doHeader(c.reqH, c.prefix+id, func(w http.ResponseWriter, r *http.Request) {
				if err := sess(t, r).RenewID(r.Context()); err != nil {
					t.Fatal(err)
				}
			})
			renewed := w.Header().Get(c.respH)
			if !ValidID(renewed) || renewed == id {
				t.Fatalf("renewal sent %q", renewed)
			}
			if h.started(id) {
				t.Fatal("the old ID survived the renewal")
			}
			// Destroy: an empty header tells the client to forget its ID.
			w = h.doHeader(c.reqH, c.prefix+renewed, func(w http.ResponseWriter, r *http.Request) {
				_ = sess(t, r).Destroy(r.Context(), "")
			})
			if v, ok := w.Header()[c.respH]; !ok || v[0] != "" {
				t.Fatalf("destroy did not send an empty %s: %v", c.respH, w.Header())
			}
		})
	}
	// The cookie is ignored when only the header is allowed.
	h := newHarness(t, memoryBackend(t), Config{IDFrom: IDFromHeader})
	h.do(newID(), func(w http.ResponseWriter, r *http.Request) { _, _ = sess(t, r).IsStarted(r.Context()) })
	h.wantCalls("a cookie when only the header is allowed")
	if _, err := New(memstore.New(memstore.Options{}), Config{IDFrom: IDFromHeader, IDHeader: "bad header"}); !errors.Is(err, ErrConfig) {
		t.Fatalf("a malformed IDHeader: %v", err)
	}
}

// TestLongLivedRequestsStayAlive: a request that streams (flushes) or hijacks
// its connection writes its session's activity at the threshold while it runs,
// so the session does not expire under it; its end hooks run when it ends.
func TestLongLivedRequestsStayAlive(t *testing.T) {
	for _, mode := range []string{"server-sent events", "hijack"} {
		t.Run(mode, func(t *testing.T) {
			store := memstore.New(memstore.Options{})
			t.Cleanup(func() { _ = store.Close() })
			var writes atomic.Int64
			wrapped := cachetest.Wrap(store, func(_ context.Context, c cachetest.Call) error {
				if c.Op == cachetest.OpWrite {
					writes.Add(1)
				}
				return nil
			})
			m, err := New(wrapped, Config{UpdateMetadataThreshold: 40 * time.Millisecond, InactivityTimeout: time.Hour, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			ended := make(chan struct{})
			// kept counts the activity writes of the keep-alive while the
			// connection was open: from once the response was flushed or the
			// connection hijacked (that point's own commit is not counted) to
			// when the handler returns. The handler keeps the connection open
			// until there were two, rather than for a fixed time in which a
			// stall of the machine drops ticker ticks.
			var kept atomic.Int64
			keepOpen := func(tick func()) {
				base := writes.Load()
				deadline := time.Now().Add(10 * time.Second)
				for writes.Load()-base < 2 && time.Now().Before(deadline) {
					tick()
					time.Sleep(10 * time.Millisecond)
				}
				kept.Store(writes.Load() - base)
			}
			srv := httptest.NewServer(m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s := sess(t, r)
				if r.URL.Path == "/start" {
					_ = s.Start(r.Context())
					return
				}
				if _, err := s.IsStarted(r.Context()); err != nil {
					t.Error(err)
				}
				_ = ExtensionOf(s).OnEnd(func() { close(ended) })
				if mode == "hijack" {
					conn, buf, err := http.NewResponseController(w).Hijack()
					if err != nil {
						t.Error(err)
						return
					}
					defer conn.Close()
					_, _ = buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
					_ = buf.Flush()
					keepOpen(func() {})
					return
				}
				w.Header().Set("Content-Type", "text/event-stream")
				tick := func() {
					_, _ = w.Write([]byte("data: tick\n\n"))
					w.(http.Flusher).Flush()
				}
				tick()
				keepOpen(tick)
			})))
			defer srv.Close()
			resp, err := http.Get(srv.URL + "/start")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			var cookie string
			for _, c := range resp.Cookies() {
				cookie = c.Name + "=" + c.Value
			}
			req, _ := http.NewRequest("GET", srv.URL+"/stream", nil)
			req.Header.Set("Cookie", cookie)
			if mode == "hijack" {
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", "test")
			}
			resp, err = http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = bufio.NewReader(resp.Body).ReadString(0) // until the server ends it
			resp.Body.Close()
			select {
			case <-ended:
			case <-time.After(10 * time.Second):
				t.Fatal("the end hooks did not run")
			}
			// At a 40 ms threshold, two activity writes came while the
			// connection was open (within 10 s, however loaded the machine).
			if n := kept.Load(); n < 2 {
				t.Fatalf("%d activity writes during a connection held open 10 s with a 40 ms threshold", n)
			}
		})
	}
}

// TestSyncSeesOtherRequests: a long-lived request sees, after Sync, what other
// requests committed; before it, its own view.
func TestSyncSeesOtherRequests(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{})
		id := h.startSession(func(ctx context.Context, s *Session) error { return s.Put(ctx, "n", 1) })
		h.do(id, func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			var n int
			_ = s.Get(r.Context(), "n", &n)
			if err := s.Put(r.Context(), "mine", "x"); err != nil {
				t.Fatal(err)
			}
			w.WriteHeader(http.StatusOK) // the response began: a long-lived request
			h.do(id, func(w http.ResponseWriter, r *http.Request) { _ = sess(t, r).Put(r.Context(), "n", 2) })
			_ = s.Get(r.Context(), "n", &n)
			if n != 1 {
				t.Fatalf("before Sync the request saw %d, want its own view 1", n)
			}
			if err := s.Sync(r.Context()); err != nil {
				t.Fatal(err)
			}
			var mine string
			if err := s.Get(r.Context(), "n", &n); err != nil || n != 2 {
				t.Fatalf("after Sync n = %d, %v; want 2", n, err)
			}
			if err := s.Get(r.Context(), "mine", &mine); err != nil || mine != "x" {
				t.Fatalf("after Sync the request's own change = %q, %v", mine, err)
			}
		})
	})
}

// TestEndHooksRunOnPanic: a handler's panic still runs the end hooks.
func TestEndHooksRunOnPanic(t *testing.T) {
	h := newHarness(t, memoryBackend(t), Config{})
	ran := false
	func() {
		defer func() { _ = recover() }()
		h.do("", func(w http.ResponseWriter, r *http.Request) {
			_ = ExtensionOf(sess(t, r)).OnEnd(func() { ran = true })
			panic("handler bug")
		})
	}()
	if !ran {
		t.Fatal("the end hooks did not run after a panic")
	}
}

// TestExchange: a session through a transport that is not net/http.
func TestExchange(t *testing.T) {
	h := newHarness(t, memoryBackend(t), Config{})
	ctx, x := h.m.Begin(t.Context(), "", Peer{Method: "/shop.Basket/Add", UserAgent: "grpc-go/1.85", Addr: "127.0.0.1:5000"})
	s, _ := FromContext(ctx)
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	_ = s.Put(ctx, "k", "v")
	id, expire, err := x.Commit()
	x.End()
	if err != nil || expire || !ValidID(id) {
		t.Fatalf("Commit = %q, %v, %v", id, expire, err)
	}
	if md := h.metadata(id); md.Device != "grpc-go/1.85" {
		t.Fatalf("device %q", md.Device)
	}
	// Resumed by its ID; nothing new to send.
	ctx, x = h.m.Begin(t.Context(), id, Peer{})
	s, _ = FromContext(ctx)
	var v string
	if err := s.Get(ctx, "k", &v); err != nil || v != "v" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if id2, expire, err := x.Commit(); id2 != "" || expire || err != nil {
		t.Fatalf("Commit of an unchanged session = %q, %v, %v", id2, expire, err)
	}
	x.End()
	// A dead ID: the client is told to forget it.
	ctx, x = h.m.Begin(t.Context(), newID(), Peer{})
	s, _ = FromContext(ctx)
	_, _ = s.IsStarted(ctx)
	if _, expire, _ := x.Commit(); !expire {
		t.Fatal("a dead ID was not expired")
	}
	x.End()
	// A store failure is an error.
	h.fail.Store(true)
	ctx, x = h.m.Begin(t.Context(), id, Peer{})
	s, _ = FromContext(ctx)
	_, _ = s.IsStarted(ctx)
	if _, _, err := x.Commit(); err == nil {
		t.Fatal("a failing store gave no error")
	}
	x.End()
}
