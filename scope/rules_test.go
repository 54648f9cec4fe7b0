package scope_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/scope"
	"github.com/fxsession/fxsession/session"
)

func memory(t *testing.T) cache.Store { return newMemory(t) }

func TestAutostart(t *testing.T) {
	e := newEnv(t, memory(t))

	t.Run("field changed inside Update", func(t *testing.T) {
		c := e.client()
		r := c.do("POST", "/basket/update?sku=pot")
		if r.status != 200 || !strings.Contains(r.header.Get("Set-Cookie"), "fxsession=") {
			t.Fatalf("Update on a new visitor: %d %q %s", r.status, r.header.Get("Set-Cookie"), r.body)
		}
		if v := c.basket(); len(v.Items) != 1 || v.Items[0].SKU != "pot" {
			t.Fatalf("basket = %+v", v)
		}
	})

	t.Run("method marked with StartSession", func(t *testing.T) {
		c := e.client()
		r := c.do("POST", "/prefs/theme?theme=dark")
		if !strings.Contains(r.header.Get("Set-Cookie"), "fxsession=") {
			t.Fatalf("StartSession did not start the session: %v", r.header)
		}
		var p Prefs
		_ = json.Unmarshal([]byte(c.do("GET", "/prefs").body), &p)
		if p.Theme != "dark" {
			t.Fatalf("prefs = %+v", p)
		}
	})

	t.Run("explicit Start writes no untouched object", func(t *testing.T) {
		c := e.client()
		if r := c.do("POST", "/start"); !strings.Contains(r.header.Get("Set-Cookie"), "fxsession=") {
			t.Fatal("Start sent no cookie")
		}
		before := len(e.stored("scope:"))
		if v := c.basket(); !v.Started || len(v.Items) != 0 {
			t.Fatalf("basket = %+v", v)
		}
		if after := len(e.stored("scope:")); after != before {
			t.Fatalf("an untouched basket was written (%d -> %d entries)", before, after)
		}
	})
}

func TestOnlyWhatChangedIsWritten(t *testing.T) {
	cb := newCounting(memory(t))
	e := newEnv(t, cb)
	c := e.client()
	c.do("POST", "/basket/items?sku=tea")
	c.do("POST", "/prefs/theme?theme=dark")
	if w := cb.writes.Load(); w != 2 {
		t.Fatalf("%d scope writes for two changes, want 2", w)
	}
	cb.writes.Store(0)
	cb.reads.Store(0)
	for range 3 {
		c.basket()
	}
	if w := cb.writes.Load(); w != 0 {
		t.Fatalf("requests that changed nothing wrote %d scope entries", w)
	}
	// Objects are loaded only when asked for: three basket reads, no prefs read.
	if r := cb.reads.Load(); r != 3 {
		t.Fatalf("%d scope reads for three basket requests, want 3 (the prefs are never asked for)", r)
	}
	// Requests that do not use the session do not touch the store at all.
	cb.reads.Store(0)
	c.do("GET", "/nothing")
	if cb.reads.Load() != 0 || cb.writes.Load() != 0 {
		t.Fatal("a request that did not use the session touched scope entries")
	}
	c.do("POST", "/basket/items?sku=tea")
	if w := cb.writes.Load(); w != 1 {
		t.Fatalf("one change wrote %d entries", w)
	}
}

// OldPrefs and NewPrefsV2 are the same stored object before and after a deploy
// that changed a field's type incompatibly.
type OldPrefs struct {
	Theme string `msgpack:"theme"`
	Font  int    `msgpack:"font"`
}

type PrefsV2 struct {
	Theme struct{ Name, Accent string } `msgpack:"theme"`
	Font  int                           `msgpack:"font"`
}

func TestChangedTypeAfterDeploy(t *testing.T) {
	backend := memory(t)
	e1 := newEnv(t, backend, scope.Provide(func() *OldPrefs { return &OldPrefs{Font: 12} }, scope.Key("prefs")))
	c := e1.client()
	c.do("POST", "/basket/items?sku=tea")
	ctx, s := e1.mgr.NewContext(context.Background(), c.cookie())
	if err := updateOld(ctx, e1, s); err != nil {
		t.Fatal(err)
	}

	// The new deploy: the same key, an incompatible type.
	e2 := newEnv(t, backend, scope.Provide(func() *PrefsV2 {
		p := &PrefsV2{Font: 10}
		p.Theme.Name = "fresh"
		return p
	}, scope.Key("prefs")))
	var v2 scope.Handle[*PrefsV2]
	populate(t, e2, &v2)
	ctx2, s2 := e2.mgr.NewContext(context.Background(), c.cookie())
	p, err := v2.Get(ctx2)
	if err != nil {
		t.Fatalf("Get after an incompatible change: %v", err)
	}
	if p.Theme.Name != "fresh" || p.Font != 10 {
		t.Fatalf("want a fresh instance, got %+v", p)
	}
	if !strings.Contains(e2.logs.String(), "no longer fits") || !strings.Contains(e2.logs.String(), "PrefsV2") ||
		!strings.Contains(e2.logs.String(), "session="+s2.Ref()) {
		t.Fatalf("no warning naming the type and session: %s", e2.logs.String())
	}
	// The session's other objects are unaffected.
	b, err := handles(t, e2).basket.Get(ctx2)
	if err != nil || len(b.Items) != 1 {
		t.Fatalf("sibling basket: %v %+v", err, b)
	}
	// The fresh instance replaces the broken entry at the next commit.
	if err := s2.Commit(ctx2); err != nil {
		t.Fatal(err)
	}
	ctx3, _ := e2.mgr.NewContext(context.Background(), c.cookie())
	if _, err := v2.Get(ctx3); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(e2.logs.String(), "no longer fits"); n != 1 {
		t.Fatalf("warned %d times; the entry was not replaced", n)
	}
}

func updateOld(ctx context.Context, e *env, s *session.Session) error {
	var h scope.Handle[*OldPrefs]
	populate(e.t, e, &h)
	if err := h.Update(ctx, func(p *OldPrefs) error { p.Theme = "dark"; return nil }); err != nil {
		return err
	}
	return s.Commit(ctx)
}

// populate fills a handle from env's app: handles are parameter objects that fx
// fills anywhere, so a second tiny app sharing the registrations is not needed;
// the registrations of e's app are reachable through the handle it populated.
func populate[T any](t testing.TB, e *env, h *scope.Handle[T]) {
	t.Helper()
	h.Registrations = e.h.basket.Registrations
}

func TestMissingEntityLoadsAsAbsent(t *testing.T) {
	e := newEnv(t, memory(t))
	c := e.client()
	c.do("POST", "/basket/items?sku=tea")
	c.do("POST", "/basket/items?sku=mug")
	e.catalog.Delete("tea")
	v := c.basket()
	if len(v.Items) != 2 || v.Items[0].SKU != "" || v.Items[1].SKU != "mug" {
		t.Fatalf("basket after the product vanished = %+v", v)
	}
	if !strings.Contains(e.logs.String(), "no longer resolves") || !strings.Contains(e.logs.String(), "id=tea") {
		t.Fatalf("no warning: %s", e.logs.String())
	}
}

func TestNoSessionInContext(t *testing.T) {
	e := newEnv(t, memory(t))
	if _, err := e.h.basket.Get(context.Background()); !errors.Is(err, scope.ErrNoSession) {
		t.Fatalf("Get without a session: %v", err)
	}
	var unregistered scope.Handle[*OldPrefs]
	populate(t, e, &unregistered)
	_, err := unregistered.Get(context.Background())
	if !errors.Is(err, scope.ErrNotRegistered) || !strings.Contains(err.Error(), "*scope_test.OldPrefs") || !strings.Contains(err.Error(), "scope.Provide") {
		t.Fatalf("Get of an unregistered type: %v", err)
	}
	var empty scope.Handle[*Prefs]
	if _, err := empty.Get(context.Background()); !errors.Is(err, scope.ErrNotRegistered) {
		t.Fatalf("zero Handle: %v", err)
	}
}

type Counter struct {
	N int `msgpack:"n"`
}

func TestUpdateGivesUpWithErrConflict(t *testing.T) {
	cb := wrapCounting(memory(t), true)
	e := newEnv(t, cb, scope.Provide(func() *Counter { return &Counter{} }, scope.Retries(3)))
	var h scope.Handle[*Counter]
	populate(t, e, &h)
	ctx, s := e.mgr.NewContext(context.Background(), "")
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	calls := 0
	err := h.Update(ctx, func(c *Counter) error { calls++; c.N++; return nil })
	if !errors.Is(err, scope.ErrConflict) || !errors.Is(err, cache.ErrConflict) {
		t.Fatalf("err = %v", err)
	}
	if calls != 3 || cb.writes.Load() != 3 {
		t.Fatalf("fn ran %d times, %d CAS attempts; want 3 each", calls, cb.writes.Load())
	}
	// An error from fn is returned as it is, and nothing is written.
	boom := errors.New("boom")
	cb.writes.Store(0)
	if err := h.Update(ctx, func(*Counter) error { return boom }); err != boom {
		t.Fatalf("fn error: %v", err)
	}
	if cb.writes.Load() != 0 {
		t.Fatal("a failed fn wrote")
	}
}

// TestUpdatesAcrossProcesses: two apps (two processes' worth of registries and
// managers) on one store update one object of one session concurrently; the
// version check and the retries lose nothing.
func TestUpdatesAcrossProcesses(t *testing.T) {
	for _, bc := range stores(true) {
		t.Run(bc.name, func(t *testing.T) {
			backend := bc.open(t)
			e1 := newEnv(t, backend, scope.Provide(func() *Counter { return &Counter{} }))
			e2 := newEnv(t, backend, scope.Provide(func() *Counter { return &Counter{} }))
			var h1, h2 scope.Handle[*Counter]
			populate(t, e1, &h1)
			populate(t, e2, &h2)
			ctx, s := e1.mgr.NewContext(context.Background(), "")
			if err := s.Start(ctx); err != nil {
				t.Fatal(err)
			}
			if err := s.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			id, _ := s.ID(ctx)
			var wg sync.WaitGroup
			for i := range 32 {
				for _, pair := range []struct {
					e *env
					h scope.Handle[*Counter]
				}{{e1, h1}, {e2, h2}} {
					wg.Go(func() {
						ctx, _ := pair.e.mgr.NewContext(context.Background(), id)
						if err := pair.h.Update(ctx, func(c *Counter) error { c.N++; return nil }); err != nil {
							t.Errorf("update %d: %v", i, err)
						}
					})
				}
			}
			wg.Wait()
			ctx, _ = e2.mgr.NewContext(context.Background(), id)
			c, err := h2.Get(ctx)
			if err != nil || c.N != 64 {
				t.Fatalf("after 64 updates from two processes: %+v %v", c, err)
			}
		})
	}
}

func TestReadOnlyRoute(t *testing.T) {
	e := newEnv(t, memory(t))
	c := e.client()
	c.do("POST", "/basket/items?sku=tea")
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		b, err := e.h.basket.Get(r.Context())
		if err != nil {
			fail(w, err)
			return
		}
		b.Items = nil // ignored: nothing is written back on a read-only route
		err = e.h.basket.Update(r.Context(), func(b *ShoppingBasket) error { b.Items = nil; return nil })
		if !errors.Is(err, session.ErrReadOnly) {
			fail(w, errors.New("Update on a read-only route: "+errString(err)))
			return
		}
		w.Write([]byte("ok"))
	})
	ro := e.mgr.Middleware(session.ReadOnly(mux))
	req, _ := http.NewRequest("GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: "fxsession", Value: c.cookie()})
	rec := httptest.NewRecorder()
	ro.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("read-only route: %d %s", rec.Code, rec.Body)
	}
	if v := c.basket(); len(v.Items) != 1 {
		t.Fatalf("a read-only route changed the basket: %+v", v)
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// TestStoredFormIsStable: the stored basket is a msgpack map of its state only.
func TestStoredForm(t *testing.T) {
	e := newEnv(t, memory(t))
	c := e.client()
	c.do("POST", "/basket/items?sku=tea&qty=3")
	var m map[string]any
	if err := msgpack.Unmarshal(e.stored("scope:ShoppingBasket.")[0].Value, &m); err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 {
		t.Fatalf("stored keys = %v, want only items", m)
	}
	item := m["items"].([]any)[0].(map[string]any)
	if ref := item["product"].([]any); len(ref) != 2 || ref[1] != "tea" {
		t.Fatalf("product stored as %v, want a reference [0, \"tea\"]", item["product"])
	}
}

func TestUpdateBeforeStartWithoutAutostart(t *testing.T) {
	e := newEnv(t, memory(t), scope.Provide(func() *Counter { return &Counter{} }))
	var h scope.Handle[*Counter]
	populate(t, e, &h)
	ctx, s := e.mgr.NewContext(context.Background(), "")
	if err := h.Update(ctx, func(c *Counter) error { c.N++; return nil }); err != nil {
		t.Fatal(err)
	}
	c, _ := h.Get(ctx)
	if c.N != 1 {
		t.Fatalf("the request's instance did not get the update: %+v", c)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if started, _ := s.IsStarted(ctx); started {
		t.Fatal("an Update without autostart started the session")
	}
	if n := e.entryCount(); n != 0 {
		t.Fatalf("store has %d entries", n)
	}
	// Issue 11: a caller that wants to know is told with MustStore; the
	// request's instance still has the change.
	ctx, _ = e.mgr.NewContext(context.Background(), "")
	err := h.Update(ctx, func(c *Counter) error { c.N = 7; return nil }, scope.MustStore())
	if !errors.Is(err, scope.ErrNotStored) {
		t.Fatalf("Update with MustStore and no session = %v, want ErrNotStored", err)
	}
	if c, _ := h.Get(ctx); c.N != 7 {
		t.Fatalf("instance after MustStore = %+v", c)
	}
	// A session that exists: MustStore changes nothing.
	ctx, s = e.mgr.NewContext(context.Background(), "")
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Update(ctx, func(c *Counter) error { c.N = 8; return nil }, scope.MustStore()); err != nil {
		t.Fatalf("Update with MustStore in a session: %v", err)
	}
}

// TestUpdateWithoutSessionWarnsInDevelopment: in development mode a change no
// session holds is logged, once per type, when the request ends without one.
func TestUpdateWithoutSessionWarnsInDevelopment(t *testing.T) {
	for _, dev := range []bool{false, true} {
		e := newEnv(t, memory(t), scope.Provide(func() *Counter { return &Counter{} }),
			fx.Decorate(func(c session.Config) session.Config { c.Development = dev; return c }))
		var h scope.Handle[*Counter]
		populate(t, e, &h)
		for range 3 {
			ctx, s := e.mgr.NewContext(context.Background(), "")
			if err := h.Update(ctx, func(c *Counter) error { c.N++; return nil }); err != nil {
				t.Fatal(err)
			}
			if err := s.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
		got := strings.Count(e.logs.String(), "the change ends with the request")
		if want := map[bool]int{false: 0, true: 1}[dev]; got != want {
			t.Fatalf("development=%v: %d warnings, want %d:\n%s", dev, got, want, e.logs.String())
		}
	}
}

// TestAutostartWritesOnlyChangedObjects: when an autostart field starts the
// session, the request's other objects are written only if they differ from a
// fresh instance (issue 11: an untouched Prefs used to be written too).
func TestAutostartWritesOnlyChangedObjects(t *testing.T) {
	e := newEnv(t, memory(t))
	ctx, s := e.mgr.NewContext(context.Background(), "")
	if _, err := e.h.prefs.Get(ctx); err != nil { // built, never changed
		t.Fatal(err)
	}
	b, err := e.h.basket.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Add(ctx, "tea", 1); err != nil { // autostart
		t.Fatal(err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if started, _ := s.IsStarted(ctx); !started {
		t.Fatal("autostart did not start the session")
	}
	if n := len(e.stored("scope:ShoppingBasket.")); n != 1 {
		t.Fatalf("%d baskets stored, want 1", n)
	}
	if got := e.stored("scope:Prefs."); len(got) != 0 {
		t.Fatalf("an untouched Prefs was written: %q", got[0].Value)
	}
	// A Prefs changed before the start is written.
	ctx, s = e.mgr.NewContext(context.Background(), "")
	p, _ := e.h.prefs.Get(ctx)
	p.Theme = "dark"
	b, _ = e.h.basket.Get(ctx)
	if err := b.Add(ctx, "tea", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.stored("scope:Prefs."); len(got) != 1 {
		t.Fatalf("%d changed Prefs stored, want 1", len(got))
	}
}

func TestInjectedFieldsAreNotStored(t *testing.T) {
	e := newEnv(t, memory(t))
	ctx, s := e.mgr.NewContext(context.Background(), "")
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	p, _ := e.h.prefs.Get(ctx)
	p.Theme = "PREFS-THEME-MARKER"
	c, err := e.h.checkout.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Prefs != p {
		t.Fatal("inject-tagged session-scoped field is not the request's instance")
	}
	c.Step = 3
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	entries := e.stored("scope:Checkout.")
	if len(entries) != 1 {
		t.Fatalf("%d stored checkouts", len(entries))
	}
	var m map[string]any
	if err := msgpack.Unmarshal(entries[0].Value, &m); err != nil || len(m) != 1 || m["step"] != int8(3) {
		t.Fatalf("stored checkout = %v (%v), want only its step", m, err)
	}
	id, _ := s.ID(ctx)
	ctx2, _ := e.mgr.NewContext(context.Background(), id)
	c2, err := e.h.checkout.Get(ctx2)
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := e.h.prefs.Get(ctx2)
	b2, _ := e.h.basket.Get(ctx2)
	if c2.Step != 3 || c2.Prefs != p2 || p2.Theme != "PREFS-THEME-MARKER" || c2.basket != b2 || c2.cat != e.catalog {
		t.Fatalf("loaded checkout %+v", c2)
	}
}

func TestGetOfResolvedInstanceDoesNotAllocate(t *testing.T) {
	e := newEnv(t, memory(t))
	ctx, _ := e.mgr.NewContext(context.Background(), "")
	if _, err := e.h.basket.Get(ctx); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = e.h.basket.Get(ctx) }); n != 0 {
		t.Fatalf("Get of a resolved instance allocates %v times", n)
	}
}

// TestGetAfterUpdateIsCompared: an instance installed by Update is not encoded
// again at commit until Get hands it out; a change made through Get after an
// Update (and after a commit) is still written.
func TestGetAfterUpdateIsCompared(t *testing.T) {
	cb := newCounting(memory(t))
	e := newEnv(t, cb, scope.Provide(func() *Counter { return &Counter{} }))
	var h scope.Handle[*Counter]
	populate(t, e, &h)
	ctx, s := e.mgr.NewContext(context.Background(), "")
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	id, err := s.ID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	load := func() int {
		t.Helper()
		ctx, _ := e.mgr.NewContext(context.Background(), id)
		c, err := h.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return c.N
	}
	ctx, s = e.mgr.NewContext(context.Background(), id)
	if err := h.Update(ctx, func(c *Counter) error { c.N = 1; return nil }); err != nil {
		t.Fatal(err)
	}
	before := cb.writes.Load()
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if w := cb.writes.Load() - before; w != 0 {
		t.Fatalf("a commit after an Update wrote %d times", w)
	}
	c, err := h.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.N = 2
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n := load(); n != 2 {
		t.Fatalf("stored N = %d after a change through Get following Update; want 2", n)
	}
	// The instance stays handed out: a later change is written too.
	c.N = 3
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n := load(); n != 3 {
		t.Fatalf("stored N = %d after a second change; want 3", n)
	}
	// Update again, then Get: compared again.
	if err := h.Update(ctx, func(c *Counter) error { c.N = 4; return nil }); err != nil {
		t.Fatal(err)
	}
	c, _ = h.Get(ctx)
	c.N = 5
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n := load(); n != 5 {
		t.Fatalf("stored N = %d; want 5", n)
	}
}

// TestUpdateAfterGetReusesTheRead: an Update after a Get in the same request
// starts from the entry Get read (no second read); when another request wrote
// in between, the version check catches it and nothing is lost.
func TestUpdateAfterGetReusesTheRead(t *testing.T) {
	cb := newCounting(memory(t))
	e := newEnv(t, cb, scope.Provide(func() *Counter { return &Counter{} }))
	var h scope.Handle[*Counter]
	populate(t, e, &h)
	ctx, s := e.mgr.NewContext(context.Background(), "")
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	id, err := s.ID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Update(ctx, func(c *Counter) error { c.N = 1; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	load := func() int {
		t.Helper()
		ctx, _ := e.mgr.NewContext(context.Background(), id)
		c, err := h.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return c.N
	}

	// Get, then Update twice: one read in all.
	ctx, s = e.mgr.NewContext(context.Background(), id)
	if _, err := h.Get(ctx); err != nil {
		t.Fatal(err)
	}
	reads := cb.reads.Load()
	for range 2 {
		if err := h.Update(ctx, func(c *Counter) error { c.N++; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if r := cb.reads.Load() - reads; r != 0 {
		t.Errorf("Updates after a Get read %d more times", r)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n := load(); n != 3 {
		t.Fatalf("N = %d, want 3", n)
	}

	// Another request writes between this request's Get and its Update.
	ctx, s = e.mgr.NewContext(context.Background(), id)
	if c, err := h.Get(ctx); err != nil || c.N != 3 {
		t.Fatalf("Get: %+v %v", c, err)
	}
	ctx2, s2 := e.mgr.NewContext(context.Background(), id)
	if err := h.Update(ctx2, func(c *Counter) error { c.N += 10; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s2.Commit(ctx2); err != nil {
		t.Fatal(err)
	}
	if err := h.Update(ctx, func(c *Counter) error { c.N++; return nil }); err != nil {
		t.Fatal(err)
	}
	if c, _ := h.Get(ctx); c.N != 14 {
		t.Fatalf("the request's instance after Update: N = %d, want 14", c.N)
	}
	// An Update that changes nothing against a stale copy still sees the
	// stored state: N is 14, setting 3 must write.
	ctx3, _ := e.mgr.NewContext(context.Background(), id)
	_, _ = h.Get(ctx3) // N = 14 seen
	if err := h.Update(ctx2, func(c *Counter) error { c.N = 3; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := h.Update(ctx3, func(c *Counter) error { c.N = 14; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n := load(); n != 14 {
		t.Fatalf("N = %d, want 14", n)
	}
}
