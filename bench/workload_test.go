package bench

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/alexedwards/scs/v2"
	"github.com/gorilla/sessions"

	"github.com/fxsession/fxsession/internal/testserver"
	"github.com/fxsession/fxsession/session"
)

// These tests check that every system's handlers do the work the benchmarks
// claim: after k adds the basket still has 10 items, ending with item k, and a
// read changes nothing and sends no cookie. (No timing here.)

// system is one contender, on a session created with 10 items.
type system struct {
	name       string
	cookieName string
	cookie     string
	add        http.Handler
	read       http.Handler
	// items reads the stored basket through the system's own API.
	items func(t *testing.T, cookie string) []Item
}

func checkSystem(t *testing.T, sys system) {
	t.Helper()
	want := Fill(10)
	if got := sys.items(t, sys.cookie); !slices.Equal(got, want) {
		t.Fatalf("%s: initial basket %v, want %v", sys.name, got, want)
	}
	for k := 1; k <= 3; k++ {
		w := NewWriter()
		sys.add.ServeHTTP(w, newRequest(http.MethodPost, sys.cookie))
		if w.Code != http.StatusOK {
			t.Fatalf("%s: add %d: status %d", sys.name, k, w.Code)
		}
		if c := w.SetCookie(gorillaKey); c != "" && sys.name == "gorilla-cookie" {
			sys.cookie = c // the cookie store's data is the cookie itself
		}
		want = append(want[1:], ItemN(k))
	}
	if got := sys.items(t, sys.cookie); !slices.Equal(got, want) {
		t.Fatalf("%s: after 3 adds %v, want %v", sys.name, got, want)
	}
	w := NewWriter()
	sys.read.ServeHTTP(w, newRequest(http.MethodGet, sys.cookie))
	if w.Code != http.StatusOK {
		t.Fatalf("%s: read: status %d", sys.name, w.Code)
	}
	if c := w.SetCookie(sys.cookieName); c != "" {
		t.Errorf("%s: a read sent Set-Cookie %q", sys.name, c)
	}
	if got := sys.items(t, sys.cookie); !slices.Equal(got, want) {
		t.Fatalf("%s: the read changed the basket to %v", sys.name, got)
	}
}

func fxItems(s *fxSystem) func(t *testing.T, cookie string) []Item {
	return func(t *testing.T, cookie string) []Item {
		var out []Item
		h := s.mgr.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			bk, err := s.basket.Get(r.Context())
			if err != nil {
				t.Fatal(err)
			}
			out = slices.Clone(bk.Items)
		}))
		h.ServeHTTP(NewWriter(), newRequest(http.MethodGet, cookie))
		return out
	}
}

func scsItems(sm *scs.SessionManager) func(t *testing.T, cookie string) []Item {
	return func(t *testing.T, cookie string) []Item {
		var out []Item
		h := sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			bk, ok := sm.Get(r.Context(), basketKey).(Basket)
			if !ok {
				t.Fatal("scs: no basket")
			}
			out = bk.Items
		}))
		h.ServeHTTP(NewWriter(), newRequest(http.MethodGet, cookie))
		return out
	}
}

func gorillaItems(st sessions.Store) func(t *testing.T, cookie string) []Item {
	return func(t *testing.T, cookie string) []Item {
		s, err := st.Get(newRequest(http.MethodGet, cookie), gorillaKey)
		if err != nil {
			t.Fatal(err)
		}
		bk, ok := s.Values[basketKey].(Basket)
		if !ok {
			t.Fatal("gorilla: no basket")
		}
		return bk.Items
	}
}

func fxSys(t *testing.T, name string, s *fxSystem, add http.Handler) system {
	return system{name: name, cookieName: session.DefaultCookieName, cookie: s.start(t, 10, nil),
		add: add, read: s.read(), items: fxItems(s)}
}

func scsSys(t *testing.T, sm *scs.SessionManager) system {
	return system{name: "scs", cookieName: sm.Cookie.Name, cookie: scsStart(t, sm, 10),
		add: scsAdd(sm), read: scsRead(sm), items: scsItems(sm)}
}

func gorillaSys(t *testing.T, name string, st sessions.Store) system {
	return system{name: name, cookieName: gorillaKey, cookie: gorillaStart(t, st, 10),
		add: gorillaAdd(st), read: gorillaRead(st), items: gorillaItems(st)}
}

func TestWorkloads(t *testing.T) {
	t.Run("fxsession", func(t *testing.T) {
		s := newFx(t, newMemory(t))
		checkSystem(t, fxSys(t, "fxsession", s, s.add()))
	})
	t.Run("fxsession-get", func(t *testing.T) {
		s := newFx(t, newMemory(t))
		checkSystem(t, fxSys(t, "fxsession-get", s, s.addGet()))
	})
	t.Run("fxsession-20-types", func(t *testing.T) {
		opts, fill := nineteen()
		s := newFx(t, newMemory(t), opts)
		sys := fxSys(t, "fxsession-20-types", s, s.add())
		sys.cookie = s.start(t, 10, fill)
		if n := countObjects(t, s, sys.cookie); n != 20 {
			t.Fatalf("the 20-type session stored %d objects, want 20", n)
		}
		checkSystem(t, sys)
	})
	t.Run("scs", func(t *testing.T) { checkSystem(t, scsSys(t, newScsMemory(t))) })
	t.Run("gorilla", func(t *testing.T) { checkSystem(t, gorillaSys(t, "gorilla", newGorillaFS(t))) })
	t.Run("gorilla-cookie", func(t *testing.T) { checkSystem(t, gorillaSys(t, "gorilla-cookie", newGorillaCookie())) })
	t.Run("redis", func(t *testing.T) {
		srv := testserver.StartRedis(t)
		e := newRedisEnv(t, srv)
		s := newFxRedis(t, e)
		checkSystem(t, fxSys(t, "fxsession-redis", s, s.add()))
		checkSystem(t, scsSys(t, newScsRedis(e)))
	})
}

// countObjects counts the session-scoped objects stored in the record of the
// session whose cookie ("name=value") is given.
func countObjects(t *testing.T, s *fxSystem, cookie string) int {
	t.Helper()
	_, id, _ := strings.Cut(cookie, "=")
	entries, err := s.mgr.Entries(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if e.Kind == "object" {
			n++
		}
	}
	return n
}

// TestFloor checks the floor handlers do the add and the read.
func TestFloor(t *testing.T) {
	for _, h := range []http.Handler{floorAdd(t, 10), floorRead(t, 10)} {
		for range 3 {
			w := NewWriter()
			h.ServeHTTP(w, newRequest(http.MethodPost, ""))
			if w.Code != http.StatusOK {
				t.Fatalf("status %d", w.Code)
			}
		}
	}
}

func TestRotate(t *testing.T) {
	b := &Basket{Items: Fill(3)}
	b.Rotate(7)
	if want := []Item{ItemN(1), ItemN(2), ItemN(7)}; !slices.Equal(b.Items, want) {
		t.Fatalf("Rotate: %v, want %v", b.Items, want)
	}
	if got, want := b.Total(), int64(ItemN(1).Qty)*ItemN(1).Price+int64(ItemN(2).Qty)*ItemN(2).Price+int64(ItemN(7).Qty)*ItemN(7).Price; got != want {
		t.Fatalf("Total %d, want %d", got, want)
	}
}
