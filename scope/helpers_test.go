package scope_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/filestore"
	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/cache/redisstore"
	"github.com/fxsession/fxsession/inject"
	"github.com/fxsession/fxsession/internal/testserver"
	"github.com/fxsession/fxsession/scope"
	"github.com/fxsession/fxsession/session"
)

// ---- the shop of the seed document ----

// Product is an entity: it lives in the catalog.
type Product struct {
	SKU        string `msgpack:"sku"`
	Name       string `msgpack:"name"`
	PriceCents int64  `msgpack:"price"`
}

func (p *Product) EntityID() string { return p.SKU }

// Catalog is a singleton holding data that must never reach a session, and the
// repository of products.
type Catalog struct {
	Secret   string
	mu       sync.Mutex
	products map[string]Product
	batches  atomic.Int64
}

func NewCatalog() *Catalog {
	c := &Catalog{Secret: "CATALOG-SECRET-wholesale-prices", products: map[string]Product{}}
	for i, sku := range []string{"tea", "mug", "pot", "cup", "jar", "lid", "box", "bag", "tin", "pan", "cap", "urn"} {
		c.products[sku] = Product{SKU: sku, Name: "Product name of " + sku, PriceCents: int64(100 * (i + 1))}
	}
	return c
}

var errUnknownProduct = errors.New("unknown product")

func (c *Catalog) Find(_ context.Context, sku string) (*Product, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.products[sku]
	if !ok {
		return nil, fmt.Errorf("%w: %q: %w", errUnknownProduct, sku, inject.ErrEntityNotFound)
	}
	return &p, nil
}

func (c *Catalog) FindMany(_ context.Context, skus []string) (map[string]*Product, error) {
	c.batches.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]*Product{}
	for _, s := range skus {
		if p, ok := c.products[s]; ok {
			out[s] = &p
		}
	}
	return out, nil
}

func (c *Catalog) Delete(sku string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.products, sku)
}

// ShoppingBasket is the seed's session-scoped basket.
type ShoppingBasket struct {
	Items   []LineItem   `msgpack:"items" session:"autostart"`
	Logger  *slog.Logger `inject:""`
	Views   int          `session:"-"`
	catalog *Catalog
}

type LineItem struct {
	Product *Product `msgpack:"product"`
	Qty     int      `msgpack:"qty"`
}

func NewShoppingBasket(c *Catalog) *ShoppingBasket { return &ShoppingBasket{catalog: c} }

func (b *ShoppingBasket) Add(ctx context.Context, sku string, qty int) error {
	p, err := b.catalog.Find(ctx, sku)
	if err != nil {
		return err
	}
	for i := range b.Items {
		if b.Items[i].Product != nil && b.Items[i].Product.SKU == sku {
			b.Items[i].Qty += qty
			return nil
		}
	}
	b.Items = append(b.Items, LineItem{Product: p, Qty: qty})
	return nil
}

// Prefs is a second session-scoped type with a method that starts the session.
type Prefs struct {
	scope.Autostart
	Theme string `msgpack:"theme"`
	Seen  int    `msgpack:"seen"`
}

func NewPrefs() *Prefs { return &Prefs{Theme: "light"} }

func (p *Prefs) SetTheme(t string) {
	p.StartSession() // like @Flow\Session(autoStart = TRUE)
	p.Theme = t
}

// Checkout is session-scoped and depends on the basket (session-scoped) and the
// catalog (a singleton).
type Checkout struct {
	Step   int `msgpack:"step"`
	basket *ShoppingBasket
	cat    *Catalog
	Prefs  *Prefs `inject:""`
}

func NewCheckout(b *ShoppingBasket, c *Catalog) *Checkout { return &Checkout{basket: b, cat: c} }

// ---- stores ----

type storeCase struct {
	name string
	open func(t *testing.T) cache.Store
}

// stores lists the real stores the behaviour tests run on.
func stores(redis bool) []storeCase {
	out := []storeCase{
		{"memory", func(t *testing.T) cache.Store { return newMemory(t) }},
		{"file", func(t *testing.T) cache.Store {
			s, err := filestore.Open(filestore.Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatalf("filestore.Open: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}},
	}
	if redis {
		out = append(out, storeCase{"redis", func(t *testing.T) cache.Store {
			srv := testserver.StartRedis(t)
			s, err := redisstore.New(srv.Client(), redisstore.Options{Namespace: "scopetest"})
			if err != nil {
				t.Fatalf("redisstore.New: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}})
	}
	return out
}

// ---- the app under test ----

type env struct {
	t       testing.TB
	srv     *httptest.Server
	mgr     *session.Manager
	store   cache.Store
	catalog *Catalog
	logger  *slog.Logger
	logs    *syncBuffer
	h       handleSet
}

type handleSet struct {
	basket   scope.Handle[*ShoppingBasket]
	prefs    scope.Handle[*Prefs]
	checkout scope.Handle[*Checkout]
}

func handles(t testing.TB, e *env) handleSet {
	t.Helper()
	return e.h
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// routeDeps shows a Handle nested in an fx.In struct.
type routeDeps struct {
	fx.In
	Mux      *http.ServeMux
	Basket   scope.Handle[*ShoppingBasket]
	Prefs    scope.Handle[*Prefs]
	Checkout scope.Handle[*Checkout]
	Catalog  *Catalog
	Logger   *slog.Logger
}

type basketView struct {
	Items   []itemView `json:"items"`
	Started bool       `json:"started"`
	Ptr     string     `json:"ptr"`
}

type itemView struct {
	SKU  string `json:"sku"`
	Name string `json:"name"`
	Qty  int    `json:"qty"`
}

func view(ctx context.Context, b *ShoppingBasket) basketView {
	s, _ := session.FromContext(ctx)
	started, _ := s.IsStarted(ctx)
	v := basketView{Items: []itemView{}, Started: started, Ptr: fmt.Sprintf("%p", b)}
	for _, it := range b.Items {
		if it.Product == nil {
			v.Items = append(v.Items, itemView{Qty: it.Qty})
			continue
		}
		v.Items = append(v.Items, itemView{SKU: it.Product.SKU, Name: it.Product.Name, Qty: it.Qty})
	}
	return v
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, err error) {
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

func routes(d routeDeps) {
	d.Mux.HandleFunc("GET /basket", func(w http.ResponseWriter, r *http.Request) {
		b, err := d.Basket.Get(r.Context())
		if err != nil {
			fail(w, err)
			return
		}
		writeJSON(w, view(r.Context(), b))
	})
	d.Mux.HandleFunc("POST /basket/items", func(w http.ResponseWriter, r *http.Request) {
		b, err := d.Basket.Get(r.Context())
		if err != nil {
			fail(w, err)
			return
		}
		qty, _ := strconv.Atoi(r.FormValue("qty"))
		if err := b.Add(r.Context(), r.FormValue("sku"), max(qty, 1)); err != nil {
			fail(w, err)
			return
		}
		writeJSON(w, view(r.Context(), b))
	})
	d.Mux.HandleFunc("POST /basket/update", func(w http.ResponseWriter, r *http.Request) {
		err := d.Basket.Update(r.Context(), func(b *ShoppingBasket) error {
			return b.Add(r.Context(), r.FormValue("sku"), 1)
		})
		if err != nil {
			fail(w, err)
			return
		}
		b, _ := d.Basket.Get(r.Context())
		writeJSON(w, view(r.Context(), b))
	})
	d.Mux.HandleFunc("GET /deps", func(w http.ResponseWriter, r *http.Request) {
		b, err := d.Basket.Get(r.Context())
		if err != nil {
			fail(w, err)
			return
		}
		c, err := d.Checkout.Get(r.Context())
		if err != nil {
			fail(w, err)
			return
		}
		p, err := d.Prefs.Get(r.Context())
		if err != nil {
			fail(w, err)
			return
		}
		writeJSON(w, map[string]bool{
			"catalog":         b.catalog == d.Catalog,
			"logger":          b.Logger == d.Logger,
			"checkoutBasket":  c.basket == b,
			"checkoutCatalog": c.cat == d.Catalog,
			"checkoutPrefs":   c.Prefs == p,
		})
	})
	d.Mux.HandleFunc("POST /prefs/theme", func(w http.ResponseWriter, r *http.Request) {
		p, err := d.Prefs.Get(r.Context())
		if err != nil {
			fail(w, err)
			return
		}
		p.SetTheme(r.FormValue("theme"))
		writeJSON(w, p)
	})
	d.Mux.HandleFunc("GET /prefs", func(w http.ResponseWriter, r *http.Request) {
		p, err := d.Prefs.Get(r.Context())
		if err != nil {
			fail(w, err)
			return
		}
		writeJSON(w, p)
	})
	d.Mux.HandleFunc("POST /prefs/seen", func(w http.ResponseWriter, r *http.Request) {
		p, err := d.Prefs.Get(r.Context())
		if err != nil {
			fail(w, err)
			return
		}
		p.Seen++ // not an autostart field
		writeJSON(w, p)
	})
	d.Mux.HandleFunc("POST /start", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		if err := s.Start(r.Context()); err != nil {
			fail(w, err)
			return
		}
		io.WriteString(w, "ok")
	})
	d.Mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		if err := s.RenewID(r.Context()); err != nil {
			fail(w, err)
			return
		}
		io.WriteString(w, "ok")
	})
	d.Mux.HandleFunc("GET /nothing", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "no session use")
	})
}

func newEnv(t testing.TB, store cache.Store, extra ...fx.Option) *env {
	t.Helper()
	e := &env{t: t, store: store, catalog: NewCatalog(), logs: &syncBuffer{}}
	e.logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var mux *http.ServeMux
	opts := []fx.Option{
		fx.NopLogger,
		fx.Supply(e.logger),
		fx.Supply(session.Config{GCInterval: session.Never}),
		fx.Provide(func() cache.Store { return store }),
		session.Module,
		fx.Supply(e.catalog),
		scope.Repository[*Catalog](),
		scope.Provide(NewShoppingBasket),
		scope.Provide(NewPrefs),
		scope.Provide(NewCheckout),
		fx.Provide(http.NewServeMux),
		fx.Invoke(routes),
		fx.Invoke(func(b scope.Handle[*ShoppingBasket], p scope.Handle[*Prefs], c scope.Handle[*Checkout]) {
			e.h = handleSet{b, p, c}
		}),
		fx.Populate(&e.mgr, &mux),
	}
	app := fxtest.New(t, append(opts, extra...)...)
	app.RequireStart()
	t.Cleanup(app.RequireStop)
	e.srv = httptest.NewServer(e.mgr.Middleware(mux))
	t.Cleanup(e.srv.Close)
	return e
}

// client is one browser: it keeps cookies.
type client struct {
	e *env
	c *http.Client
}

func (e *env) client() *client {
	jar, _ := cookiejar.New(nil)
	return &client{e: e, c: &http.Client{Jar: jar}}
}

type response struct {
	status int
	header http.Header
	body   string
}

func (c *client) do(method, path string) response {
	c.e.t.Helper()
	req, err := http.NewRequest(method, c.e.srv.URL+path, nil)
	if err != nil {
		c.e.t.Fatal(err)
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (c *client) basket() basketView {
	c.e.t.Helper()
	r := c.do("GET", "/basket")
	if r.status != 200 {
		c.e.t.Fatalf("GET /basket: %d %s", r.status, r.body)
	}
	var v basketView
	if err := json.Unmarshal([]byte(r.body), &v); err != nil {
		c.e.t.Fatalf("GET /basket: %v in %q", err, r.body)
	}
	return v
}

func (c *client) cookie() string {
	u, _ := http.NewRequest("GET", c.e.srv.URL, nil)
	for _, ck := range c.c.Jar.Cookies(u.URL) {
		if ck.Name == session.DefaultCookieName {
			return ck.Value
		}
	}
	return ""
}

// storedField is one field of a session's record in the store.
type storedField struct {
	Ref   string // the session's reference (record key)
	Name  string // the field's name ("e:scope:ShoppingBasket.…" for an object)
	Value []byte
}

// sessions returns the store namespace the sessions live in.
func (e *env) sessions() cache.Store {
	e.t.Helper()
	ns, err := e.store.Sub(session.DefaultNamespace)
	if err != nil {
		e.t.Fatal(err)
	}
	return ns
}

// stored returns the fields of every session record whose name mentions substr.
func (e *env) stored(substr string) []storedField {
	e.t.Helper()
	ns := e.sessions()
	var out []storedField
	for ref, err := range ns.Keys(context.Background()) {
		if err != nil {
			e.t.Fatal(err)
		}
		rec, err := ns.Read(context.Background(), ref)
		if err != nil {
			continue
		}
		for _, f := range rec.Fields {
			if strings.Contains(f.Name, substr) {
				out = append(out, storedField{Ref: ref, Name: f.Name, Value: f.Value})
			}
		}
	}
	return out
}

// entryCount counts the session records of the store.
func (e *env) entryCount() int {
	e.t.Helper()
	n := 0
	for _, err := range e.sessions().Keys(context.Background()) {
		if err != nil {
			e.t.Fatal(err)
		}
		n++
	}
	return n
}

// counting is a store whose calls are counted: writes counts the scope objects
// written (fields "e:scope:…" of Writes), reads the store reads (Read and
// ReadMany calls: a resume, or an Update's fresh read). With conflict set,
// every conditional write of a scope object fails with cache.ErrConflict
// (counted as a write).
type counting struct {
	*cachetest.Wrapped
	writes   *atomic.Int64
	reads    *atomic.Int64
	conflict bool
}

func newCounting(s cache.Store) *counting { return wrapCounting(s, false) }

func wrapCounting(s cache.Store, conflict bool) *counting {
	c := &counting{writes: &atomic.Int64{}, reads: &atomic.Int64{}, conflict: conflict}
	c.Wrapped = cachetest.Wrap(s, func(_ context.Context, call cachetest.Call) error {
		switch call.Op {
		case cachetest.OpRead, cachetest.OpReadMany:
			c.reads.Add(1)
		case cachetest.OpWrite:
			for _, f := range call.Write.Fields {
				if !strings.HasPrefix(f.Name, "e:scope:") {
					continue
				}
				c.writes.Add(1)
				if c.conflict && f.Check {
					return fmt.Errorf("test: %w", cache.ErrConflict)
				}
			}
		}
		return nil
	})
	return c
}

// memorySessions is session.Module on a memory store of the test's own, quiet
// (no fx or slog output) and without the background collector.
func memorySessions(t testing.TB) fx.Option {
	return fx.Options(
		fx.NopLogger,
		fx.Supply(slog.New(slog.DiscardHandler)),
		fx.Supply(session.Config{GCInterval: session.Never}),
		fx.Provide(func() cache.Store { return newMemory(t) }),
		session.Module,
	)
}

func newMemory(t testing.TB) cache.Store {
	s := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = s.Close() })
	return s
}
