package scope_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"

	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/scope"
	"github.com/fxsession/fxsession/session"
)

// Tea is an entity: it has an ID and lives in the Shelf.
type Tea struct {
	SKU, Name string
}

func (t *Tea) EntityID() string { return t.SKU }

// Shelf is a singleton and the repository of teas.
type Shelf struct{ teas map[string]Tea }

func (s *Shelf) Find(_ context.Context, sku string) (*Tea, error) {
	t, ok := s.teas[sku]
	if !ok {
		return nil, fmt.Errorf("no tea %q", sku)
	}
	return &t, nil
}

// Basket is session-scoped: one per visitor's session.
type Basket struct {
	Teas  []*Tea `msgpack:"teas" session:"autostart"` // changing it starts the session
	shelf *Shelf // a dependency: never stored
}

func NewBasket(s *Shelf) *Basket { return &Basket{shelf: s} }

func (b *Basket) Add(ctx context.Context, sku string) error {
	t, err := b.shelf.Find(ctx, sku)
	if err == nil {
		b.Teas = append(b.Teas, t)
	}
	return err
}

func (b *Basket) String() string {
	var names []string
	for _, t := range b.Teas {
		names = append(names, t.Name)
	}
	return "[" + strings.Join(names, ", ") + "]"
}

func shopRoutes(mux *http.ServeMux, basket scope.Handle[*Basket]) {
	mux.HandleFunc("GET /basket", func(w http.ResponseWriter, r *http.Request) {
		b, err := basket.Get(r.Context())
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprint(w, b)
	})
	mux.HandleFunc("POST /basket", func(w http.ResponseWriter, r *http.Request) {
		err := basket.Update(r.Context(), func(b *Basket) error { return b.Add(r.Context(), r.FormValue("sku")) })
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprint(w, "added")
	})
}

// The seed document's story: the basket is empty and there is no session until
// something is added; then the basket comes from the session.
func Example() {
	var (
		mgr *session.Manager
		mux *http.ServeMux
	)
	app := fx.New(
		fx.NopLogger,
		fx.Provide(func() cache.Store { return memstore.New(memstore.Options{}) }),
		fx.Supply(session.Config{GCInterval: session.Never}),
		session.Module,
		fx.Supply(&Shelf{teas: map[string]Tea{"sencha": {"sencha", "Sencha"}, "assam": {"assam", "Assam"}}}),
		scope.Repository[*Shelf](),
		scope.Provide(NewBasket),
		fx.Provide(http.NewServeMux),
		fx.Invoke(shopRoutes),
		fx.Populate(&mgr, &mux),
	)
	if err := app.Start(context.Background()); err != nil {
		panic(err)
	}
	defer app.Stop(context.Background())
	srv := httptest.NewServer(mgr.Middleware(mux))
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	browser := &http.Client{Jar: jar, Transport: transport}
	visit := func(method, path string) {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := browser.Do(req)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%-4s %-22s -> %-16s cookie sent: %v\n", method, path, body, resp.Header.Get("Set-Cookie") != "")
	}
	visit("GET", "/basket")
	visit("GET", "/basket")
	visit("POST", "/basket?sku=sencha")
	visit("GET", "/basket")
	visit("POST", "/basket?sku=assam")
	visit("GET", "/basket")
	// Output:
	// GET  /basket                -> []               cookie sent: false
	// GET  /basket                -> []               cookie sent: false
	// POST /basket?sku=sencha     -> added            cookie sent: true
	// GET  /basket                -> [Sencha]         cookie sent: false
	// POST /basket?sku=assam      -> added            cookie sent: false
	// GET  /basket                -> [Sencha, Assam]  cookie sent: false
}

// Prefs2 shows the method form of autostart.
type Prefs2 struct {
	scope.Autostart
	Theme string `msgpack:"theme"`
}

// UseDarkTheme starts the session, like @Flow\Session(autoStart = TRUE).
func (p *Prefs2) UseDarkTheme() {
	p.StartSession()
	p.Theme = "dark"
}

func ExampleAutostart() {
	var (
		mgr   *session.Manager
		prefs scope.Handle[*Prefs2]
	)
	app := fx.New(
		fx.NopLogger,
		fx.Provide(func() cache.Store { return memstore.New(memstore.Options{}) }),
		fx.Supply(session.Config{GCInterval: session.Never}),
		session.Module,
		scope.Provide(func() *Prefs2 { return &Prefs2{Theme: "light"} }),
		fx.Populate(&mgr, &prefs),
	)
	if err := app.Err(); err != nil {
		panic(err)
	}
	// A detached session (a job, a test) instead of an HTTP request.
	ctx, s := mgr.NewContext(context.Background(), "")
	p, _ := prefs.Get(ctx)
	p.UseDarkTheme()
	if err := s.Commit(ctx); err != nil {
		panic(err)
	}
	started, _ := s.IsStarted(ctx)
	id, _ := s.ID(ctx)

	ctx2, _ := mgr.NewContext(context.Background(), id)
	again, _ := prefs.Get(ctx2)
	fmt.Println("started:", started, "theme:", again.Theme)
	// Output: started: true theme: dark
}

// Conn is request-scoped: one per request, closed when the request ends.
type Conn struct{ n int }

func (c *Conn) Close() error {
	fmt.Println("conn closed after", c.n, "uses")
	return nil
}

// A request scope: one Conn per request, whatever the number of Gets, closed at
// the request's end — without a session, and starting none.
func ExampleProvideRequest() {
	var (
		mgr  *session.Manager
		conn scope.RequestHandle[*Conn]
	)
	app := fx.New(
		fx.NopLogger,
		fx.Provide(func() cache.Store { return memstore.New(memstore.Options{}) }),
		fx.Supply(session.Config{GCInterval: session.Never}),
		session.Module,
		scope.ProvideRequest(func() *Conn { return &Conn{} }),
		fx.Populate(&mgr, &conn),
	)
	if err := app.Err(); err != nil {
		panic(err)
	}
	handler := mgr.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 3 {
			c, err := conn.Get(r.Context())
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			c.n++
		}
	}))
	for range 2 {
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		fmt.Println("cookie sent:", w.Header().Get("Set-Cookie") != "")
	}
	// Output:
	// conn closed after 3 uses
	// cookie sent: false
	// conn closed after 3 uses
	// cookie sent: false
}
