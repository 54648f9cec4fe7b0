package scope_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/fxsession/fxsession/cache"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestSeedStory is the story of the seed document, end to end, on every backend.
func TestSeedStory(t *testing.T) {
	for _, bc := range stores(true) {
		t.Run(bc.name, func(t *testing.T) {
			e := newEnv(t, bc.open(t))
			browser := e.client()

			// First, the basket is empty and no session exists: a fresh instance per
			// request, no cookie, the store untouched.
			for range 2 {
				r := browser.do("GET", "/basket")
				if r.status != 200 || r.header.Get("Set-Cookie") != "" {
					t.Fatalf("anonymous GET /basket: %d, Set-Cookie %q", r.status, r.header.Get("Set-Cookie"))
				}
				if strings.Contains(r.header.Get("Cache-Control"), "private") {
					t.Fatalf("anonymous response is private: %v", r.header)
				}
				var v basketView
				_ = json.Unmarshal([]byte(r.body), &v)
				if len(v.Items) != 0 || v.Started {
					t.Fatalf("anonymous basket = %+v", v)
				}
			}
			if n := e.entryCount(); n != 0 {
				t.Fatalf("the store holds %d entries before any session", n)
			}

			// Adding an item starts the session (an autostart field changed).
			r := browser.do("POST", "/basket/items?sku=tea&qty=2")
			if r.status != 200 || !strings.Contains(r.header.Get("Set-Cookie"), "fxsession=") {
				t.Fatalf("add: %d, Set-Cookie %q, body %s", r.status, r.header.Get("Set-Cookie"), r.body)
			}
			if !strings.Contains(r.header.Get("Cache-Control"), "private") {
				t.Fatalf("session response not private: %v", r.header)
			}
			first := browser.cookie()

			// Later requests get the items from the session.
			v := browser.basket()
			if !v.Started || len(v.Items) != 1 || v.Items[0].SKU != "tea" || v.Items[0].Qty != 2 || v.Items[0].Name != "Product name of tea" {
				t.Fatalf("basket from the session = %+v", v)
			}
			browser.do("POST", "/basket/items?sku=mug")
			if v := browser.basket(); len(v.Items) != 2 {
				t.Fatalf("basket after a second add = %+v", v)
			}

			// The dependencies are the live singletons.
			var deps map[string]bool
			if err := json.Unmarshal([]byte(browser.do("GET", "/deps").body), &deps); err != nil {
				t.Fatal(err)
			}
			for k, ok := range deps {
				if !ok {
					t.Errorf("dependency %s is not the live instance: %v", k, deps)
				}
			}

			// The stored bytes hold the basket's state and nothing of its
			// dependencies; the unchanged products are references.
			entries := e.stored("scope:ShoppingBasket.")
			if len(entries) != 1 {
				t.Fatalf("%d stored baskets", len(entries))
			}
			raw := entries[0].Value
			for _, leak := range []string{e.catalog.Secret, "Secret", "Logger", "Views", "catalog", "Product name of"} {
				if bytes.Contains(raw, []byte(leak)) {
					t.Errorf("stored basket contains %q: %q", leak, raw)
				}
			}
			if !bytes.Contains(raw, []byte("tea")) || !bytes.Contains(raw, []byte("items")) {
				t.Errorf("stored basket lacks its state: %q", raw)
			}

			// Login renews the ID and keeps the basket; the old ID is dead.
			if r := browser.do("POST", "/login"); r.status != 200 {
				t.Fatalf("login: %d %s", r.status, r.body)
			}
			if browser.cookie() == first || browser.cookie() == "" {
				t.Fatal("login did not renew the session ID")
			}
			if v := browser.basket(); len(v.Items) != 2 || v.Items[0].Qty != 2 {
				t.Fatalf("basket after login = %+v", v)
			}
			thief := e.client()
			req, _ := http.NewRequest("GET", e.srv.URL+"/basket", nil)
			req.AddCookie(&http.Cookie{Name: "fxsession", Value: first})
			resp, err := thief.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var stolen basketView
			_ = json.NewDecoder(resp.Body).Decode(&stolen)
			resp.Body.Close()
			if len(stolen.Items) != 0 || stolen.Started {
				t.Fatalf("the old session ID still reaches the basket: %+v", stolen)
			}
		})
	}
}

func TestFreshInstancePerRequestBeforeStart(t *testing.T) {
	e := newEnv(t, memory(t))
	c := e.client()
	a, b := c.basket(), c.basket()
	if a.Ptr == b.Ptr {
		t.Fatal("two anonymous requests shared one instance")
	}
	// A change of a field that is not autostart does not start a session.
	r := c.do("POST", "/prefs/seen")
	if r.header.Get("Set-Cookie") != "" {
		t.Fatal("a non-autostart change started the session")
	}
	if n := e.entryCount(); n != 0 {
		t.Fatalf("store has %d entries", n)
	}
}

func TestGetSameInstanceAcrossGoroutines(t *testing.T) {
	e := newEnv(t, memory(t))
	ctx, s := e.mgr.NewContext(context.Background(), "")
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	h := handles(t, e)
	var wg sync.WaitGroup
	ptrs := make([]*ShoppingBasket, 32)
	checkouts := make([]*Checkout, 32)
	for i := range ptrs {
		wg.Go(func() {
			b, err := h.basket.Get(ctx)
			if err != nil {
				t.Error(err)
			}
			c, err := h.checkout.Get(ctx)
			if err != nil {
				t.Error(err)
			}
			ptrs[i], checkouts[i] = b, c
		})
	}
	wg.Wait()
	for i := range ptrs {
		if ptrs[i] != ptrs[0] || checkouts[i] != checkouts[0] {
			t.Fatal("Get returned different instances within one request")
		}
		if checkouts[i].basket != ptrs[0] {
			t.Fatal("the session-scoped dependency is not the request's instance")
		}
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentUpdates: 64 requests of one session, each adding one unit
// through Update, end at exactly 64.
func TestConcurrentUpdates(t *testing.T) {
	for _, bc := range stores(true) {
		t.Run(bc.name, func(t *testing.T) {
			e := newEnv(t, bc.open(t))
			c := e.client()
			if r := c.do("POST", "/start"); r.status != 200 {
				t.Fatalf("start: %d", r.status)
			}
			cookie := c.cookie()
			var wg sync.WaitGroup
			errs := make(chan string, 64)
			for range 64 {
				wg.Go(func() {
					req, _ := http.NewRequest("POST", e.srv.URL+"/basket/update?sku=tea", nil)
					req.AddCookie(&http.Cookie{Name: "fxsession", Value: cookie})
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						errs <- err.Error()
						return
					}
					defer resp.Body.Close()
					if resp.StatusCode != 200 {
						var b bytes.Buffer
						_, _ = b.ReadFrom(resp.Body)
						errs <- fmt.Sprintf("%d %s", resp.StatusCode, b.String())
					}
				})
			}
			wg.Wait()
			close(errs)
			for msg := range errs {
				t.Error(msg)
			}
			if t.Failed() {
				t.Logf("logs:\n%s", e.logs.String())
			}
			v := c.basket()
			if len(v.Items) != 1 || v.Items[0].Qty != 64 {
				t.Fatalf("after 64 concurrent updates: %+v", v)
			}
			http.DefaultClient.CloseIdleConnections()
		})
	}
}

var _ = cache.ErrConflict
