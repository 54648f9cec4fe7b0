package session

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache"
)

func TestCommitBeforeFirstByte(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{})
		// Start, then stream: the cookie is in the headers although the body
		// was written before the handler returned.
		w := h.do("", func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			_ = s.Start(r.Context())
			_ = s.Put(r.Context(), "a", 1)
			_, _ = w.Write([]byte("first"))
			// Changed after the headers: written at the end (the cookie went out).
			if err := s.Put(r.Context(), "b", 2); err != nil {
				t.Error(err)
			}
		})
		c := sessionCookie(t, w, "fxsession")
		if c == nil {
			t.Fatal("no cookie")
		}
		h.do(c.Value, func(w http.ResponseWriter, r *http.Request) {
			var a, b int
			if err := sess(t, r).Get(r.Context(), "a", &a); err != nil || a != 1 {
				t.Errorf("a = %d, %v", a, err)
			}
			if err := sess(t, r).Get(r.Context(), "b", &b); err != nil || b != 2 {
				t.Errorf("b (changed after the headers) = %d, %v", b, err)
			}
		})

		// Starting after the headers: an error, logged, nothing saved.
		before := len(h.records())
		w = h.do("", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			if err := sess(t, r).Start(r.Context()); !errors.Is(err, ErrHeadersSent) {
				t.Errorf("Start after the headers = %v", err)
			}
		})
		if len(w.Header().Values("Set-Cookie")) != 0 {
			t.Error("Set-Cookie after the headers were sent")
		}
		if got := len(h.records()); got != before {
			t.Errorf("a session started after the headers was saved (%d -> %d entries)", before, got)
		}
		mustContain(t, "logs", h.logs.String(), "level=ERROR")

		// A hook that starts the session at the end-of-handler commit after the
		// headers: logged, not saved.
		w = h.do("", func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			x := ExtensionOf(s)
			_ = x.OnCommit(func(ctx context.Context) error {
				if err := x.StageField(ctx, "x", []byte{1}); err != nil {
					return err
				}
				_ = s.Start(ctx)
				return nil
			})
			// The first commit point runs the hook before the headers.
			_, _ = w.Write([]byte("x"))
		})
		c = sessionCookie(t, w, "fxsession")
		if c == nil {
			t.Fatal("a hook starting the session before the headers did not get a cookie")
		}
		if _, ok := h.record(c.Value).Field("e:x"); !ok {
			t.Error("the field a hook staged before starting the session was not written")
		}
		// A hook that starts the session only at the end-of-handler commit point,
		// after the headers: logged, not saved.
		before = len(h.records())
		w = h.do("", func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			x := ExtensionOf(s)
			late := false
			_ = x.OnCommit(func(ctx context.Context) error {
				if !late {
					return nil
				}
				_ = x.StageField(ctx, "x", []byte{1})
				if err := s.Start(ctx); !errors.Is(err, ErrHeadersSent) {
					t.Errorf("Start in a hook after the headers = %v", err)
				}
				return nil
			})
			_, _ = w.Write([]byte("x"))
			late = true
		})
		if len(w.Header().Values("Set-Cookie")) != 0 || len(h.records()) != before {
			t.Errorf("a session started after the headers: Set-Cookie %q, records %d -> %d",
				w.Header().Values("Set-Cookie"), before, len(h.records()))
		}

	})
}

// TestRealServer checks Flusher, ResponseController, ReaderFrom and Hijacker
// through a real HTTP server.
func TestRealServer(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{})
		mux := http.NewServeMux()
		mux.HandleFunc("/flush", func(w http.ResponseWriter, r *http.Request) {
			_ = sess(t, r).Start(r.Context())
			if _, ok := w.(http.Flusher); !ok {
				t.Error("the wrapped writer is not an http.Flusher")
			}
			rc := http.NewResponseController(w)
			if err := rc.SetWriteDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Errorf("ResponseController.SetWriteDeadline: %v", err)
			}
			if err := rc.Flush(); err != nil {
				t.Errorf("ResponseController.Flush: %v", err)
			}
			_, _ = io.WriteString(w, "streamed")
		})
		mux.HandleFunc("/readfrom", func(w http.ResponseWriter, r *http.Request) {
			_ = sess(t, r).Start(r.Context())
			_, _ = io.Copy(w, strings.NewReader("copied"))
		})
		mux.HandleFunc("/early", func(w http.ResponseWriter, r *http.Request) {
			// 1xx informational headers do not commit.
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			if err := sess(t, r).Start(r.Context()); err != nil {
				t.Errorf("Start after 103 Early Hints = %v", err)
			}
			_, _ = io.WriteString(w, "after hints")
		})
		mux.HandleFunc("/hijack", func(w http.ResponseWriter, r *http.Request) {
			_ = sess(t, r).Start(r.Context())
			conn, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("Hijack: %v", err)
				return
			}
			defer conn.Close()
			_, _ = rw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\nX-Cookie: " +
				w.Header().Get("Set-Cookie") + "\r\n\r\nhijacked")
			_ = rw.Flush()
		})
		srv := httptest.NewServer(h.m.Middleware(mux))
		defer srv.Close()
		client := srv.Client()
		defer client.CloseIdleConnections()

		for _, path := range []string{"/flush", "/readfrom", "/early"} {
			resp, err := client.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if !strings.HasPrefix(resp.Header.Get("Set-Cookie"), "fxsession=") {
				t.Errorf("%s: Set-Cookie = %q", path, resp.Header.Get("Set-Cookie"))
			}
			if len(body) == 0 {
				t.Errorf("%s: empty body", path)
			}
		}
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "GET /hijack HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != "hijacked" || !strings.HasPrefix(resp.Header.Get("X-Cookie"), "fxsession=") {
			t.Errorf("hijacked response %q, X-Cookie %q", body, resp.Header.Get("X-Cookie"))
		}
	})
}

func TestErrorHandler(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{})
		id := h.startSession(nil)
		h.fail.Store(true)
		defer h.fail.Store(false)

		// A request that does not use the session is unaffected.
		w := h.do(id, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "fine") })
		if w.Code != 200 || w.Body.String() != "fine" {
			t.Errorf("unaffected request: %d %q", w.Code, w.Body.String())
		}
		// Resume fails: the handler gets the error, the default handler answers 503.
		w = h.do(id, func(w http.ResponseWriter, r *http.Request) {
			_, err := sess(t, r).IsStarted(r.Context())
			if !errors.Is(err, cache.ErrUnavailable) {
				t.Errorf("IsStarted error = %v, want ErrUnavailable", err)
			}
			// The error is kept: no second store access.
			if _, err2 := sess(t, r).IsStarted(r.Context()); err2 == nil {
				t.Error("second call: no error")
			}
			_, werr := io.WriteString(w, "page")
			if !errors.Is(werr, ErrAborted) {
				t.Errorf("write after the error handler = %v", werr)
			}
		})
		if w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), "page") {
			t.Errorf("default error handler: %d %q", w.Code, w.Body.String())
		}
		mustContain(t, "logs", h.logs.String(), "injected failure")

		// A custom handler.
		h2 := newHarness(t, b, Config{Namespace: "custom", ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "custom: "+err.Error(), http.StatusTeapot)
		}})
		h2.fail.Store(true)
		w = h2.do(id, func(w http.ResponseWriter, r *http.Request) { _, _ = sess(t, r).IsStarted(r.Context()) })
		if w.Code != http.StatusTeapot || !strings.HasPrefix(w.Body.String(), "custom: ") {
			t.Errorf("custom error handler: %d %q", w.Code, w.Body.String())
		}
		// A commit failure (store down while saving) also goes to the handler.
		h2.fail.Store(false)
		w = h2.do("", func(w http.ResponseWriter, r *http.Request) {
			_ = sess(t, r).Start(r.Context())
			h2.fail.Store(true)
		})
		if w.Code != http.StatusTeapot || len(w.Header().Values("Set-Cookie")) != 0 {
			t.Errorf("commit failure: %d, Set-Cookie %q", w.Code, w.Header().Values("Set-Cookie"))
		}
	})
}

func TestCookieAttributes(t *testing.T) {
	start := func(t *testing.T, cfg Config, prep func(r *http.Request)) *http.Cookie {
		t.Helper()
		h := newHarness(t, memoryBackend(t), cfg)
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if prep != nil {
			prep(r)
		}
		w := httptest.NewRecorder()
		h.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = sess(t, r).Start(r.Context())
		})).ServeHTTP(w, r)
		cs := w.Result().Cookies()
		if len(cs) != 1 {
			t.Fatalf("cookies = %v", cs)
		}
		return cs[0]
	}
	t.Run("tls", func(t *testing.T) {
		c := start(t, Config{}, func(r *http.Request) { r.TLS = &tls.ConnectionState{} })
		if !c.Secure {
			t.Error("TLS request: cookie not Secure")
		}
	})
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	t.Run("trusted-proxy", func(t *testing.T) {
		c := start(t, Config{TrustedProxies: trusted}, func(r *http.Request) {
			r.RemoteAddr = "10.1.2.3:4567"
			r.Header.Set("X-Forwarded-Proto", "https")
		})
		if !c.Secure {
			t.Error("X-Forwarded-Proto from a trusted proxy ignored")
		}
	})
	t.Run("untrusted-proxy", func(t *testing.T) {
		c := start(t, Config{TrustedProxies: trusted}, func(r *http.Request) {
			r.RemoteAddr = "192.0.2.1:4567"
			r.Header.Set("X-Forwarded-Proto", "https")
		})
		if c.Secure {
			t.Error("X-Forwarded-Proto believed from an untrusted address")
		}
	})
	t.Run("never-and-always", func(t *testing.T) {
		if c := start(t, Config{Secure: SecureNever}, func(r *http.Request) { r.TLS = &tls.ConnectionState{} }); c.Secure {
			t.Error("SecureNever: Secure set")
		}
		if c := start(t, Config{Secure: SecureAlways}, nil); !c.Secure {
			t.Error("SecureAlways: not Secure")
		}
	})
	t.Run("samesite-none-forces-secure", func(t *testing.T) {
		c := start(t, Config{SameSite: SameSiteNone, Secure: SecureNever}, nil)
		if !c.Secure || c.SameSite != http.SameSiteNoneMode {
			t.Errorf("cookie %+v", c)
		}
	})
	t.Run("strict-httponly-off", func(t *testing.T) {
		c := start(t, Config{SameSite: SameSiteStrict, DisableHTTPOnly: true}, nil)
		if c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
			t.Errorf("cookie %+v", c)
		}
	})
	t.Run("host-prefix", func(t *testing.T) {
		c := start(t, Config{HostPrefix: true, CookieName: "sid"}, nil)
		if c.Name != "__Host-sid" || !c.Secure || c.Path != "/" || c.Domain != "" {
			t.Errorf("cookie %+v", c)
		}
	})
	t.Run("name-path-domain-lifetime", func(t *testing.T) {
		c := start(t, Config{CookieName: "s", CookiePath: "/app", CookieDomain: "example.com", CookieLifetime: 2 * time.Hour}, nil)
		if c.Name != "s" || c.Path != "/app" || c.Domain != "example.com" || c.MaxAge != 7200 {
			t.Errorf("cookie %+v", c)
		}
	})
	t.Run("persistent-cookie-refreshed-with-the-touch", func(t *testing.T) {
		h := newHarness(t, memoryBackend(t), Config{CookieLifetime: time.Hour})
		id := h.startSession(nil)
		use := func(w http.ResponseWriter, r *http.Request) { _, _ = sess(t, r).IsStarted(r.Context()) }
		if c := sessionCookie(t, h.do(id, use), "fxsession"); c != nil {
			t.Errorf("refreshed within the threshold: %v", c)
		}
		h.clock.Add(2 * time.Minute)
		if c := sessionCookie(t, h.do(id, use), "fxsession"); c == nil || c.Value != id || c.MaxAge != 3600 {
			t.Errorf("not refreshed after the threshold: %v", c)
		}
	})
}

func TestCacheHeaders(t *testing.T) {
	for _, tc := range []struct{ cc, vary, wantCC, wantVary string }{
		{"", "", "private", "Cookie"},
		{"public, max-age=60", "Accept-Encoding", "private, max-age=60", "Accept-Encoding|Cookie"},
		{"no-store", "Cookie", "no-store", "Cookie"},
		{"private, max-age=5", "*", "private, max-age=5", "*"},
	} {
		h := http.Header{}
		if tc.cc != "" {
			h.Set("Cache-Control", tc.cc)
		}
		if tc.vary != "" {
			h.Set("Vary", tc.vary)
		}
		markPrivate(h)
		if got := h.Get("Cache-Control"); got != tc.wantCC {
			t.Errorf("Cache-Control %q -> %q, want %q", tc.cc, got, tc.wantCC)
		}
		if got := strings.Join(h.Values("Vary"), "|"); got != tc.wantVary {
			t.Errorf("Vary %q -> %q, want %q", tc.vary, got, tc.wantVary)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	b := memoryBackend(t).store
	for _, cfg := range []Config{
		{CookieName: "bad name"},
		{CookieName: "a;b"},
		{HostPrefix: true, CookieDomain: "example.com"},
		{HostPrefix: true, CookiePath: "/app"},
		{SameSite: 9},
		{Secure: 9},
		{CookieLifetime: -time.Second},
		{AbsoluteLifetime: -time.Second},
		{GCMaxPerRun: -1},
		{MaxPayload: -1},
		{Namespace: "bad space"},
	} {
		if _, err := New(b, cfg); err == nil {
			t.Errorf("New(%+v) accepted an invalid config", cfg)
		}
	}
	if _, err := New(nil, Config{}); err == nil {
		t.Error("New(nil store) succeeded")
	}
	m, err := New(b, Config{})
	if err != nil {
		t.Fatal(err)
	}
	c := m.cfg
	if c.cookieName != DefaultCookieName || c.cookiePath != "/" || !c.httpOnly || c.sameSite != http.SameSiteLaxMode ||
		c.timeout != time.Hour || c.threshold != time.Minute || c.gcMax != 1000 || c.maxPayload != 1<<20 ||
		c.namespace != "session" || c.gcInterval != DefaultGCInterval {
		t.Errorf("zero Config settings = %+v", c)
	}
}

// TestNoSessionAllocatesOnce: a request that carries no session ID and never
// uses its session costs the middleware one allocation: its state and the
// handler's request (with the session's context) share it. It fails if the
// request copy of WithContext moves to its own allocation again.
func TestNoSessionAllocatesOnce(t *testing.T) {
	h := newHarness(t, memoryBackend(t), Config{})
	handler := h.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := FromContext(r.Context()); !ok {
			t.Error("no session in the request's context")
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	w := &discardWriter{h: http.Header{}}
	if n := testing.AllocsPerRun(200, func() { handler.ServeHTTP(w, r) }); n != 1 {
		t.Fatalf("a request without a session allocates %v times, want 1", n)
	}
	if len(w.h) != 0 {
		t.Fatalf("headers set for a request without a session: %v", w.h)
	}
}

// discardWriter is a ResponseWriter that allocates nothing.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}
