// Package sessiontest helps test code that uses sessions: a manager on a fresh
// in-memory store and a client that keeps the session cookie between requests,
// all through httptest (no network).
package sessiontest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/session"
)

// NewManager returns a manager on a fresh in-memory store with cfg; the store is
// closed when the test ends. The store runs on cfg.Now when it is set, so that a
// test moving the clock moves the store's expiry with the manager's.
func NewManager(t testing.TB, cfg session.Config) *session.Manager {
	t.Helper()
	store := memstore.New(memstore.Options{Now: cfg.Now})
	t.Cleanup(func() { _ = store.Close() })
	m, err := session.New(store, cfg)
	if err != nil {
		t.Fatalf("sessiontest: %v", err)
	}
	return m
}

// Client sends requests to Handler and keeps the cookies its responses set (a
// cookie with Max-Age < 0 is forgotten), like a browser with one tab. It is safe
// for concurrent use.
type Client struct {
	Handler http.Handler

	mu      sync.Mutex
	cookies map[string]string
}

// NewClient returns a client for h (typically m.Middleware(mux)).
func NewClient(h http.Handler) *Client { return &Client{Handler: h} }

// Do sends r with the client's cookies and records the response.
func (c *Client) Do(r *http.Request) *httptest.ResponseRecorder {
	c.mu.Lock()
	for name, value := range c.cookies {
		r.AddCookie(&http.Cookie{Name: name, Value: value})
	}
	c.mu.Unlock()
	w := httptest.NewRecorder()
	c.Handler.ServeHTTP(w, r)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ck := range w.Result().Cookies() {
		if c.cookies == nil {
			c.cookies = map[string]string{}
		}
		if ck.MaxAge < 0 {
			delete(c.cookies, ck.Name)
		} else {
			c.cookies[ck.Name] = ck.Value
		}
	}
	return w
}

// Request sends a request with the given method, path and body ("" for none).
func (c *Client) Request(method, path, body string) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	return c.Do(httptest.NewRequest(method, path, rd))
}

// Get sends a GET request for path.
func (c *Client) Get(path string) *httptest.ResponseRecorder {
	return c.Request(http.MethodGet, path, "")
}

// Cookie returns the value of the cookie called name the client holds ("" if none).
func (c *Client) Cookie(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cookies[name]
}

// SetCookie sets (or with value "" removes) a cookie, e.g. to replay an old ID.
func (c *Client) SetCookie(name, value string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if value == "" {
		delete(c.cookies, name)
		return
	}
	if c.cookies == nil {
		c.cookies = map[string]string{}
	}
	c.cookies[name] = value
}
