package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fxsession/fxsession/internal/testserver"
)

// TestTwoProcesses runs two "demo serve" processes on one shared store, as two
// app servers behind a load balancer, on every store two processes can share (a
// real redis-server, one session folder, one SQLite file, a real Postgres): a
// basket is one basket whichever process serves the request, and
// logout-everywhere through one process ends the user's sessions for both.
func TestTwoProcesses(t *testing.T) {
	shared := map[string]func(t *testing.T, dir string) []string{
		"redis": func(t *testing.T, dir string) []string {
			return []string{"-store", "redis", "-redis-url", testserver.StartRedis(t).URL(), "-namespace", "two-proc"}
		},
		"file": func(t *testing.T, dir string) []string {
			return []string{"-store", "file", "-dir", filepath.Join(dir, "sessions")}
		},
		"sqlite": func(t *testing.T, dir string) []string {
			return []string{"-store", "sqlite", "-dsn", filepath.Join(dir, "sessions.db")}
		},
		"postgres": func(t *testing.T, dir string) []string {
			return []string{"-store", "postgres", "-dsn", testserver.StartPostgres(t).DSN()}
		},
	}
	for _, store := range []string{"redis", "file", "sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			dir := t.TempDir()
			common := shared[store](t, dir)
			a := startDemo(t, "demo A", append(common, "-catalog", filepath.Join(dir, "a.db"))...)
			b := startDemo(t, "demo B", append(common, "-catalog", filepath.Join(dir, "b.db"))...)
			twoProcesses(t, a, b)
		})
	}
}

// twoProcesses is TestTwoProcesses on two processes a and b sharing a store.
func twoProcesses(t *testing.T, a, b *demoProc) {
	// One basket, two processes, one cookie.
	v := newVisitor(t, a.URL())
	v.must(200, "POST", "/api/basket/items", `{"sku":"tea-sencha","qty":2}`)
	cookie := v.cookie()
	if cookie == "" {
		t.Fatal("adding on A set no cookie")
	}
	vb := v.on(b.URL())
	if got := vb.basket(); got != "tea-sencha×2" {
		t.Fatalf("B reads the basket added on A as %q", got)
	}
	vb.must(200, "POST", "/api/basket/items", `{"sku":"coffee-kenya","qty":1}`)
	vb.must(303, "POST", "/basket/items", "sku=tea-sencha&qty=1")
	if got := v.basket(); got != "tea-sencha×3,coffee-kenya×1" {
		t.Fatalf("A reads the basket changed on B as %q", got)
	}
	if page := v.must(200, "GET", "/basket", ""); !strings.Contains(page, "Added 1 × Sencha") {
		t.Error("the flash message added on B is not shown on A")
	}
	if v.cookie() != cookie || vb.cookie() != cookie {
		t.Error("the session cookie changed between the processes")
	}

	// Alice signs in on A from two clients; Bob is signed in too.
	laptop := newVisitor(t, a.URL())
	laptop.must(200, "POST", "/api/basket/items", `{"sku":"tea-assam","qty":1}`)
	laptop.must(200, "POST", "/api/login", `{"user":"alice"}`)
	phone := newVisitor(t, a.URL())
	phone.must(200, "POST", "/api/login", `{"user":"alice"}`)
	bob := newVisitor(t, a.URL())
	bob.must(200, "POST", "/api/basket/items", `{"sku":"tea-matcha","qty":1}`)
	bob.must(200, "POST", "/api/login", `{"user":"bob"}`)
	if page := laptop.on(b.URL()).must(200, "GET", "/", ""); !strings.Contains(page, `<strong id="user">alice</strong>`) {
		t.Fatal("B does not show alice signed in with the cookie A issued")
	}

	// Logout everywhere through B ends both of alice's sessions.
	body := phone.on(b.URL()).must(200, "POST", "/api/logout-everywhere", "")
	var ended struct {
		N int `json:"sessions_ended"`
	}
	if err := json.Unmarshal([]byte(body), &ended); err != nil || ended.N != 2 {
		t.Fatalf("logout-everywhere on B = %s (%v), want 2 sessions ended", body, err)
	}
	if phone.cookie() != "" {
		t.Error("logout-everywhere left the cookie of the client that asked")
	}
	for _, p := range []*demoProc{a, b} {
		l := laptop.on(p.URL())
		if got := l.basket(); got != "" {
			t.Errorf("alice's laptop session survived on %s: %q", p.name, got)
		}
		if page := l.must(200, "GET", "/", ""); strings.Contains(page, `id="user"`) {
			t.Errorf("%s still shows alice signed in", p.name)
		}
		if got := bob.on(p.URL()).basket(); got != "tea-matcha×1" {
			t.Errorf("bob's session on %s after alice's logout-everywhere: %q", p.name, got)
		}
		if got := v.on(p.URL()).basket(); got != "tea-sencha×3,coffee-kenya×1" {
			t.Errorf("the anonymous basket on %s after alice's logout-everywhere: %q", p.name, got)
		}
	}

	// Both shut down gracefully on SIGTERM.
	a.stop()
	b.stop()
}
