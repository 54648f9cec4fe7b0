package session_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/session"
)

// fakeClock is a settable clock for the examples: the manager and the memory
// store share it.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// start starts a session outside HTTP, applies fn and commits; it returns the ID.
func start(m *session.Manager, fn func(ctx context.Context, s *session.Session)) string {
	ctx, s := m.NewContext(context.Background(), "")
	_ = s.Start(ctx)
	if fn != nil {
		fn(ctx, s)
	}
	_ = s.Commit(ctx)
	id, _ := s.ID(ctx)
	return id
}

// Lifecycle events reach the listeners registered before the manager serves.
func ExampleManager_Listen() {
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	store := memstore.New(memstore.Options{Now: clock.Now})
	defer store.Close()
	m, _ := session.New(store, session.Config{Now: clock.Now})
	_ = m.Listen(func(_ context.Context, e session.Event) {
		fmt.Println(e.Kind, e.Reason, e.Metadata.Tags)
	})
	start(m, func(ctx context.Context, s *session.Session) { _ = s.AddTag(ctx, "user:ada") })
	clock.Add(2 * time.Hour) // past the inactivity timeout
	_, _ = m.CollectGarbage(context.Background())
	_ = m.Close() // delivers what is queued
	// Output:
	// started  [user:ada]
	// expired  [user:ada]
}

// A user's sessions, as an account's "Sessions" page lists them, and "sign
// out other devices".
func ExampleManager_UserSessions() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	m, _ := session.New(store, session.Config{})
	login := func() string {
		return start(m, func(ctx context.Context, s *session.Session) { _ = s.AddTag(ctx, m.UserTag("ada")) })
	}
	login()
	login()
	this := login()
	count := func() (n int) {
		for _, err := range m.UserSessions(context.Background(), "ada") {
			if err == nil {
				n++
			}
		}
		return n
	}
	fmt.Println("sessions:", count())
	current, _ := m.Session(context.Background(), this)
	n, _ := m.DestroyByTag(context.Background(), m.UserTag("ada"), "", current.Ref())
	fmt.Println("signed out:", n, "left:", count())
	// Output:
	// sessions: 3
	// signed out: 2 left: 1
}

// A per-user cap: a login beyond it ends the least recently used session.
func ExampleConfig_maxSessionsPerUser() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	m, _ := session.New(store, session.Config{MaxSessionsPerUser: 2})
	for range 3 {
		start(m, func(ctx context.Context, s *session.Session) { _ = s.AddTag(ctx, m.UserTag("ada")) })
	}
	n := 0
	for _, err := range m.UserSessions(context.Background(), "ada") {
		if err == nil {
			n++
		}
	}
	fmt.Println(n)
	// Output: 2
}

// Remember me: the session gets its own lifetime and a persistent cookie.
func ExampleSession_SetLifetime() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	m, _ := session.New(store, session.Config{})
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		_ = s.Start(r.Context())
		_ = s.SetLifetime(r.Context(), 30*24*time.Hour)
	}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/login", nil))
	fmt.Println("cookie Max-Age:", w.Result().Cookies()[0].MaxAge)
	// Output: cookie Max-Age: 2592000
}

// ID rotation: the first request after RotateAfter gets a new ID; the old one
// works for RotationGrace more, for requests already in flight.
func ExampleConfig_rotateAfter() {
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	store := memstore.New(memstore.Options{Now: clock.Now})
	defer store.Close()
	m, _ := session.New(store, session.Config{RotateAfter: 15 * time.Minute, RotationGrace: time.Minute, Now: clock.Now})
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		started, _ := s.IsStarted(r.Context())
		if !started {
			_ = s.Start(r.Context())
		}
		fmt.Fprint(w, started)
	}))
	visit := func(cookie string) (bool, string) {
		r := httptest.NewRequest("GET", "/", nil)
		if cookie != "" {
			r.Header.Set("Cookie", "fxsession="+cookie)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var sent string
		if cs := w.Result().Cookies(); len(cs) > 0 {
			sent = cs[0].Value
		}
		return w.Body.String() == "true", sent
	}
	_, first := visit("")
	clock.Add(20 * time.Minute)
	_, rotated := visit(first)
	inFlight, _ := visit(first) // within the grace period
	clock.Add(2 * time.Minute)
	afterGrace, _ := visit(first)
	fmt.Println(rotated != first, inFlight, afterGrace)
	// Output: true true false
}

// The client's address, recorded truncated beside its device.
func ExampleConfig_clientAddress() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	m, _ := session.New(store, session.Config{ClientAddress: session.AddressTruncated})
	var ref string
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		_ = s.Start(r.Context())
		ref = s.Ref()
	}))
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "203.0.113.7:51000"
	r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)")
	h.ServeHTTP(httptest.NewRecorder(), r)
	s, _ := m.Session(context.Background(), ref)
	md, _ := s.Metadata(context.Background())
	fmt.Println(md.Device, md.Address)
	// Output: Mozilla/5.0 (X11; Linux x86_64) 203.0.113.0/24
}

// A long-lived request sees, after Sync, what other requests committed.
func ExampleSession_Sync() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	m, _ := session.New(store, session.Config{})
	id := start(m, func(ctx context.Context, s *session.Session) { _ = s.Put(ctx, "n", 1) })

	ctx, s := m.NewContext(context.Background(), id) // the long-lived request
	var n int
	_ = s.Get(ctx, "n", &n)
	fmt.Println("before:", n)

	ctx2, other := m.NewContext(context.Background(), id) // another request
	_ = other.Put(ctx2, "n", 2)
	_ = other.Commit(ctx2)

	_ = s.Get(ctx, "n", &n)
	fmt.Println("still:", n)
	_ = s.Sync(ctx)
	_ = s.Get(ctx, "n", &n)
	fmt.Println("after Sync:", n)
	// Output:
	// before: 1
	// still: 1
	// after Sync: 2
}

// A transport other than net/http (package grpcsession does this per call):
// begin with the ID the request carried, commit before the response's headers,
// send back the new ID, end.
func ExampleManager_Begin() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	m, _ := session.New(store, session.Config{})
	call := func(id string) string {
		ctx, x := m.Begin(context.Background(), id, session.Peer{Method: "/shop.Basket/Add", UserAgent: "grpc-go"})
		defer x.End()
		s, _ := session.FromContext(ctx)
		var n int
		_ = s.Get(ctx, "n", &n)
		_ = s.Start(ctx)
		_ = s.Put(ctx, "n", n+1)
		newID, _, err := x.Commit()
		if err != nil {
			return "unavailable"
		}
		fmt.Println("n =", n+1, "new ID sent:", newID != "")
		if newID != "" {
			return newID
		}
		return id
	}
	id := call("")
	call(id)
	// Output:
	// n = 1 new ID sent: true
	// n = 2 new ID sent: false
}
