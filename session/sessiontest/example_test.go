package sessiontest_test

import (
	"fmt"
	"net/http"
	"testing"

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
