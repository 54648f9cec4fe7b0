package session

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
)

func TestNoCookieTouchesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
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
			if s.Ref() != "" {
				t.Errorf("Ref of an unstarted session = %q", s.Ref())
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
		h.wantCalls("a request without a cookie")
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

// TestStartStoresOnlyTheVerifierHash: a new session is one record keyed by its
// reference (the ID's selector), written in one store call; the store holds
// the SHA-256 of the verifier and never the ID or the verifier itself.
func TestStartStoresOnlyTheVerifierHash(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{})
		var id, ref string
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
			ref = s.Ref()
			if err := s.Put(r.Context(), "greeting", "hello"); err != nil {
				t.Fatal(err)
			}
			_, _ = w.Write([]byte("ok"))
		})
		h.wantCalls("the request that starts a session", cachetest.OpWrite)
		if !ValidID(id) || len(id) != IDLength {
			t.Fatalf("minted ID %q is not a valid ID", id)
		}
		if ref != id[:RefLength] || len(ref) != RefLength {
			t.Errorf("Ref = %q, want the ID's first %d characters", ref, RefLength)
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
		recs := h.records()
		if len(recs) != 1 || recs[0].Key != ref {
			t.Fatalf("stored records = %v, want one keyed %s", recs, ref)
		}
		rec := recs[0]
		if got, want := fieldNames(rec), []string{"a", "m", "v:greeting"}; !slices.Equal(got, want) {
			t.Errorf("fields = %v, want %v", got, want)
		}
		verifier := id[RefLength:]
		for _, f := range rec.Fields {
			if strings.Contains(string(f.Value), verifier) || strings.Contains(f.Name, verifier) {
				t.Errorf("the verifier is in the store, field %q", f.Name)
			}
		}
		if rec.Expires.IsZero() || !rec.Expires.Equal(b.clock.Now().Add(DefaultInactivityTimeout)) {
			t.Errorf("record expiry = %v, want now + the inactivity timeout", rec.Expires)
		}
		mf, _ := rec.Field(fieldMeta)
		md, err := decodeMetadata(mf.Value)
		if err != nil {
			t.Fatal(err)
		}
		if md.verifier != verifierHash(verifier) || !md.created.Equal(b.clock.Now()) {
			t.Errorf("metadata = %+v, want the verifier's SHA-256 and the start time", md)
		}
	})
}

func TestCookieUnusedNoStoreAccess(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{})
		id := h.startSession(nil)
		h.calls.Reset()
		w := h.do(id, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("static")) })
		h.wantCalls("a request not using the session")
		if len(w.Header().Values("Set-Cookie")) != 0 || w.Header().Get("Cache-Control") != "" {
			t.Errorf("headers on an unused session: %v", w.Header())
		}
	})
}

func TestMalformedCookiesNeverReachTheStore(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{})
		valid := newID()
		bad := []string{
			"short",
			valid + "A",              // too long
			valid[:IDLength-1],       // too short
			valid[:IDLength-1] + "!", // bad alphabet
			valid[:IDLength-1] + "B", // non-canonical last character of the verifier
			valid[:RefLength-1] + "B" + valid[RefLength:], // non-canonical selector
			strings.Repeat("+", IDLength),                 // std base64, not url
			`"` + valid[:IDLength-2] + `"`,                // quoted
			strings.Repeat("a", 64),                       // a hash, not an ID
			valid[:RefLength],                             // a reference, not an ID
			valid[:20] + " " + valid[21:],                 // embedded space
			strings.Repeat("\u00e9", 32) + "a",            // non-ASCII
		}
		for _, v := range bad {
			w := h.do(v, func(w http.ResponseWriter, r *http.Request) {
				ok, err := sess(t, r).IsStarted(r.Context())
				if ok || err != nil {
					t.Errorf("cookie %q: IsStarted = %v, %v", v, ok, err)
				}
			})
			if c := w.Header().Values("Set-Cookie"); len(c) != 0 {
				t.Errorf("cookie %q: Set-Cookie %q", v, c)
			}
		}
		h.wantCalls("malformed cookies")
	})
}

func TestUnknownIDIsNotAdopted(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
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
		if got == forged || got[:RefLength] == forged[:RefLength] {
			t.Fatal("strict mode: the forged ID was adopted")
		}
		if c := sessionCookie(t, w, "fxsession"); c == nil || c.Value != got || c.MaxAge < 0 {
			t.Errorf("cookie = %v, want the new ID", c)
		}
	})
}

type point struct {
	X, Y int
}

func TestValuesAcrossRequests(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
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
			// A key may look like an extension's or a bag's field: user keys have
			// their own prefix in the record.
			if err := s.Put(ctx, "e:x", 1); err != nil {
				t.Errorf("Put(e:x) = %v", err)
			}
			if err := s.Put(ctx, "bad key", 1); !errors.Is(err, cache.ErrInvalidKey) {
				t.Errorf("Put with a space = %v", err)
			}
			if err := s.Put(ctx, strings.Repeat("k", maxUserKey+1), 1); !errors.Is(err, cache.ErrInvalidKey) {
				t.Errorf("Put with a key of %d bytes = %v", maxUserKey+1, err)
			}
			if err := s.Put(ctx, strings.Repeat("k", maxUserKey), 1); err != nil {
				t.Errorf("Put with a key of %d bytes = %v", maxUserKey, err)
			}
		})
		if c := sessionCookie(t, w, "fxsession"); c != nil {
			t.Errorf("a resumed session with a browser-session cookie got Set-Cookie %v", c)
		}
		if w.Header().Get("Cache-Control") != "private" {
			t.Errorf("Cache-Control = %q on a session response", w.Header().Get("Cache-Control"))
		}
		h.do(id, func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			if ok, err := s.Has(r.Context(), "gone"); ok || err != nil {
				t.Errorf("removed value still there: %v, %v", ok, err)
			}
			var n int
			if err := s.Get(r.Context(), "e:x", &n); err != nil || n != 1 {
				t.Errorf("Get(e:x) = %d, %v", n, err)
			}
		})
		if _, ok := h.record(id).Field("v:gone"); ok {
			t.Error("the removed value's field is still in the record")
		}
	})
}

func TestPayloadLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{MaxPayload: 100})
		id := h.startSession(func(ctx context.Context, s *Session) error {
			if err := s.Put(ctx, "big", strings.Repeat("x", 200)); !errors.Is(err, cache.ErrValueTooLarge) {
				t.Errorf("Put of 200 bytes with limit 100 = %v", err)
			}
			x := ExtensionOf(s)
			if err := x.StageField(ctx, "big", make([]byte, 101)); !errors.Is(err, cache.ErrValueTooLarge) {
				t.Errorf("StageField too large = %v", err)
			}
			if _, err := x.WriteField(ctx, "big", make([]byte, 101), 0); !errors.Is(err, cache.ErrValueTooLarge) {
				t.Errorf("WriteField too large = %v", err)
			}
			return s.Put(ctx, "small", "ok")
		})
		if fieldNames(h.record(id))[2] != "v:small" {
			t.Errorf("fields = %v", fieldNames(h.record(id)))
		}
	})
}

// TestPayloadLimitAtCommit: a flash bag grown past MaxPayload fails the commit
// (the error handler answers) and nothing is written.
func TestPayloadLimitAtCommit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{MaxPayload: 100})
		id := h.startSession(func(ctx context.Context, s *Session) error { return s.Put(ctx, "k", 1) })
		h.calls.Reset()
		w := h.do(id, func(w http.ResponseWriter, r *http.Request) {
			_ = sess(t, r).Flashes().Add(r.Context(), "notice", strings.Repeat("y", 200))
		})
		if w.Code != http.StatusServiceUnavailable {
			t.Errorf("status %d, want 503 from the default error handler", w.Code)
		}
		h.wantCalls("an oversized commit", cachetest.OpRead)
		if _, ok := h.record(id).Field(fieldFlash); ok {
			t.Error("the oversized flash bag was written")
		}
	})
}

// TestUnchangedRequestWritesNothing: a request that only reads costs one store
// read and writes nothing until the activity is older than the threshold; then
// one write moves the activity and the record's expiry.
func TestUnchangedRequestWritesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{})
		id := h.startSession(func(ctx context.Context, s *Session) error { return s.Put(ctx, "n", 1) })
		read := func(what string, ops ...cachetest.Op) {
			t.Helper()
			h.calls.Reset()
			h.do(id, func(w http.ResponseWriter, r *http.Request) {
				var n int
				if err := sess(t, r).Get(r.Context(), "n", &n); err != nil || n != 1 {
					t.Errorf("Get = %d, %v", n, err)
				}
				_, _ = w.Write([]byte("page")) // two commit points
			})
			h.wantCalls(what, ops...)
		}
		h.clock.Add(30 * time.Second)
		read("a read within the threshold", cachetest.OpRead)
		h.clock.Add(31 * time.Second) // 61 s since the stored last activity
		read("a read after the threshold", cachetest.OpRead, cachetest.OpWrite)
		if w := h.calls.Calls()[1].Write; len(w.Fields) != 1 || w.Fields[0].Name != fieldActivity || w.Expires.IsZero() {
			t.Errorf("the touch wrote %+v, want the activity field and the expiry", w)
		}
		read("a read right after a touch", cachetest.OpRead)
		s, err := h.m.Session(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		last, _ := s.LastActivity(context.Background())
		if want := h.clock.Now(); !last.Equal(want) {
			t.Errorf("stored last activity = %v, want %v", last, want)
		}
		if got, want := h.record(id).Expires, h.clock.Now().Add(DefaultInactivityTimeout); !got.Equal(want) {
			t.Errorf("record expiry after the touch = %v, want %v", got, want)
		}
		// Touch forces the write.
		h.clock.Add(time.Second)
		h.calls.Reset()
		h.do(id, func(w http.ResponseWriter, r *http.Request) {
			if err := sess(t, r).Touch(r.Context()); err != nil {
				t.Error(err)
			}
		})
		h.wantCalls("Touch", cachetest.OpRead, cachetest.OpWrite)
	})
}

// TestThresholdNever: with UpdateMetadataThreshold Never every request that
// uses the session writes its activity, once (not once per commit point).
func TestThresholdNever(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{UpdateMetadataThreshold: Never})
		id := h.startSession(nil)
		for i := range 3 {
			h.clock.Add(time.Second)
			h.calls.Reset()
			h.do(id, func(w http.ResponseWriter, r *http.Request) {
				_, _ = sess(t, r).IsStarted(r.Context())
				_, _ = w.Write([]byte("page")) // the second commit point has nothing to do
			})
			h.wantCalls("request "+string(rune('1'+i)), cachetest.OpRead, cachetest.OpWrite)
		}
		md, err := h.m.Session(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if m, _ := md.Metadata(context.Background()); !m.LastUsed.Equal(h.clock.Now()) {
			t.Errorf("LastUsed = %v, want %v", m.LastUsed, h.clock.Now())
		}
	})
}

func TestExpiry(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		t.Run("inactivity", func(t *testing.T) {
			h := newHarness(t, b, Config{Namespace: "inactivity", InactivityTimeout: 10 * time.Minute})
			id := h.startSession(func(ctx context.Context, s *Session) error { return s.Put(ctx, "k", 1) })
			h.clock.Add(9 * time.Minute)
			if !h.started(id) {
				t.Error("session expired before its timeout")
			}
			h.clock.Add(9 * time.Minute) // 9 minutes after the touch
			if !h.started(id) {
				t.Error("a used session expired: its activity was not recorded")
			}
			h.clock.Add(11 * time.Minute)
			h.calls.Reset()
			w := h.do(id, func(w http.ResponseWriter, r *http.Request) {
				if ok, err := sess(t, r).IsStarted(r.Context()); ok || err != nil {
					t.Errorf("expired session: IsStarted = %v, %v", ok, err)
				}
			})
			h.wantCalls("a request with an expired session's cookie", cachetest.OpRead)
			if !expiresCookie(t, w, "fxsession") {
				t.Errorf("the expired session's cookie is not expired: %q", w.Header().Values("Set-Cookie"))
			}
			// The collector removes it, not the request.
			n, err := h.m.CollectGarbage(context.Background())
			if err != nil || n != 1 {
				t.Errorf("CollectGarbage = %d, %v; want 1", n, err)
			}
			if recs := h.records(); len(recs) != 0 {
				t.Errorf("records left after the collector: %v", recs)
			}
		})
		t.Run("absolute", func(t *testing.T) {
			h := newHarness(t, b, Config{Namespace: "absolute", AbsoluteLifetime: time.Hour})
			id := h.startSession(nil)
			for range 3 {
				h.clock.Add(15 * time.Minute)
				if !h.started(id) {
					t.Fatal("session ended before its absolute lifetime")
				}
			}
			if got, want := h.record(id).Expires, h.clock.Now().Add(15*time.Minute); !got.Equal(want) {
				t.Errorf("record expiry = %v, want the absolute end %v", got, want)
			}
			h.clock.Add(15 * time.Minute)
			if h.started(id) {
				t.Error("session outlived its absolute lifetime")
			}
		})
		t.Run("never", func(t *testing.T) {
			h := newHarness(t, b, Config{Namespace: "never", InactivityTimeout: Never})
			id := h.startSession(nil)
			if exp := h.record(id).Expires; !exp.IsZero() {
				t.Errorf("a session that never expires has the record expiry %v", exp)
			}
			h.clock.Add(1000 * time.Hour)
			if !h.started(id) {
				t.Error("InactivityTimeout Never: session expired")
			}
		})
	})
}

func TestRenewID(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{})
		id := h.startSession(func(ctx context.Context, s *Session) error {
			if err := s.AddTag(ctx, "guest"); err != nil {
				return err
			}
			return s.Put(ctx, "basket", []string{"apple"})
		})
		before := h.record(id)
		var renewed, ref string
		h.calls.Reset()
		w := h.do(id, func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			if err := s.RenewID(r.Context()); err != nil {
				t.Fatal(err)
			}
			renewed, _ = s.ID(r.Context())
			ref = s.Ref()
			_ = s.AddTag(r.Context(), "user:alice")
		})
		h.wantCalls("renew and tag", cachetest.OpRead, cachetest.OpWrite)
		if renewed == id || !ValidID(renewed) {
			t.Fatalf("renewed ID = %q", renewed)
		}
		if renewed[:RefLength] != id[:RefLength] || ref != id[:RefLength] {
			t.Errorf("renewal changed the reference: %s -> %s (Ref %s)", id[:RefLength], renewed[:RefLength], ref)
		}
		// Only the metadata (and the tag) changed: the values were not rewritten.
		if ws := h.calls.Calls()[1].Write; ws.Create || len(ws.Fields) != 1 || ws.Fields[0].Name != fieldMeta || !ws.Fields[0].Check {
			t.Errorf("the renewal wrote %+v, want only a conditional write of the metadata", ws)
		}
		after := h.record(id)
		for _, f := range after.Fields {
			if strings.Contains(string(f.Value), renewed[RefLength:]) {
				t.Errorf("the new verifier is in the store, field %q", f.Name)
			}
		}
		mf, _ := after.Field(fieldMeta)
		if md, err := decodeMetadata(mf.Value); err != nil || md.verifier != verifierHash(renewed[RefLength:]) {
			t.Errorf("stored metadata after renewal: %+v, %v; want the new verifier's hash", md, err)
		}
		bv, _ := before.Field("v:basket")
		av, _ := after.Field("v:basket")
		if bv.Version != av.Version {
			t.Error("the renewal rewrote a value")
		}
		if c := sessionCookie(t, w, "fxsession"); c == nil || c.Value != renewed {
			t.Fatalf("cookie after renewal = %v", c)
		}
		w = h.do(id, func(w http.ResponseWriter, r *http.Request) {
			if ok, _ := sess(t, r).IsStarted(r.Context()); ok {
				t.Error("the old ID still resolves")
			}
		})
		if !expiresCookie(t, w, "fxsession") {
			t.Error("a request with the old ID did not get its cookie expired")
		}
		h.do(renewed, func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			var basket []string
			if err := s.Get(r.Context(), "basket", &basket); err != nil || len(basket) != 1 {
				t.Errorf("data after renewal = %v, %v", basket, err)
			}
			tags, _ := s.Tags(r.Context())
			if !slices.Contains(tags, "guest") || !slices.Contains(tags, "user:alice") {
				t.Errorf("tags after renewal = %v", tags)
			}
		})
		if _, err := h.m.Session(context.Background(), id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Manager.Session(old ID) = %v, want ErrNotFound", err)
		}
		if _, err := h.m.Session(context.Background(), renewed); err != nil {
			t.Errorf("Manager.Session(new ID) = %v", err)
		}
		// Renewing after the response began is refused.
		h.do(renewed, func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("x"))
			if err := sess(t, r).RenewID(r.Context()); !errors.Is(err, ErrHeadersSent) {
				t.Errorf("RenewID after the headers = %v", err)
			}
		})
		// Renewing twice in a request: the last ID is the one sent and stored.
		var last string
		w = h.do(renewed, func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			_ = s.RenewID(r.Context())
			_ = s.RenewID(r.Context())
			last, _ = s.ID(r.Context())
		})
		if c := sessionCookie(t, w, "fxsession"); c == nil || c.Value != last {
			t.Fatalf("cookie after two renewals = %v, want %s", c, last)
		}
		if h.started(renewed) || !h.started(last) {
			t.Error("after two renewals in one request, the last ID must be the only one")
		}
	})
}

// TestRenewIDStartsASession: RenewID without a session starts one (login on a
// first visit) in one write.
func TestRenewIDStartsASession(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{})
		var id string
		w := h.do("", func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			if err := s.RenewID(r.Context()); err != nil {
				t.Fatal(err)
			}
			id, _ = s.ID(r.Context())
			_ = s.Put(r.Context(), "user", "alice")
		})
		h.wantCalls("RenewID on a first visit", cachetest.OpWrite)
		if c := sessionCookie(t, w, "fxsession"); c == nil || c.Value != id {
			t.Fatalf("cookie = %v", c)
		}
	})
}

func TestDestroy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{})
		id := h.startSession(func(ctx context.Context, s *Session) error {
			_ = s.AddTag(ctx, "user:alice")
			return s.Put(ctx, "k", "v")
		})
		h.calls.Reset()
		w := h.do(id, func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			if err := s.Destroy(r.Context(), "logout"); err != nil {
				t.Fatal(err)
			}
			if ok, _ := s.IsStarted(r.Context()); ok {
				t.Error("started after Destroy")
			}
			if err := s.Put(r.Context(), "k", "again"); !errors.Is(err, ErrNotStarted) {
				t.Errorf("Put after Destroy = %v", err)
			}
		})
		// One read to resume (it checks the cookie's secret), one delete.
		h.wantCalls("destroy", cachetest.OpRead, cachetest.OpDelete)
		if !expiresCookie(t, w, "fxsession") {
			t.Errorf("cookie after destroy = %q, want an expiring one", w.Header().Values("Set-Cookie"))
		}
		if w.Header().Get("Cache-Control") != "private" {
			t.Errorf("Cache-Control = %q", w.Header().Get("Cache-Control"))
		}
		if recs := h.records(); len(recs) != 0 {
			t.Errorf("records after destroy = %v", recs)
		}
		for k, err := range h.ns().Tagged(context.Background(), "user:alice") {
			t.Errorf("the tag index still lists %q (%v)", k, err)
		}
		mustContain(t, "logs", h.logs.String(), "reason=logout")
		if h.started(id) {
			t.Error("the destroyed session resolves")
		}
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
		// A session started and destroyed in one request never reaches the store.
		n := len(h.records())
		h.calls.Reset()
		w = h.do("", func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			_ = s.Start(r.Context())
			_ = s.Put(r.Context(), "k", 1)
			_ = s.Destroy(r.Context(), "changed my mind")
		})
		h.wantCalls("start and destroy in one request")
		if len(w.Header().Values("Set-Cookie")) != 0 || len(h.records()) != n {
			t.Errorf("start+destroy: Set-Cookie %q, records %d -> %d", w.Header().Values("Set-Cookie"), n, len(h.records()))
		}
	})
}
