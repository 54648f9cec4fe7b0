package app_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cmd/demo/internal/app"
	"github.com/fxsession/fxsession/cmd/demo/internal/demotest"
	"github.com/fxsession/fxsession/cmd/demo/internal/web"
	"github.com/fxsession/fxsession/internal/testserver"
)

// shop starts the demo's fx app on the given store and serves it with httptest.
func shop(t *testing.T, c *app.Config) *httptest.Server {
	t.Helper()
	ts, _ := shopWithStore(t, c)
	return ts
}

// shopWithStore is shop, and the store the sessions live in (the namespace
// of the session manager), to look at their records.
func shopWithStore(t *testing.T, c *app.Config) (*httptest.Server, cache.Store) {
	t.Helper()
	dir := t.TempDir()
	if c.Catalog == "" {
		c.Catalog = filepath.Join(dir, "catalog.db")
	}
	if c.Dir == "" {
		c.Dir = filepath.Join(dir, "sessions")
	}
	if c.Namespace == "" {
		c.Namespace = "demo-test"
	}
	var (
		srv   *web.Server
		store cache.Store
	)
	fxApp := fxtest.New(t, app.Options(c, slog.New(slog.NewTextHandler(io.Discard, nil))), fx.Populate(&srv, &store))
	fxApp.RequireStart()
	t.Cleanup(fxApp.RequireStop)
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	sessions, err := store.Sub(app.SessionConfig(c, nil).Namespace)
	if err != nil {
		t.Fatal(err)
	}
	return ts, sessions
}

type client struct {
	t    *testing.T
	base string
	http *http.Client
	ua   string // the User-Agent sent, when not ""
}

func newClient(t *testing.T, base string) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: base, http: &http.Client{
		Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

func (c *client) do(method, path, body string) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if strings.HasPrefix(body, "{") || strings.HasPrefix(body, "[") {
		req.Header.Set("Content-Type", "application/json")
	} else if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if c.ua != "" {
		req.Header.Set("User-Agent", c.ua)
	}
	res, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func (c *client) cookie() string {
	u, _ := url.Parse(c.base)
	for _, ck := range c.http.Jar.Cookies(u) {
		if ck.Name == "fxsession" {
			return ck.Value
		}
	}
	return ""
}

type basket struct {
	Items []struct {
		SKU        string `json:"sku"`
		Name       string `json:"name"`
		Qty        int    `json:"qty"`
		PriceCents int64  `json:"price_cents"`
	} `json:"items"`
	TotalCents int64 `json:"total_cents"`
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decoding %q: %v", s, err)
	}
	return v
}

func expect(t *testing.T, res *http.Response, body string, status int) {
	t.Helper()
	if res.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", res.Request.Method, res.Request.URL.Path, res.StatusCode, status, body)
	}
}

func TestContract(t *testing.T) {
	for _, store := range []string{"memory", "file", "redis", "sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			ts := shop(t, demotest.Stores()[store](t))
			c := newClient(t, ts.URL)

			// A new visitor: catalog, no session, no cookie.
			res, body := c.do("GET", "/", "")
			expect(t, res, body, 200)
			if sc := res.Header.Values("Set-Cookie"); len(sc) > 0 {
				t.Fatalf("catalog set a cookie for a new visitor: %v", sc)
			}
			if !strings.Contains(body, "Sencha") {
				t.Fatalf("catalog page lacks products: %.300s", body)
			}
			res, body = c.do("GET", "/healthz", "")
			expect(t, res, body, 200)
			if body != "ok\n" {
				t.Fatalf("healthz = %q", body)
			}
			res, body = c.do("GET", "/api/products", "")
			expect(t, res, body, 200)
			products := decode[[]map[string]any](t, body)
			if len(products) < 15 || products[0]["sku"] == nil || products[0]["price_cents"] == nil || products[0]["name"] == nil {
				t.Fatalf("products = %v", products)
			}
			res, body = c.do("GET", "/api/basket", "")
			expect(t, res, body, 200)
			if b := decode[basket](t, body); len(b.Items) != 0 || b.TotalCents != 0 {
				t.Fatalf("empty basket = %+v", b)
			}
			if c.cookie() != "" {
				t.Fatal("a cookie before anything was added")
			}

			// Validation: nothing changes, no session starts.
			for _, tc := range []struct {
				body   string
				status int
			}{
				{`{"sku":"nope","qty":1}`, 404},
				{`{"sku":"tea-sencha","qty":0}`, 400},
				{`{"sku":"tea-sencha","qty":-3}`, 400},
				{`{"sku":"tea-sencha","qty":100000}`, 400},
				{`{"sku":"tea-sencha","qty":"two"}`, 400},
				{`{"sku":`, 400},
				{`not json`, 400},
				{`{"sku":"tea-sencha","qty":1,"extra":true}`, 400},
				{`{"sku":"tea-sencha","qty":1,"pad":"` + strings.Repeat("x", 5000) + `"}`, 413},
			} {
				res, body := c.do("POST", "/api/basket/items", tc.body)
				expect(t, res, body, tc.status)
				if e := decode[map[string]string](t, body); e["error"] == "" {
					t.Fatalf("error body %q lacks an error", body)
				}
			}
			if c.cookie() != "" {
				t.Fatal("a refused request started a session")
			}

			// Adding starts the session.
			res, body = c.do("POST", "/api/basket/items", `{"sku":"tea-sencha","qty":2}`)
			expect(t, res, body, 200)
			b := decode[basket](t, body)
			if len(b.Items) != 1 || b.Items[0].SKU != "tea-sencha" || b.Items[0].Qty != 2 || b.Items[0].Name != "Sencha" || b.TotalCents != 2*890 {
				t.Fatalf("basket after add = %+v", b)
			}
			first := c.cookie()
			if first == "" {
				t.Fatal("adding did not start a session")
			}
			if cc := res.Header.Get("Cache-Control"); !strings.Contains(cc, "private") {
				t.Fatalf("Cache-Control = %q", cc)
			}
			res, body = c.do("POST", "/basket/items", "sku=coffee-kenya&qty=1")
			expect(t, res, body, 303)
			if loc := res.Header.Get("Location"); loc != "/basket" {
				t.Fatalf("Location = %q", loc)
			}
			res, body = c.do("GET", "/basket", "")
			expect(t, res, body, 200)
			for _, want := range []string{"Sencha", "Nyeri AA", "Added 1 × Nyeri AA"} {
				if !strings.Contains(body, want) {
					t.Fatalf("basket page lacks %q", want)
				}
			}
			_, body = c.do("GET", "/basket", "")
			if strings.Contains(body, "Added 1 × Nyeri AA") {
				t.Fatal("the flash message was shown twice")
			}

			// Another visitor sees an empty basket.
			other := newClient(t, ts.URL)
			_, body = other.do("GET", "/api/basket", "")
			if b := decode[basket](t, body); len(b.Items) != 0 {
				t.Fatalf("another visitor sees %+v", b)
			}

			// Login renews the ID and keeps the basket.
			res, body = c.do("POST", "/api/login", `{"user":"alice"}`)
			expect(t, res, body, 200)
			if c.cookie() == first || c.cookie() == "" {
				t.Fatal("login did not renew the session ID")
			}
			_, body = c.do("GET", "/api/basket", "")
			if b := decode[basket](t, body); len(b.Items) != 2 {
				t.Fatalf("basket after login = %+v", b)
			}
			res, body = c.do("POST", "/api/login", `{"user":"bad user!"}`)
			expect(t, res, body, 400)

			// The old ID is dead.
			stale := newClient(t, ts.URL)
			u, _ := url.Parse(ts.URL)
			stale.http.Jar.SetCookies(u, []*http.Cookie{{Name: "fxsession", Value: first}})
			_, body = stale.do("GET", "/api/basket", "")
			if b := decode[basket](t, body); len(b.Items) != 0 {
				t.Fatalf("the old ID still reaches the basket: %+v", b)
			}

			// Remove.
			res, body = c.do("DELETE", "/api/basket/items/tea-sencha", "")
			expect(t, res, body, 200)
			if b := decode[basket](t, body); len(b.Items) != 1 || b.Items[0].SKU != "coffee-kenya" {
				t.Fatalf("basket after remove = %+v", b)
			}

			// Logout everywhere ends every session of alice.
			second := newClient(t, ts.URL)
			res, body = second.do("POST", "/api/login", `{"user":"alice"}`)
			expect(t, res, body, 200)
			res, body = second.do("POST", "/api/logout-everywhere", "")
			expect(t, res, body, 200)
			if n := decode[map[string]int](t, body)["sessions_ended"]; n != 2 {
				t.Fatalf("logout-everywhere ended %d sessions, want 2", n)
			}
			_, body = c.do("GET", "/api/basket", "")
			if b := decode[basket](t, body); len(b.Items) != 0 {
				t.Fatalf("alice's other session survived: %+v", b)
			}

			// Logout destroys the session and expires the cookie.
			c.do("POST", "/api/basket/items", `{"sku":"tea-assam"}`)
			res, body = c.do("POST", "/api/logout", "")
			expect(t, res, body, 200)
			if c.cookie() != "" {
				t.Fatal("logout left the cookie")
			}
			_, body = c.do("GET", "/api/basket", "")
			if b := decode[basket](t, body); len(b.Items) != 0 {
				t.Fatalf("basket after logout = %+v", b)
			}
		})
	}
}

// TestConcurrentAdds: 64 concurrent adds of one visitor lose nothing.
func TestConcurrentAdds(t *testing.T) {
	ts := shop(t, &app.Config{Store: "memory"})
	c := newClient(t, ts.URL)
	res, body := c.do("POST", "/api/basket/items", `{"sku":"tea-assam","qty":1}`)
	expect(t, res, body, 200)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for range 63 {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(context.Background(), "POST", ts.URL+"/api/basket/items", strings.NewReader(`{"sku":"tea-assam","qty":1}`))
			req.Header.Set("Cookie", "fxsession="+c.cookie())
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				errs <- res.Status + " " + string(b)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	_, body = c.do("GET", "/api/basket", "")
	if b := decode[basket](t, body); len(b.Items) != 1 || b.Items[0].Qty != 64 {
		t.Fatalf("after 64 concurrent adds: %+v", b)
	}
}

// TestStoreDown: with Redis gone, session routes answer 503 in the API's JSON
// shape, and routes without sessions keep answering; -redis-url's options are
// honoured (a paused server is given up on after read_timeout, one attempt:
// with the defaults, a 1 s read timeout and one retry, it would take about 2 s).
// The read timeout is long, so that a loaded machine cannot fail the calls that
// must succeed, and the check is a lower bound, which a stall cannot break.
func TestStoreDown(t *testing.T) {
	const readTimeout = 3 * time.Second
	redis := testserver.StartRedis(t)
	ts := shop(t, &app.Config{Store: "redis", RedisURL: redis.URL() + "?read_timeout=3s&max_retries=-1"})
	c := newClient(t, ts.URL)
	res, body := c.do("POST", "/api/basket/items", `{"sku":"tea-assam"}`)
	expect(t, res, body, 200)

	redis.Pause()
	start := time.Now()
	res, body = c.do("GET", "/api/basket", "")
	expect(t, res, body, 503)
	if e := decode[map[string]string](t, body); e["error"] == "" {
		t.Fatalf("503 body %q is not the API's JSON error", body)
	}
	if d := time.Since(start); d < readTimeout-100*time.Millisecond {
		t.Fatalf("503 after %v with read_timeout=%v and no retries: the URL's options were ignored", d, readTimeout)
	}
	res, body = c.do("GET", "/healthz", "")
	expect(t, res, body, 200)
	res, body = c.do("GET", "/api/products", "")
	expect(t, res, body, 200)
	redis.Resume()

	res, body = c.do("GET", "/api/basket", "")
	expect(t, res, body, 200)
	if b := decode[basket](t, body); len(b.Items) != 1 {
		t.Fatalf("basket after Redis came back: %+v", b)
	}
}
