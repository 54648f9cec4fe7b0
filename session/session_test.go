package session

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache"
)

func TestNoCookieTouchesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b cache.Backend) {
		h := newHarness(t, b, Config{})
		w := h.do("", func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			started, err := s.IsStarted(r.Context())
			if err != nil || started {
				t.Errorf("IsStarted = %v, %v; want false, nil", started, err)
			}
			if _, err := s.ID(r.Context()); !errors.Is(err, ErrNotStarted) {
				t.Errorf("ID error = %v, want ErrNotStarted", err)
			}
			if s.HashedID() != "" {
				t.Errorf("HashedID of an unstarted session = %q", s.HashedID())
			}
			var v string
			if err := s.Get(r.Context(), "k", &v); !errors.Is(err, ErrNotStarted) {
				t.Errorf("Get error = %v, want ErrNotStarted", err)
			}
			if err := s.Put(r.Context(), "k", "v"); !errors.Is(err, ErrNotStarted) {
				t.Errorf("Put error = %v, want ErrNotStarted", err)
			}
			if ok, err := s.Has(r.Context(), "k"); ok || err != nil {
				t.Errorf("Has = %v, %v", ok, err)
			}
			msgs, err := s.Flashes().Peek(r.Context(), "notice")
			if msgs != nil || err != nil {
				t.Errorf("Peek = %v, %v", msgs, err)
			}
			_, _ = w.Write([]byte("anonymous"))
		})
		if got := h.counts.total(); got != 0 {
			t.Errorf("store calls = %d, want 0", got)
		}
		if v := w.Header().Values("Set-Cookie"); len(v) != 0 {
			t.Errorf("Set-Cookie = %q, want none", v)
		}
		if cc := w.Header().Get("Cache-Control"); cc != "" {
			t.Errorf("Cache-Control = %q, want none for an anonymous page", cc)
		}
		if w.Body.String() != "anonymous" {
			t.Errorf("body = %q", w.Body.String())
		}
	})
}

func TestStartSetsCookieAndStoresOnlyHash(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b cache.Backend) {
		h := newHarness(t, b, Config{})
		var id, hashed string
		w := h.do("", func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			if err := s.Start(r.Context()); err != nil {
				t.Fatal(err)
			}
			if err := s.Start(r.Context()); err != nil {
				t.Fatalf("second Start: %v", err)
			}
			var err error
			if id, err = s.ID(r.Context()); err != nil {
				t.Fatal(err)
			}
			hashed = s.HashedID()
			if err := s.Put(r.Context(), "greeting", "hello"); err != nil {
				t.Fatal(err)
			}
			_, _ = w.Write([]byte("ok"))
		})
		if !ValidID(id) {
			t.Fatalf("minted ID %q is not a valid ID", id)
		}
		if len(hashed) != 16 || !strings.HasPrefix(hashID(id), hashed) {
			t.Errorf("HashedID = %q, want the first 16 hex of the SHA-256", hashed)
		}
		c := sessionCookie(t, w, "fxsession")
		if c == nil || c.Value != id {
			t.Fatalf("cookie = %v, want fxsession=%s", c, id)
		}
		if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure || c.MaxAge != 0 {
			t.Errorf("cookie attributes = %+v", c)
		}
		if cc := w.Header().Get("Cache-Control"); cc != "private" {
			t.Errorf("Cache-Control = %q, want private", cc)
		}
		if v := w.Header().Get("Vary"); v != "Cookie" {
			t.Errorf("Vary = %q, want Cookie", v)
		}
		entries := h.storedEntries()
		if len(entries) != 2 {
			t.Fatalf("stored entries = %d (%v), want metadata + one value", len(entries), entries)
		}
		for _, e := range entries {
			if strings.Contains(e.Key, id) || strings.Contains(string(e.Value), id) {
				t.Errorf("the raw session ID is in the store: %q", e.Key)
			}
		}
		if entries[0].Key != "meta/"+hashID(id) {
			t.Errorf("metadata key = %q, want meta/<sha256 hex>", entries[0].Key)
		}
	})
}

func TestCookieUnusedNoStoreAccess(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b cache.Backend) {
		h := newHarness(t, b, Config{})
		id := h.startSession(nil)
		before := h.counts.total()
		w := h.do(id, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("static")) })
		if got := h.counts.total() - before; got != 0 {
			t.Errorf("store calls for a request not using the session = %d, want 0", got)
		}
		if len(w.Header().Values("Set-Cookie")) != 0 || w.Header().Get("Cache-Control") != "" {
			t.Errorf("headers on an unused session: %v", w.Header())
		}
	})
}

func TestMalformedCookiesNeverReachTheStore(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b cache.Backend) {
		h := newHarness(t, b, Config{})
		valid := newID()
		bad := []string{
			"short",
			valid + "A",                       // too long
			valid[:42] + "!",                  // bad alphabet
			valid[:42] + "B",                  // non-canonical last character
			strings.Repeat("+", IDLength),     // std base64, not url
			`"` + valid[:41] + `"`,            // quoted
			strings.Repeat("a", 64),           // a hash, not an ID
			valid[:20] + " " + valid[21:],     // embedded space
			strings.Repeat("\u00e9", 21) + "", // non-ASCII
		}
		for _, v := range bad {
			h.do(v, func(w http.ResponseWriter, r *http.Request) {
				ok, err := sess(t, r).IsStarted(r.Context())
				if ok || err != nil {
					t.Errorf("cookie %q: IsStarted = %v, %v", v, ok, err)
				}
			})
		}
		if got := h.counts.total(); got != 0 {
			t.Errorf("store calls for malformed cookies = %d, want 0", got)
		}
	})
}

func TestUnknownIDIsNotAdopted(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b cache.Backend) {
		h := newHarness(t, b, Config{})
		forged := newID()
		var got string
		w := h.do(forged, func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			if ok, err := s.IsStarted(r.Context()); ok || err != nil {
				t.Errorf("IsStarted with an unknown ID = %v, %v", ok, err)
			}
			if err := s.Start(r.Context()); err != nil {
				t.Fatal(err)
			}
			got, _ = s.ID(r.Context())
		})
		if got == forged {
			t.Fatal("strict mode: the forged ID was adopted")
		}
		if c := sessionCookie(t, w, "fxsession"); c == nil || c.Value != got {
			t.Errorf("cookie = %v, want the new ID", c)
		}
	})
}

type point struct {
	X, Y int
}

func TestValuesAcrossRequests(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b cache.Backend) {
		h := newHarness(t, b, Config{})
		id := h.startSession(func(ctx context.Context, s *Session) error {
			if err := s.Put(ctx, "p", point{1, 2}); err != nil {
				return err
			}
			if err := s.Put(ctx, "gone", 7); err != nil {
				return err
			}
			var p point
			if err := s.Get(ctx, "p", &p); err != nil || p != (point{1, 2}) {
				t.Errorf("read-your-write Get = %v, %v", p, err)
			}
			return nil
		})
		w := h.do(id, func(w http.ResponseWriter, r *http.Request) {
			ctx, s := r.Context(), sess(t, r)
			var p point
			if err := s.Get(ctx, "p", &p); err != nil || p != (point{1, 2}) {
				t.Errorf("Get = %v, %v", p, err)
			}
			var wrong []string
			err := s.Get(ctx, "p", &wrong)
			if !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), `"p"`) {
				t.Errorf("Get into the wrong type: %v, want ErrDecode naming the key", err)
			}
			if err := s.Get(ctx, "p", p); !errors.Is(err, ErrDecode) {
				t.Errorf("Get into a non-pointer: %v, want ErrDecode", err)
			}
			var n int
			if err := s.Get(ctx, "missing", &n); !errors.Is(err, ErrNotFound) || !errors.Is(err, cache.ErrNotFound) {
				t.Errorf("Get missing = %v, want ErrNotFound", err)
			}
			if ok, err := s.Has(ctx, "gone"); !ok || err != nil {
				t.Errorf("Has gone = %v, %v", ok, err)
			}
			if err := s.Remove(ctx, "gone"); err != nil {
				t.Fatal(err)
			}
			if ok, _ := s.Has(ctx, "gone"); ok {
				t.Error("Has after Remove = true")
			}
			if err := s.Put(ctx, "scope:x", 1); !errors.Is(err, cache.ErrInvalidKey) {
				t.Errorf("Put with the reserved prefix = %v", err)
			}
			if err := s.Put(ctx, "bad key", 1); !errors.Is(err, cache.ErrInvalidKey) {
				t.Errorf("Put with a space = %v", err)
			}
		})
		if c := sessionCookie(t, w, "fxsession"); c != nil {
			t.Errorf("a resumed session with a browser-session cookie got Set-Cookie %v", c)
		}
		if w.Header().Get("Cache-Control") != "private" {
			t.Errorf("Cache-Control = %q on a session response", w.Header().Get("Cache-Control"))
		}
		h.do(id, func(w http.ResponseWriter, r *http.Request) {
			if ok, err := sess(t, r).Has(r.Context(), "gone"); ok || err != nil {
				t.Errorf("removed value still there: %v, %v", ok, err)
			}
		})
	})
}

func TestPayloadLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b cache.Backend) {
		h := newHarness(t, b, Config{MaxPayload: 100})
		h.startSession(func(ctx context.Context, s *Session) error {
			if err := s.Put(ctx, "big", strings.Repeat("x", 200)); !errors.Is(err, cache.ErrValueTooLarge) {
				t.Errorf("Put of 200 bytes with limit 100 = %v", err)
			}
			if err := s.PutEntry(ctx, "scope:big", make([]byte, 101)); !errors.Is(err, cache.ErrValueTooLarge) {
				t.Errorf("PutEntry too large = %v", err)
			}
			return s.Put(ctx, "small", "ok")
		})
	})
}

func TestUnchangedRequestWritesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b cache.Backend) {
		h := newHarness(t, b, Config{})
		id := h.startSession(func(ctx context.Context, s *Session) error { return s.Put(ctx, "n", 1) })
		read := func() {
			h.do(id, func(w http.ResponseWriter, r *http.Request) {
				var n int
				if err := sess(t, r).Get(r.Context(), "n", &n); err != nil || n != 1 {
					t.Errorf("Get = %d, %v", n, err)
				}
			})
		}
		w0 := h.counts.writes.Load()
		h.clock.Add(30 * time.Second)
		read()
		if got := h.counts.writes.Load() - w0; got != 0 {
			t.Errorf("writes of a read-only request within the threshold = %d, want 0", got)
		}
		h.clock.Add(31 * time.Second) // 61 s since the stored last activity
		read()
		if got := h.counts.writes.Load() - w0; got != 1 {
			t.Errorf("writes after the threshold = %d, want 1 (the metadata touch)", got)
		}
		read()
		if got := h.counts.writes.Load() - w0; got != 1 {
			t.Errorf("writes right after a touch = %d, want still 1", got)
		}
		s, err := h.m.Session(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		last, _ := s.LastActivity(context.Background())
		if want := h.clock.Now(); !last.Equal(want) {
			t.Errorf("stored last activity = %v, want %v", last, want)
		}
		// Touch forces the write.
		h.clock.Add(time.Second)
		h.do(id, func(w http.ResponseWriter, r *http.Request) {
			if err := sess(t, r).Touch(r.Context()); err != nil {
				t.Error(err)
			}
		})
		if got := h.counts.writes.Load() - w0; got != 2 {
			t.Errorf("writes after Touch = %d, want 2", got)
		}
	})
}

func TestExpiry(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b cache.Backend) {
		t.Run("inactivity", func(t *testing.T) {
			h := newHarness(t, b, Config{Namespace: "inactivity", InactivityTimeout: 10 * time.Minute})
			id := h.startSession(func(ctx context.Context, s *Session) error { return s.Put(ctx, "k", 1) })
			h.clock.Add(9 * time.Minute)
			h.do(id, func(w http.ResponseWriter, r *http.Request) {
				if ok, _ := sess(t, r).IsStarted(r.Context()); !ok {
					t.Error("session expired before its timeout")
				}
			})
			h.clock.Add(9 * time.Minute) // 9 minutes after the touch
			h.do(id, func(w http.ResponseWriter, r *http.Request) {
				if ok, _ := sess(t, r).IsStarted(r.Context()); !ok {
					t.Error("a used session expired: its activity was not recorded")
				}
			})
			h.clock.Add(11 * time.Minute)
			h.do(id, func(w http.ResponseWriter, r *http.Request) {
				if ok, err := sess(t, r).IsStarted(r.Context()); ok || err != nil {
					t.Errorf("expired session: IsStarted = %v, %v", ok, err)
				}
			})
			if n := len(h.storedEntries()); n != 0 {
				t.Errorf("entries left after destroy-on-resume: %d", n)
			}
			mustContain(t, "logs", h.logs.String(), "reason=expired")
		})
		t.Run("absolute", func(t *testing.T) {
			h := newHarness(t, b, Config{Namespace: "absolute", AbsoluteLifetime: time.Hour})
			id := h.startSession(nil)
			for range 5 {
				h.clock.Add(15 * time.Minute)
				h.do(id, func(w http.ResponseWriter, r *http.Request) { _, _ = sess(t, r).IsStarted(r.Context()) })
			}
			h.do(id, func(w http.ResponseWriter, r *http.Request) {
				if ok, _ := sess(t, r).IsStarted(r.Context()); ok {
					t.Error("session outlived its absolute lifetime")
				}
			})
		})
		t.Run("never", func(t *testing.T) {
			h := newHarness(t, b, Config{Namespace: "never", InactivityTimeout: Never})
			id := h.startSession(nil)
			h.clock.Add(1000 * time.Hour)
			h.do(id, func(w http.ResponseWriter, r *http.Request) {
				if ok, _ := sess(t, r).IsStarted(r.Context()); !ok {
					t.Error("InactivityTimeout Never: session expired")
				}
			})
		})
	})
}

func TestRenewID(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b cache.Backend) {
		h := newHarness(t, b, Config{})
		id := h.startSession(func(ctx context.Context, s *Session) error {
			if err := s.AddTag(ctx, "guest"); err != nil {
				return err
			}
			return s.Put(ctx, "basket", []string{"apple"})
		})
		var renewed string
		dataWrites := h.counts.writes.Load()
		w := h.do(id, func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			if err := s.RenewID(r.Context()); err != nil {
				t.Fatal(err)
			}
			renewed, _ = s.ID(r.Context())
			_ = s.AddTag(r.Context(), "user:alice")
		})
		if renewed == id || !ValidID(renewed) {
			t.Fatalf("renewed ID = %q", renewed)
		}
		// renew: create new metadata + delete old; the tag: one more metadata write.
		if got := h.counts.writes.Load() - dataWrites; got > 3 {
			t.Errorf("renewal wrote %d times; only metadata should move", got)
		}
		if c := sessionCookie(t, w, "fxsession"); c == nil || c.Value != renewed {
			t.Fatalf("cookie after renewal = %v", c)
		}
		h.do(id, func(w http.ResponseWriter, r *http.Request) {
			if ok, _ := sess(t, r).IsStarted(r.Context()); ok {
				t.Error("the old ID still resolves")
			}
		})
		h.do(renewed, func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			var basket []string
			if err := s.Get(r.Context(), "basket", &basket); err != nil || len(basket) != 1 {
				t.Errorf("data after renewal = %v, %v", basket, err)
			}
			tags, _ := s.Tags(r.Context())
			if !contains(tags, "guest") || !contains(tags, "user:alice") {
				t.Errorf("tags after renewal = %v", tags)
			}
		})
		// Renewing after the response began is refused.
		h.do(renewed, func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("x"))
			if err := sess(t, r).RenewID(r.Context()); !errors.Is(err, ErrHeadersSent) {
				t.Errorf("RenewID after the headers = %v", err)
			}
		})
	})
}

func TestDestroy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b cache.Backend) {
		h := newHarness(t, b, Config{})
		id := h.startSession(func(ctx context.Context, s *Session) error { return s.Put(ctx, "k", "v") })
		w := h.do(id, func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			if err := s.Destroy(r.Context(), "logout"); err != nil {
				t.Fatal(err)
			}
			if ok, _ := s.IsStarted(r.Context()); ok {
				t.Error("started after Destroy")
			}
		})
		c := sessionCookie(t, w, "fxsession")
		if c == nil || c.MaxAge >= 0 || c.Value != "" {
			t.Errorf("cookie after destroy = %+v, want an expiring one", c)
		}
		if w.Header().Get("Cache-Control") != "private" {
			t.Errorf("Cache-Control = %q", w.Header().Get("Cache-Control"))
		}
		if n := len(h.storedEntries()); n != 0 {
			t.Errorf("entries after destroy = %d", n)
		}
		mustContain(t, "logs", h.logs.String(), "reason=logout")
		// Destroy then Start in one request: a fresh session, no expiring cookie.
		id2 := h.startSession(nil)
		w = h.do(id2, func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			_ = s.Destroy(r.Context(), "restart")
			if err := s.Start(r.Context()); err != nil {
				t.Fatal(err)
			}
		})
		if c := sessionCookie(t, w, "fxsession"); c == nil || c.MaxAge < 0 || c.Value == id2 {
			t.Errorf("cookie after destroy+start = %+v", c)
		}
	})
}
