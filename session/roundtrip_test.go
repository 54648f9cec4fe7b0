package session

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache/cachetest"
)

// TestRoundTrips counts the store calls of the requests a web page makes
// (promises 6 and 15): resuming a session is one read of its whole record, a
// commit is one write of the changed fields, and requests without a session or
// with a malformed cookie never reach the store.
func TestRoundTrips(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{})
		if err := h.m.RegisterBag("prefs"); err != nil {
			t.Fatal(err)
		}
		var report []string
		count := func(what string, fn func(), want ...cachetest.Op) {
			t.Helper()
			h.calls.Reset()
			fn()
			h.wantCalls(what, want...)
			report = append(report, fmt.Sprintf("%-44s %v", what, ops(h.calls.Calls())))
		}
		// page reads everything an HTML page shows: a value, a bag, the flashes
		// (without consuming them), an extension's field, the tags and the
		// metadata.
		page := func(w http.ResponseWriter, r *http.Request) {
			ctx, s := r.Context(), sess(t, r)
			var user string
			_ = s.Get(ctx, "user", &user)
			bag, _ := s.Bag("prefs")
			var theme string
			_ = bag.Get(ctx, "theme", &theme)
			_, _ = bag.Keys(ctx)
			_, _ = s.Flashes().PeekAll(ctx)
			_, _, _ = ExtensionOf(s).Field(ctx, "basket")
			_, _ = s.Tags(ctx)
			_, _ = s.Metadata(ctx)
			fmt.Fprintf(w, "hello %s (%s)", user, theme)
		}

		count("no cookie: a page", func() { h.do("", page) })
		count("malformed cookie: a page", func() { h.do(newID()[1:], page) })

		var id string
		count("start (Start + Put + bag + flash + tag)", func() {
			id = h.startSession(func(ctx context.Context, s *Session) error {
				_ = s.Put(ctx, "user", "guest")
				bag, _ := s.Bag("prefs")
				_ = bag.Set(ctx, "theme", "dark")
				_ = s.Flashes().Add(ctx, "notice", "welcome")
				_ = ExtensionOf(s).StageField(ctx, "basket", []byte{0x90})
				return s.AddTag(ctx, "visitor")
			})
		}, cachetest.OpWrite)
		count("cookie, page does not use the session", func() {
			h.do(id, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("static")) })
		})
		count("resume and read everything, nothing changed", func() {
			if w := h.do(id, page); w.Body.String() != "hello guest (dark)" {
				t.Errorf("page = %q", w.Body)
			}
		}, cachetest.OpRead)
		h.clock.Add(DefaultUpdateMetadataThreshold)
		count("the same past the touch threshold", func() { h.do(id, page) }, cachetest.OpRead, cachetest.OpWrite)
		count("a change (Put + bag + flash read + tag)", func() {
			h.do(id, func(w http.ResponseWriter, r *http.Request) {
				ctx, s := r.Context(), sess(t, r)
				_ = s.Put(ctx, "seen", true)
				bag, _ := s.Bag("prefs")
				_ = bag.Set(ctx, "theme", "light")
				_, _ = s.Flashes().All(ctx)
				_ = s.AddTag(ctx, "returning")
				page(w, r)
			})
		}, cachetest.OpRead, cachetest.OpWrite)
		if w := h.calls.Calls()[1].Write; len(w.Fields) != 3 || !slices.Equal(w.AddTags, []string{"returning"}) {
			t.Errorf("the change wrote %d fields %+v, want v:seen, b:prefs and f", len(w.Fields), w)
		}
		var renewed string
		count("login (RenewID + Put + AddTag)", func() {
			h.do(id, func(w http.ResponseWriter, r *http.Request) {
				ctx, s := r.Context(), sess(t, r)
				_ = s.RenewID(ctx)
				_ = s.Put(ctx, "user", "alice")
				_ = s.AddTag(ctx, "user:alice")
				renewed, _ = s.ID(ctx)
			})
		}, cachetest.OpRead, cachetest.OpWrite)
		count("the old cookie after login", func() { h.do(id, page) }, cachetest.OpRead)
		count("logout (Destroy)", func() {
			h.do(renewed, func(w http.ResponseWriter, r *http.Request) { _ = sess(t, r).Destroy(r.Context(), "logout") })
		}, cachetest.OpRead, cachetest.OpDelete)
		other := h.startSession(nil)
		otherRef, _ := splitID(other)
		count("Manager.Destroy by reference", func() { _, _ = h.m.Destroy(context.Background(), otherRef, "admin") }, cachetest.OpDelete)
		another := h.startSession(nil)
		count("Manager.Destroy by ID (the secret checked)", func() { _, _ = h.m.Destroy(context.Background(), another, "admin") }, cachetest.OpRead, cachetest.OpDelete)
		t.Logf("store calls per request (%s):\n%s", b.name, strings.Join(report, "\n"))
	})
}

func ops(calls []cachetest.Call) []cachetest.Op {
	out := []cachetest.Op{}
	for _, c := range calls {
		out = append(out, c.Op)
	}
	return out
}

// TestDeadCookies is the second trap: a request carrying the cookie of an
// expired session, of a session the store does not know, or of a real session
// with a forged verifier proceeds as without a session, deletes nothing (the
// collector removes expired sessions; a request never does) and expires the
// cookie, so the browser stops sending it.
func TestDeadCookies(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{InactivityTimeout: 10 * time.Minute})
		live := h.startSession(func(ctx context.Context, s *Session) error { return s.Put(ctx, "k", "live") })
		expired := h.startSession(func(ctx context.Context, s *Session) error {
			for i := range 20 { // a big session: deleting it inline would cost
				_ = s.Put(ctx, fmt.Sprintf("k%d", i), strings.Repeat("x", 100))
			}
			return s.AddTag(ctx, "user:gone")
		})
		h.clock.Add(9 * time.Minute)
		if !h.started(live) {
			t.Fatal("the live session did not resume")
		}
		h.clock.Add(2 * time.Minute) // expired is 11 minutes old, live 2
		cases := map[string]string{
			"expired":         expired,
			"unknown":         newID(),
			"forged verifier": live[:RefLength] + newID()[RefLength:],
		}
		for name, cookie := range cases {
			t.Run(strings.ReplaceAll(name, " ", "-"), func(t *testing.T) {
				h.calls.Reset()
				w := h.do(cookie, func(w http.ResponseWriter, r *http.Request) {
					ctx, s := r.Context(), sess(t, r)
					if ok, err := s.IsStarted(ctx); ok || err != nil {
						t.Errorf("IsStarted = %v, %v; want false, nil", ok, err)
					}
					var v string
					if err := s.Get(ctx, "k", &v); err == nil {
						t.Errorf("Get read %q from a dead session", v)
					}
					if err := s.Put(ctx, "k", "x"); err == nil {
						t.Error("Put on a dead session succeeded")
					}
					_, _ = w.Write([]byte("anonymous page"))
				})
				if n := h.calls.Count(cachetest.OpDelete, cachetest.OpDeleteMany, cachetest.OpFlush); n != 0 {
					t.Errorf("the request deleted %d times: %v", n, ops(h.calls.Calls()))
				}
				h.wantCalls("the request", cachetest.OpRead)
				if w.Code != http.StatusOK || w.Body.String() != "anonymous page" {
					t.Errorf("response %d %q", w.Code, w.Body)
				}
				if !expiresCookie(t, w, "fxsession") {
					t.Errorf("Set-Cookie = %q, want the cookie expired (Max-Age<0)", w.Header().Values("Set-Cookie"))
				}
				if !strings.Contains(w.Header().Get("Set-Cookie"), "Max-Age=0") {
					t.Errorf("Set-Cookie on the wire = %q", w.Header().Get("Set-Cookie"))
				}
				// Such a request may start a session of its own: a new ID,
				// never the dead one.
				w = h.do(cookie, func(w http.ResponseWriter, r *http.Request) {
					s := sess(t, r)
					_, _ = s.IsStarted(r.Context())
					_ = s.Start(r.Context())
				})
				if c := sessionCookie(t, w, "fxsession"); c == nil || c.MaxAge < 0 || c.Value[:RefLength] == cookie[:RefLength] {
					t.Errorf("starting after a dead cookie: %v", c)
				}
			})
		}
		// The live session survived the forged verifier.
		var v string
		h.do(live, func(w http.ResponseWriter, r *http.Request) { _ = sess(t, r).Get(r.Context(), "k", &v) })
		if v != "live" {
			t.Errorf("the session whose reference was used with a forged verifier: k = %q", v)
		}
		// The expired session is the collector's: it is still there for it.
		n, err := h.m.CollectGarbage(context.Background())
		if err != nil || n != 1 {
			t.Errorf("CollectGarbage = %d, %v; want the one expired session", n, err)
		}
	})
}

// TestDeadCookieUnused: a dead cookie on a route that never uses the session
// costs nothing and is left alone (it is looked up on first use only).
func TestDeadCookieUnused(t *testing.T) {
	h := newHarness(t, memoryBackend(t), Config{})
	w := h.do(newID(), func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("static")) })
	h.wantCalls("a dead cookie, session unused")
	if len(w.Header().Values("Set-Cookie")) != 0 {
		t.Errorf("Set-Cookie = %q", w.Header().Values("Set-Cookie"))
	}
}
