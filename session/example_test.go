package session_test

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/session"
)

// get sends one request through h with the cookies of the previous responses and
// returns the response body, remembering any Set-Cookie.
func get(h http.Handler, jar map[string]string, method, path string) string {
	r := httptest.NewRequest(method, path, nil)
	for name, value := range jar {
		r.AddCookie(&http.Cookie{Name: name, Value: value})
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	for _, c := range w.Result().Cookies() {
		jar[c.Name] = c.Value
	}
	body, _ := io.ReadAll(w.Result().Body)
	return strings.TrimSpace(string(body))
}

// The middleware gives every request a lazy session: it starts only when code
// asks, and later requests find it through the cookie.
func Example() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	m, err := session.New(store, session.Config{})
	if err != nil {
		panic(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		// A new ID on login (it starts the session when there is none).
		if err := s.RenewID(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_ = s.Put(r.Context(), "user", "alice")
		_ = s.AddTag(r.Context(), "user:alice")
		fmt.Fprintln(w, "logged in")
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		var user string
		if err := s.Get(r.Context(), "user", &user); err != nil {
			fmt.Fprintln(w, "hello, guest")
			return
		}
		fmt.Fprintln(w, "hello,", user)
	})
	h := m.Middleware(mux)

	jar := map[string]string{}
	fmt.Println(get(h, jar, "GET", "/"), "| cookies:", len(jar))
	fmt.Println(get(h, jar, "POST", "/login"), "| cookies:", len(jar))
	fmt.Println(get(h, jar, "GET", "/"))
	// Output:
	// hello, guest | cookies: 0
	// logged in | cookies: 1
	// hello, alice
}

// Bags group values under one stored entry; register them before serving.
func ExampleSession_Bag() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	m, _ := session.New(store, session.Config{})
	if err := m.RegisterBag("cart"); err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /cart/{sku}", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		_ = s.Start(r.Context())
		cart, _ := s.Bag("cart")
		var qty int
		_ = cart.Get(r.Context(), r.PathValue("sku"), &qty) // 0 when absent
		_ = cart.Set(r.Context(), r.PathValue("sku"), qty+1)
	})
	mux.HandleFunc("GET /cart", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		cart, _ := s.Bag("cart")
		keys, _ := cart.Keys(r.Context())
		for _, sku := range keys {
			var qty int
			_ = cart.Get(r.Context(), sku, &qty)
			fmt.Fprintf(w, "%s x%d\n", sku, qty)
		}
	})
	h := m.Middleware(mux)
	jar := map[string]string{}
	get(h, jar, "POST", "/cart/apple")
	get(h, jar, "POST", "/cart/pear")
	get(h, jar, "POST", "/cart/apple")
	fmt.Println(get(h, jar, "GET", "/cart"))
	// Output:
	// apple x2
	// pear x1
}

// Flash messages survive a redirect and are shown once.
func ExampleSession_Flashes() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	m, _ := session.New(store, session.Config{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /save", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		_ = s.Start(r.Context())
		_ = s.Flashes().Add(r.Context(), "notice", "Saved.")
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		notices, _ := s.Flashes().Get(r.Context(), "notice") // consumes them
		fmt.Fprintf(w, "page; notices: %v", notices)
	})
	h := m.Middleware(mux)
	jar := map[string]string{}
	get(h, jar, "POST", "/save")
	fmt.Println(get(h, jar, "GET", "/"))
	fmt.Println(get(h, jar, "GET", "/"))
	// Output:
	// page; notices: [Saved.]
	// page; notices: []
}

// A read-only route reads the session and writes nothing back.
func ExampleReadOnly() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	m, _ := session.New(store, session.Config{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /set", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		_ = s.Start(r.Context())
		_ = s.Put(r.Context(), "theme", "dark")
	})
	mux.Handle("GET /admin", session.ReadOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		var theme string
		_ = s.Get(r.Context(), "theme", &theme)
		err := s.Put(r.Context(), "theme", "light")
		fmt.Fprintf(w, "theme %s; write: %v", theme, err)
	})))
	h := m.Middleware(mux)
	jar := map[string]string{}
	get(h, jar, "POST", "/set")
	fmt.Println(get(h, jar, "GET", "/admin"))
	// Output:
	// theme dark; write: session: read-only
}

// Renewing the ID on login keeps the session's data and its reference; the
// previous cookie stops working as soon as the request commits.
func ExampleSession_RenewID() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	m, _ := session.New(store, session.Config{})
	var refs []string
	mux := http.NewServeMux()
	mux.HandleFunc("POST /basket", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		_ = s.Start(r.Context())
		_ = s.Put(r.Context(), "basket", []string{"apple"})
		refs = append(refs, s.Ref())
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		_ = s.RenewID(r.Context())
		_ = s.AddTag(r.Context(), "user:alice")
		refs = append(refs, s.Ref())
	})
	mux.HandleFunc("GET /basket", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		var basket []string
		_ = s.Get(r.Context(), "basket", &basket)
		fmt.Fprint(w, basket)
	})
	h := m.Middleware(mux)
	jar := map[string]string{}
	get(h, jar, "POST", "/basket")
	before := jar["fxsession"]
	get(h, jar, "POST", "/login")
	fmt.Println("new ID:", jar["fxsession"] != before, "| same reference:", refs[0] == refs[1])
	fmt.Println("basket:", get(h, jar, "GET", "/basket"))
	fmt.Println("old cookie:", get(h, map[string]string{"fxsession": before}, "GET", "/basket"))
	// Output:
	// new ID: true | same reference: true
	// basket: [apple]
	// old cookie: []
}

// A session is one record in the store: a request that reads it costs one store
// call, a request that changes it one more, and a request without a session
// none. cachetest.Wrap counts the calls.
func Example_roundTrips() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	var calls cachetest.Counter
	m, _ := session.New(cachetest.Wrap(store, calls.Hook), session.Config{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		var n int
		_ = s.Get(r.Context(), "visits", &n)
		fmt.Fprint(w, n)
	})
	mux.HandleFunc("POST /visit", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		_ = s.Start(r.Context())
		var n int
		_ = s.Get(r.Context(), "visits", &n)
		_ = s.Put(r.Context(), "visits", n+1)
	})
	h := m.Middleware(mux)
	jar := map[string]string{}
	for _, req := range []struct{ method, path string }{{"GET", "/"}, {"POST", "/visit"}, {"POST", "/visit"}, {"GET", "/"}} {
		calls.Reset()
		get(h, jar, req.method, req.path)
		fmt.Printf("%-4s %-6s reads %d, writes %d\n", req.method, req.path, calls.Count(cachetest.OpRead), calls.Count(cachetest.OpWrite))
	}
	// Output:
	// GET  /      reads 0, writes 0
	// POST /visit reads 0, writes 1
	// POST /visit reads 1, writes 1
	// GET  /      reads 1, writes 0
}

// Expired sessions are removed by the collector (Module runs it in the
// background); DestroyAll reports its progress on long runs.
func ExampleManager_DestroyAll() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	m, _ := session.New(store, session.Config{GCInterval: session.Never})
	for range 3 {
		ctx, s := m.NewContext(context.Background(), "")
		_ = s.Start(ctx)
		_ = s.Commit(ctx)
	}
	n, err := m.DestroyAll(context.Background(), func(done int) { fmt.Println("...", done) })
	fmt.Println(n, err)
	// Output:
	// ... 3
	// 3 <nil>
}

// Extensions (package scope) keep their objects in fields of the session's
// record under their own names, staged for the commit or written at once with a
// version check.
func ExampleExtensionOf() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	m, _ := session.New(store, session.Config{})
	ctx, s := m.NewContext(context.Background(), "")
	_ = s.Start(ctx)
	x := session.ExtensionOf(s)
	v1, _ := x.WriteField(ctx, "basket", []byte("1 apple"), 0) // only if absent
	_, err := x.WriteField(ctx, "basket", []byte("2 apples"), v1)
	fmt.Println(err)
	_, err = x.WriteField(ctx, "basket", []byte("stale"), v1)
	fmt.Println(errors.Is(err, cache.ErrConflict))
	b, _, _ := x.Field(ctx, "basket")
	fmt.Println(string(b))
	// Output:
	// <nil>
	// true
	// 2 apples
}

// API clients that keep no cookies carry the session ID in a header.
func ExampleConfig_idFromHeader() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	m, _ := session.New(store, session.Config{IDFrom: session.IDFromHeader}) // X-Session-Token
	api := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		var n int
		_ = s.Get(r.Context(), "calls", &n)
		_ = s.Start(r.Context())
		_ = s.Put(r.Context(), "calls", n+1)
		fmt.Fprintln(w, n+1)
	}))
	call := func(id string) (string, string) {
		r := httptest.NewRequest("GET", "/", nil)
		if id != "" {
			r.Header.Set("X-Session-Token", id)
		}
		w := httptest.NewRecorder()
		api.ServeHTTP(w, r)
		return strings.TrimSpace(w.Body.String()), w.Header().Get("X-Session-Token")
	}
	n, id := call("")
	fmt.Println(n, id != "") // a new session: its ID in the response header
	n, again := call(id)
	fmt.Println(n, again == "") // known: nothing to send back
	// Output:
	// 1 true
	// 2 true
}

// csrfToken returns the session's CSRF token, making one on first use. It starts
// the session: a form that needs a token needs a session to check it against.
func csrfToken(ctx context.Context, s *session.Session) (string, error) {
	var tok string
	err := s.Get(ctx, "csrf", &tok)
	if err == nil {
		return tok, nil
	}
	if !errors.Is(err, session.ErrNotFound) && !errors.Is(err, session.ErrNotStarted) {
		return "", err
	}
	if err := s.Start(ctx); err != nil {
		return "", err
	}
	tok = rand.Text() // crypto/rand: 128 bits, base32
	return tok, s.Put(ctx, "csrf", tok)
}

// checkCSRF compares the submitted token with the session's, in constant time.
func checkCSRF(r *http.Request) bool {
	s, _ := session.FromContext(r.Context())
	var tok string
	if s.Get(r.Context(), "csrf", &tok) != nil || tok == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(tok), []byte(r.PostFormValue("csrf"))) == 1
}

// A token tied to the session against cross-site request forgery (the
// synchronizer token pattern; see docs/security.md), with Go's
// CrossOriginProtection in front.
func Example_csrfToken() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	m, _ := session.New(store, session.Config{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /form", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		tok, err := csrfToken(r.Context(), s)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, tok) // in a page: <input type="hidden" name="csrf" value="…">
	})
	mux.HandleFunc("POST /form", func(w http.ResponseWriter, r *http.Request) {
		if !checkCSRF(r) {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		fmt.Fprint(w, "ok")
	})
	handler := http.NewCrossOriginProtection().Handler(m.Middleware(mux))

	jar := map[string]string{}
	tok := get(handler, jar, "GET", "/form")
	post := func(token string) int {
		r := httptest.NewRequest("POST", "/form", strings.NewReader("csrf="+token))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for name, value := range jar {
			r.AddCookie(&http.Cookie{Name: name, Value: value})
		}
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r)
		return w.Code
	}
	fmt.Println(post(tok), post("forged"))
	// Output: 200 403
}
