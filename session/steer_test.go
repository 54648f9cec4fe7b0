package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/memstore"
)

// eventLog collects the events a listener receives.
type eventLog struct {
	mu  sync.Mutex
	all []Event
}

func (l *eventLog) listen(_ context.Context, e Event) {
	l.mu.Lock()
	l.all = append(l.all, e)
	l.mu.Unlock()
}

func (l *eventLog) events() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.all)
}

// wait waits until n events arrived (or fails after a generous while).
func (l *eventLog) wait(t *testing.T, n int) []Event {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := l.events()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events after 20 s, want %d: %v", len(got), n, got)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func kinds(es []Event) []string {
	var out []string
	for _, e := range es {
		s := e.Kind.String()
		if e.Reason != "" {
			s += "(" + e.Reason + ")"
		}
		out = append(out, s)
	}
	return out
}

// TestLifecycleEvents: every lifecycle event reaches the listener, after the
// change reached the store, with the session's reference, tags and device.
func TestLifecycleEvents(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{})
		var log eventLog
		if err := h.m.Listen(log.listen); err != nil {
			t.Fatal(err)
		}
		defer h.m.Close()
		id := h.startSession(func(ctx context.Context, s *Session) error { return s.AddTag(ctx, "user:ada") })
		ref, _ := splitID(id)
		var renewed string
		h.do(id, func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			if err := s.RenewID(r.Context()); err != nil {
				t.Error(err)
			}
			renewed, _ = s.ID(r.Context())
		})
		h.do(renewed, func(w http.ResponseWriter, r *http.Request) {
			if err := sess(t, r).Destroy(r.Context(), ""); err != nil {
				t.Error(err)
			}
		})
		got := log.wait(t, 3)
		if want := []string{"started", "renewed(renew)", "destroyed(logout)"}; !slices.Equal(kinds(got), want) {
			t.Fatalf("events %v, want %v", kinds(got), want)
		}
		for _, e := range got {
			if e.Ref != ref || !slices.Equal(e.Metadata.Tags, []string{"user:ada"}) || e.Metadata.Created.IsZero() || e.Time.IsZero() {
				t.Fatalf("event %+v: want ref %s, tags [user:ada], a creation time", e, ref)
			}
			if strings.Contains(fmt.Sprint(e), id) || strings.Contains(fmt.Sprint(e), renewed) {
				t.Fatalf("an event carries a session ID: %+v", e)
			}
		}
		// Destroyed by tag, by an admin, and expired.
		for range 2 {
			h.startSession(func(ctx context.Context, s *Session) error { return s.AddTag(ctx, "user:bob") })
		}
		admin := h.startSession(nil)
		expiring := h.startSession(nil)
		_ = expiring
		if n, err := h.m.DestroyByTag(t.Context(), "user:bob", ""); err != nil || n != 2 {
			t.Fatalf("DestroyByTag = %d, %v", n, err)
		}
		adminRef, _ := splitID(admin)
		if ok, err := h.m.Destroy(t.Context(), adminRef, ""); err != nil || !ok {
			t.Fatalf("Destroy = %v, %v", ok, err)
		}
		h.clock.Add(2 * time.Hour)
		if n, err := h.m.CollectGarbage(t.Context()); err != nil || n != 1 {
			t.Fatalf("CollectGarbage = %d, %v", n, err)
		}
		got = log.wait(t, 3+4+4)[3:] // 4 started, 2 by tag, 1 admin, 1 expired
		want := []string{"started", "started", "started", "started", "destroyed(by-tag)", "destroyed(by-tag)", "destroyed(admin)", "expired"}
		if !slices.Equal(kinds(got[len(got)-len(want):]), want) {
			t.Fatalf("events %v, want ... %v", kinds(got), want)
		}
		for _, e := range got[len(got)-4 : len(got)-2] {
			if !slices.Equal(e.Metadata.Tags, []string{"user:bob"}) {
				t.Fatalf("by-tag event without the session's tags: %+v", e)
			}
		}
	})
}

// TestSlowListenerNeverBlocks: a listener that does not return never holds up a
// request; events beyond the buffer are dropped and logged; the queued ones go
// out when the listener recovers.
func TestSlowListenerNeverBlocks(t *testing.T) {
	h := newHarness(t, memoryBackend(t), Config{EventBuffer: 8})
	release := make(chan struct{})
	var log eventLog
	if err := h.m.Listen(func(ctx context.Context, e Event) {
		<-release
		log.listen(ctx, e)
	}); err != nil {
		t.Fatal(err)
	}
	panicked := false
	if err := h.m.Listen(func(context.Context, Event) {
		if !panicked {
			panicked = true
			panic("listener bug")
		}
	}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range 50 {
		h.startSession(nil)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("50 requests took %v with a stuck listener", d)
	}
	if !strings.Contains(h.logs.String(), "session event dropped") {
		t.Fatalf("no drop logged: %s", h.logs)
	}
	close(release)
	if err := h.m.Close(); err != nil {
		t.Fatal(err)
	}
	// One event is being held by the listener and 8 wait in the buffer.
	if n := len(log.events()); n < 8 || n > 10 {
		t.Fatalf("%d events delivered after release, want the 9 or so queued", n)
	}
	if !strings.Contains(h.logs.String(), "listener panicked") {
		t.Fatalf("a listener's panic was not logged: %s", h.logs)
	}
}

// TestExpiredOnceAcrossProcesses: 1,000 sessions expire while two processes
// (two managers with their own collectors on one store) collect: each Expired
// event is given exactly once, by one of them, within two collector intervals.
func TestExpiredOnceAcrossProcesses(t *testing.T) {
	for _, bc := range backends() {
		if bc.name == "file" && testing.Short() {
			continue
		}
		t.Run(bc.name, func(t *testing.T) {
			b := bc.backend(t)
			const n = 1000
			interval := 500 * time.Millisecond
			cfg := Config{InactivityTimeout: time.Minute, GCInterval: interval, Now: b.clock.Now, Logger: quietLogger()}
			var managers []*Manager
			var logs [2]eventLog
			for i := range 2 {
				m, err := New(b.store, cfg)
				if err != nil {
					t.Fatal(err)
				}
				if err := m.Listen(logs[i].listen); err != nil {
					t.Fatal(err)
				}
				managers = append(managers, m)
			}
			ctx := t.Context()
			for i := range n {
				c, s := managers[i%2].NewContext(ctx, "")
				if err := s.Start(c); err != nil {
					t.Fatal(err)
				}
				if err := s.Commit(c); err != nil {
					t.Fatal(err)
				}
			}
			// The sessions' Started events (n, split between the managers) first.
			deadline := time.Now().Add(30 * time.Second)
			for len(logs[0].events())+len(logs[1].events()) < n && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			base := [2]int{len(logs[0].events()), len(logs[1].events())}
			b.clock.Add(2 * time.Minute)
			runCtx, cancel := context.WithCancel(ctx)
			var wg sync.WaitGroup
			start := time.Now()
			for _, m := range managers {
				wg.Go(func() { m.RunCollector(runCtx) })
			}
			counts := map[string]int{}
			for {
				total := 0
				clear(counts)
				for i := range 2 {
					for _, e := range logs[i].events()[base[i]:] {
						if e.Kind == EventExpired {
							counts[e.Ref]++
							total++
						}
					}
				}
				if total >= n || time.Since(start) > 30*time.Second {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			took := time.Since(start)
			cancel()
			wg.Wait()
			for _, m := range managers {
				_ = m.Close()
			}
			if len(counts) != n {
				t.Fatalf("%d sessions reported expired, want %d", len(counts), n)
			}
			for ref, c := range counts {
				if c != 1 {
					t.Fatalf("session %s reported expired %d times", ref, c)
				}
			}
			// Two intervals, plus what a loaded machine adds to one run: the
			// file backend's run of 1,000 took 2–2.4 s with the tests in
			// parallel on two cores, so the slack is generous; a collector
			// that waited out the lock's TTL (5 min) would still fail it.
			if limit := 2*interval + 20*time.Second; took > limit {
				t.Fatalf("the Expired events took %v, more than two collector intervals (%v) and slack", took, interval)
			}
			t.Logf("%s: %d Expired events, each once, %v after expiry (collector interval %v)", bc.name, n, took.Round(time.Millisecond), interval)
		})
	}
}

// TestRememberMe: a session given its own lifetime gets a persistent cookie of
// that age and keeps living past the manager's inactivity timeout; the absolute
// lifetime still ends it.
func TestRememberMe(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{InactivityTimeout: time.Hour, AbsoluteLifetime: 60 * 24 * time.Hour})
		month := 30 * 24 * time.Hour
		var cookie *http.Cookie
		w := h.do("", func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			if err := s.Start(r.Context()); err != nil {
				t.Fatal(err)
			}
			if err := s.SetLifetime(r.Context(), month); err != nil {
				t.Fatal(err)
			}
		})
		cookie = sessionCookie(t, w, h.m.cfg.cookieName)
		if cookie == nil || cookie.MaxAge < int(month/time.Second)-60 || cookie.MaxAge > int(month/time.Second) {
			t.Fatalf("cookie %+v, want Max-Age about %d", cookie, int(month/time.Second))
		}
		id := cookie.Value
		md := h.metadata(id)
		if md.Lifetime != month || !md.Expires.Equal(md.LastUsed.Add(month)) {
			t.Fatalf("metadata %+v, want a 30-day lifetime and expiry", md)
		}
		// Two days later (past the manager's hour) it is still there, and the
		// cookie is refreshed when its activity is written.
		h.clock.Add(48 * time.Hour)
		w = h.do(id, func(w http.ResponseWriter, r *http.Request) {
			if started, _ := sess(t, r).IsStarted(r.Context()); !started {
				t.Fatal("a remembered session expired after the manager's inactivity timeout")
			}
		})
		if c := sessionCookie(t, w, h.m.cfg.cookieName); c == nil || c.Value != id || c.MaxAge <= 0 {
			t.Fatalf("remembered cookie not refreshed: %+v", c)
		}
		// The absolute lifetime still applies: its cookie never outlives it.
		for range 2 {
			h.clock.Add(20 * 24 * time.Hour) // days 22, then 42
			h.do(id, func(w http.ResponseWriter, r *http.Request) {
				if err := sess(t, r).Touch(r.Context()); err != nil {
					t.Fatal(err)
				}
			})
		}
		h.clock.Add(8 * 24 * time.Hour) // day 50: 10 days of the absolute lifetime left
		w = h.do(id, func(w http.ResponseWriter, r *http.Request) {
			if err := sess(t, r).Touch(r.Context()); err != nil {
				t.Fatal(err)
			}
		})
		if c := sessionCookie(t, w, h.m.cfg.cookieName); c == nil || c.MaxAge > int(10*24*time.Hour/time.Second)+1 {
			t.Fatalf("cookie %+v outlives the absolute lifetime (10 days left)", c)
		}
		h.clock.Add(11 * 24 * time.Hour)
		h.do(id, func(w http.ResponseWriter, r *http.Request) {
			if started, _ := sess(t, r).IsStarted(r.Context()); started {
				t.Fatal("a remembered session outlived the absolute lifetime")
			}
		})
	})
}

// metadata opens a session by ID for its metadata.
func (h *harness) metadata(id string) Metadata {
	h.t.Helper()
	s, err := h.m.Session(h.t.Context(), id)
	if err != nil {
		h.t.Fatalf("Session: %v", err)
	}
	md, err := s.Metadata(h.t.Context())
	if err != nil {
		h.t.Fatal(err)
	}
	return md
}

// TestRotation: with RotateAfter, the first request after the ID is that old
// gets a new one; the previous one keeps working for the grace period only.
// Requests in flight across the rotation are neither logged out nor given a
// second session, and only one rotation happens.
func TestRotation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{RotateAfter: 15 * time.Minute, RotationGrace: time.Minute})
		var log eventLog
		if err := h.m.Listen(log.listen); err != nil {
			t.Fatal(err)
		}
		defer h.m.Close()
		id := h.startSession(func(ctx context.Context, s *Session) error { return s.Put(ctx, "k", "v") })
		ref, _ := splitID(id)
		// Before the interval: no rotation.
		h.clock.Add(10 * time.Minute)
		w := h.do(id, func(w http.ResponseWriter, r *http.Request) { _, _ = sess(t, r).IsStarted(r.Context()) })
		if c := sessionCookie(t, w, h.m.cfg.cookieName); c != nil && c.Value != id {
			t.Fatalf("rotated before RotateAfter: %+v", c)
		}
		// After it: many requests with the old ID at once.
		h.clock.Add(10 * time.Minute)
		const n = 12
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			newIDs  = map[string]bool{}
			refs    = map[string]bool{}
			lost    int
			release = make(chan struct{})
		)
		for range n {
			wg.Go(func() {
				w := h.do(id, func(w http.ResponseWriter, r *http.Request) {
					<-release
					s := sess(t, r)
					var v string
					if err := s.Get(r.Context(), "k", &v); err != nil || v != "v" {
						mu.Lock()
						lost++
						mu.Unlock()
						return
					}
					mu.Lock()
					refs[s.Ref()] = true
					mu.Unlock()
				})
				if c := sessionCookie(t, w, h.m.cfg.cookieName); c != nil && c.MaxAge >= 0 {
					mu.Lock()
					newIDs[c.Value] = true
					mu.Unlock()
				}
			})
		}
		close(release)
		wg.Wait()
		if lost != 0 || len(refs) != 1 || !refs[ref] {
			t.Fatalf("across the rotation: %d requests lost the session, refs %v (want only %s)", lost, refs, ref)
		}
		var rotated string
		for k := range newIDs {
			rotated = k
		}
		if len(newIDs) != 1 || rotated == id {
			t.Fatalf("new IDs sent %d (%v), want exactly one new ID", len(newIDs), newIDs)
		}
		events := log.wait(t, 2)
		if got := kinds(events); !slices.Equal(got, []string{"started", "renewed(rotation)"}) {
			t.Fatalf("events %v, want one rotation", got)
		}
		// Within the grace period both work; after it, only the new one.
		for _, c := range []string{id, rotated} {
			if !h.started(c) {
				t.Fatalf("ID %s… does not open the session during the grace period", c[:8])
			}
		}
		h.clock.Add(2 * time.Minute)
		if h.started(id) {
			t.Fatal("the rotated-out ID still works after the grace period")
		}
		if !h.started(rotated) {
			t.Fatal("the new ID does not work")
		}
		// A login renewal leaves no grace: the old ID dies at once.
		var renewed string
		h.do(rotated, func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			_ = s.RenewID(r.Context())
			renewed, _ = s.ID(r.Context())
		})
		if h.started(rotated) || !h.started(renewed) {
			t.Fatal("after RenewID the previous ID must die at once")
		}
	})
}

// TestDevices: the User-Agent is recorded (truncated); the client address only
// when asked, truncated, hashed or whole, through trusted proxies.
func TestDevices(t *testing.T) {
	key := []byte("0123456789abcdef0123")
	proxy := netip.MustParsePrefix("10.0.0.0/8")
	cases := []struct {
		mode AddressMode
		xff  string
		want string
	}{
		{AddressNone, "", ""},
		{AddressTruncated, "", "203.0.113.0/24"},
		{AddressFull, "", "203.0.113.7"},
		{AddressTruncated, "198.51.100.9", "198.51.100.0/24"}, // through the trusted proxy
		{AddressFull, "2001:db8:1:2::5, 10.0.0.3", "2001:db8:1:2::5"},
		{AddressTruncated, "2001:db8:1:2::5", "2001:db8:1::/48"},
	}
	for _, c := range cases {
		h := newHarness(t, memoryBackend(t), Config{ClientAddress: c.mode, AddressKey: key, TrustedProxies: []netip.Prefix{proxy}})
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("User-Agent", "Mozilla/5.0 "+strings.Repeat("x", 300))
		r.RemoteAddr = "203.0.113.7:5555"
		if c.xff != "" {
			r.RemoteAddr = "10.1.2.3:5555"
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		w := httptest.NewRecorder()
		h.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = sess(t, r).Start(r.Context())
		})).ServeHTTP(w, r)
		id := sessionCookie(t, w, h.m.cfg.cookieName).Value
		md := h.metadata(id)
		if len(md.Device) != maxDevice || !strings.HasPrefix(md.Device, "Mozilla/5.0 ") {
			t.Fatalf("device %q (%d bytes), want the User-Agent cut to %d", md.Device, len(md.Device), maxDevice)
		}
		if md.Address != c.want {
			t.Fatalf("mode %d xff %q: address %q, want %q", c.mode, c.xff, md.Address, c.want)
		}
	}
	// Hashed: stable per address and key, not the address.
	h := newHarness(t, memoryBackend(t), Config{ClientAddress: AddressHashed, AddressKey: key})
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "203.0.113.7:1"
	a1, a2 := h.m.clientAddress(r.RemoteAddr, r.Header), h.m.clientAddress(r.RemoteAddr, r.Header)
	if a1 == "" || a1 != a2 || strings.Contains(a1, "203") {
		t.Fatalf("hashed address %q / %q", a1, a2)
	}
	if _, err := New(memstore.New(memstore.Options{}), Config{ClientAddress: AddressHashed}); err == nil {
		t.Fatal("AddressHashed without a key was accepted")
	}
}

// TestPerUserCap: logins beyond the cap destroy the least recently used
// sessions of the user, never the one logging in; concurrent logins in two
// processes never leave more than the cap.
func TestPerUserCap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		const limit = 3
		cfg := Config{MaxSessionsPerUser: limit}
		h := newHarness(t, b, cfg)
		login := func(m *Manager, user string) string {
			ctx, s := m.NewContext(t.Context(), "")
			if err := s.Start(ctx); err != nil {
				t.Error(err)
				return ""
			}
			if err := s.AddTag(ctx, m.UserTag(user)); err != nil {
				t.Error(err)
			}
			if err := s.Commit(ctx); err != nil {
				t.Error(err)
			}
			id, _ := s.ID(ctx)
			return id
		}
		var ids []string
		for range limit {
			ids = append(ids, login(h.m, "ada"))
			h.clock.Add(time.Minute)
		}
		// Use the first one again: the second is now the least recently used.
		h.do(ids[0], func(w http.ResponseWriter, r *http.Request) { _ = sess(t, r).Touch(r.Context()) })
		h.clock.Add(time.Minute)
		ids = append(ids, login(h.m, "ada"))
		if h.started(ids[1]) || !h.started(ids[0]) || !h.started(ids[2]) || !h.started(ids[3]) {
			t.Fatal("the cap did not evict exactly the least recently used session")
		}
		// Another user is not affected.
		login(h.m, "bob")
		// Two processes log the same user in at once, many times.
		m2, err := New(b.store, Config{MaxSessionsPerUser: limit, Now: h.clock.Now, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := range 12 {
			m := h.m
			if i%2 == 1 {
				m = m2
			}
			wg.Go(func() { login(m, "cyd") })
		}
		wg.Wait()
		n := 0
		for _, err := range h.m.UserSessions(t.Context(), "cyd") {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		if n != limit {
			t.Fatalf("user cyd has %d sessions after 12 concurrent logins in two processes, want the cap %d", n, limit)
		}
	})
}

// TestDestroyOthers: "sign out other devices" keeps the current session.
func TestDestroyOthers(t *testing.T) {
	h := newHarness(t, memoryBackend(t), Config{})
	var ids []string
	for range 3 {
		ids = append(ids, h.startSession(func(ctx context.Context, s *Session) error { return s.AddTag(ctx, h.m.UserTag("ada")) }))
	}
	keep, _ := splitID(ids[1])
	if n, err := h.m.DestroyByTag(t.Context(), h.m.UserTag("ada"), "", keep); err != nil || n != 2 {
		t.Fatalf("DestroyByTag except = %d, %v", n, err)
	}
	if h.started(ids[0]) || !h.started(ids[1]) || h.started(ids[2]) {
		t.Fatal("the wrong sessions went")
	}
}

// quietLogger discards logs.
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestAdminByIDChecksTheSecret: an admin call given a session ID (rather than a
// reference) checks its secret part like a request would: a forged or stale ID
// neither destroys nor shows the session.
func TestAdminByIDChecksTheSecret(t *testing.T) {
	h := newHarness(t, memoryBackend(t), Config{})
	id := h.startSession(func(ctx context.Context, s *Session) error { return s.Put(ctx, "k", "v") })
	ref, _ := splitID(id)
	forged := ref + newVerifier()
	if ok, err := h.m.Destroy(t.Context(), forged, ""); ok || err != nil {
		t.Fatalf("Destroy with a forged ID = %v, %v", ok, err)
	}
	if _, err := h.m.Entries(t.Context(), forged); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Entries with a forged ID = %v", err)
	}
	if !h.started(id) {
		t.Fatal("a forged ID destroyed the session")
	}
	if ok, err := h.m.Destroy(t.Context(), id, ""); !ok || err != nil {
		t.Fatalf("Destroy with the ID = %v, %v", ok, err)
	}
}

// TestReadOnlyRouteExpiresDeadCookie: a read-only route writes nothing to the
// store, but still tells the browser to forget a dead ID.
func TestReadOnlyRouteExpiresDeadCookie(t *testing.T) {
	h := newHarness(t, memoryBackend(t), Config{})
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Cookie", h.m.cfg.cookieName+"="+newID())
	w := httptest.NewRecorder()
	h.m.Middleware(ReadOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = sess(t, r).IsStarted(r.Context())
	}))).ServeHTTP(w, r)
	if !expiresCookie(t, w, h.m.cfg.cookieName) {
		t.Fatalf("a read-only route kept a dead cookie: %v", w.Header())
	}
	h.wantCalls("a dead cookie on a read-only route", cachetest.OpRead)
}
