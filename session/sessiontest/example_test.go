package sessiontest_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/session"
	"github.com/fxsession/fxsession/session/sessiontest"
)

func counter(w http.ResponseWriter, r *http.Request) {
	s, _ := session.FromContext(r.Context())
	if r.Method == http.MethodPost {
		_ = s.Start(r.Context())
		var n int
		_ = s.Get(r.Context(), "n", &n)
		_ = s.Put(r.Context(), "n", n+1)
	}
	if r.Method == http.MethodDelete {
		_ = s.Destroy(r.Context(), "test")
	}
	var n int
	_ = s.Get(r.Context(), "n", &n)
	fmt.Fprint(w, n)
}

func ExampleClient() {
	store := memstore.New(memstore.Options{}) // in a test: sessiontest.NewManager(t, cfg)
	defer store.Close()
	m, _ := session.New(store, session.Config{})
	c := sessiontest.NewClient(m.Middleware(http.HandlerFunc(counter)))
	c.Request("POST", "/", "")
	c.Request("POST", "/", "")
	fmt.Println(c.Get("/").Body.String(), c.Cookie("fxsession") != "")
	c.Request("DELETE", "/", "")
	fmt.Println(c.Get("/").Body.String(), c.Cookie("fxsession") != "")
	// Output:
	// 2 true
	// 0 false
}

func TestClientForgetsAndReplays(t *testing.T) {
	m := sessiontest.NewManager(t, session.Config{})
	c := sessiontest.NewClient(m.Middleware(http.HandlerFunc(counter)))
	c.Request("POST", "/", "")
	old := c.Cookie("fxsession")
	c.SetCookie("fxsession", "")
	if got := c.Get("/").Body.String(); got != "0" {
		t.Errorf("without the cookie: %s", got)
	}
	c.SetCookie("fxsession", old)
	if got := c.Get("/").Body.String(); got != "1" {
		t.Errorf("with the cookie again: %s", got)
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestNewManagerClock: a manager from NewManager with Config.Now runs its store
// on the same clock, so sessions expire when the test moves it.
func TestNewManagerClock(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	m := sessiontest.NewManager(t, session.Config{Now: func() time.Time { return now }, InactivityTimeout: time.Minute})
	c := sessiontest.NewClient(m.Middleware(http.HandlerFunc(counter)))
	c.Request("POST", "/", "")
	if got := c.Get("/").Body.String(); got != "1" {
		t.Fatalf("before expiry: %s", got)
	}
	now = now.Add(2 * time.Minute)
	if got := c.Get("/").Body.String(); got != "0" || c.Cookie("fxsession") != "" {
		t.Errorf("after expiry: %s, cookie %q (want it forgotten)", got, c.Cookie("fxsession"))
	}
	if n, err := m.CollectGarbage(t.Context()); n != 1 || err != nil {
		t.Errorf("CollectGarbage = %d, %v", n, err)
	}
}
