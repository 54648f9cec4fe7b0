package reliability_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/scope"
	"github.com/fxsession/fxsession/session"
)

// ---- the test shop: the demo's shape, with hooks the tests need ----
//
// The demo (cmd/demo) lives behind an internal/ path this package cannot import,
// so the in-process checks use this small shop, wired the same way (session.Module,
// a cache.Store in the graph, scope.Provide for the session-scoped types); the
// checks that need the demo itself run its binary (demo_test.go).

// Line is one basket line. Note pads a line to grow the basket (payload tests).
type Line struct {
	SKU  string `msgpack:"sku"`
	Qty  int    `msgpack:"qty"`
	Note string `msgpack:"note,omitempty"`
}

// Basket is session-scoped; changing Items starts the session.
type Basket struct {
	Items []Line `msgpack:"items" session:"autostart"`
}

// NewBasket is Basket's constructor.
func NewBasket() *Basket { return &Basket{} }

// Add adds qty of sku, with an optional note.
func (b *Basket) Add(sku string, qty int, note string) {
	for i := range b.Items {
		if b.Items[i].SKU == sku {
			b.Items[i].Qty += qty
			if note != "" {
				b.Items[i].Note = note
			}
			return
		}
	}
	b.Items = append(b.Items, Line{SKU: sku, Qty: qty, Note: note})
}

// Count is the number of units.
func (b *Basket) Count() int {
	n := 0
	for _, it := range b.Items {
		n += it.Qty
	}
	return n
}

// BasketV2 is the basket after an incompatible deploy: Items changed its kind
// (a list became a string). It is stored under the same key as Basket.
type BasketV2 struct {
	Items string `msgpack:"items" session:"autostart"`
}

// NewBasketV2 is BasketV2's constructor.
func NewBasketV2() *BasketV2 { return &BasketV2{} }

// Wishlist is a second session-scoped type.
type Wishlist struct {
	SKUs []string `msgpack:"skus" session:"autostart"`
}

// NewWishlist is Wishlist's constructor.
func NewWishlist() *Wishlist { return &Wishlist{} }

// basketKey is the storage key of both basket versions (scope.Key), and
// basketField the field of the session's record that holds it (an extension
// field, "e:", of package scope, "scope:").
const (
	basketKey   = "basket"
	basketField = "e:scope:" + basketKey
)

// shopBags are the attribute bags the shop registers.
var shopBags = []string{"prefs", "ui"}

// shopConfig configures newShop.
type shopConfig struct {
	Store   cache.Store    // required; closed by its creator
	Session session.Config // Logger is filled when nil
	V2      bool           // serve BasketV2 instead of Basket
	Logger  *slog.Logger   // default: discards below Warn into a logSink
}

// shop is a started test shop.
type shop struct {
	Mgr     *session.Manager
	Handler http.Handler // healthz outside the middleware, the rest inside
	Logs    *logSink
	app     *fx.App
	barrier *barriers
	stopped bool
	stopMu  sync.Mutex
}

// tb is what newShop needs of a test: testing.TB, or childTB in a child
// process that serves the shop.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Cleanup(func())
}

var _ tb = testing.TB(nil)

// newShop builds and starts the shop's fx app on cfg.Store; it stops when the
// test ends (or earlier with Stop).
func newShop(t tb, cfg shopConfig) *shop {
	t.Helper()
	s := &shop{barrier: newBarriers(), Logs: &logSink{}}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(s.Logs)
	}
	if cfg.Session.Logger == nil {
		cfg.Session.Logger = logger
	}
	opts := []fx.Option{
		fx.NopLogger,
		fx.Supply(logger),
		fx.Supply(cfg.Session),
		fx.Provide(func() cache.Store { return cfg.Store }),
		session.Module,
		scope.Provide(NewWishlist),
		fx.Populate(&s.Mgr),
	}
	for _, b := range shopBags {
		opts = append(opts, session.RegisterBag(b))
	}
	if cfg.V2 {
		opts = append(opts,
			scope.Provide(NewBasketV2, scope.Key(basketKey)),
			fx.Invoke(func(m *session.Manager, b scope.Handle[*BasketV2], w scope.Handle[*Wishlist]) {
				s.Handler = s.routes(m, routesV2(b), w)
			}))
	} else {
		opts = append(opts,
			scope.Provide(NewBasket, scope.Key(basketKey)),
			fx.Invoke(func(m *session.Manager, b scope.Handle[*Basket], w scope.Handle[*Wishlist]) {
				s.Handler = s.routes(m, routesV1(b), w)
			}))
	}
	s.app = fx.New(opts...)
	if err := s.app.Err(); err != nil {
		t.Fatalf("shop: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := s.app.Start(ctx); err != nil {
		t.Fatalf("shop start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("shop stop: %v", err)
		}
	})
	return s
}

// Stop stops the fx app (the background collector); later calls do nothing.
func (s *shop) Stop() error {
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return s.app.Stop(ctx)
}

// basketRoutes are the routes that depend on the basket version.
type basketRoutes struct {
	get    func(ctx context.Context) (count, lines int, err error)
	update func(ctx context.Context, sku string, qty int, note string) (count int, err error)
	plain  func(ctx context.Context, sku string, qty int, note string, wait func()) (count int, err error)
}

func routesV1(h scope.Handle[*Basket]) basketRoutes {
	return basketRoutes{
		get: func(ctx context.Context) (int, int, error) {
			b, err := h.Get(ctx)
			if err != nil {
				return 0, 0, err
			}
			return b.Count(), len(b.Items), nil
		},
		update: func(ctx context.Context, sku string, qty int, note string) (int, error) {
			n := 0
			err := h.Update(ctx, func(b *Basket) error {
				b.Add(sku, qty, note)
				n = b.Count()
				return nil
			})
			return n, err
		},
		plain: func(ctx context.Context, sku string, qty int, note string, wait func()) (int, error) {
			b, err := h.Get(ctx)
			if err != nil {
				return 0, err
			}
			wait()
			b.Add(sku, qty, note)
			return b.Count(), nil
		},
	}
}

func routesV2(h scope.Handle[*BasketV2]) basketRoutes {
	get := func(ctx context.Context) (int, int, error) {
		b, err := h.Get(ctx)
		if err != nil {
			return 0, 0, err
		}
		return len(b.Items), len(b.Items), nil
	}
	return basketRoutes{
		get: get,
		update: func(ctx context.Context, sku string, _ int, _ string) (int, error) {
			n := 0
			err := h.Update(ctx, func(b *BasketV2) error {
				b.Items += sku
				n = len(b.Items)
				return nil
			})
			return n, err
		},
		plain: func(ctx context.Context, sku string, _ int, _ string, wait func()) (int, error) {
			b, err := h.Get(ctx)
			if err != nil {
				return 0, err
			}
			wait()
			b.Items += sku
			return len(b.Items), nil
		},
	}
}

// routes builds the shop's handler:
//
//	GET  /healthz                    outside the session middleware
//	GET  /plain                      inside it, never uses the session
//	GET  /basket                     {"count","lines","started"}
//	GET  /ro/basket                  the same on a session.ReadOnly route
//	POST /basket/update?sku&qty&note_kb   Handle.Update
//	POST /basket/plain?sku&qty&note_kb&barrier&n&sleep_ms   Get and change, no Update
//	POST /excl/basket/plain?...      the same inside session.Exclusive
//	GET  /ro/excl/basket             session.ReadOnly(session.Exclusive(read))
//	POST /wish/plain?sku&barrier&n   the wishlist, Get and change
//	GET  /wish                       {"count"}
//	POST /bag/{name}?k&v&barrier&n   a bag value
//	GET  /bag/{name}                 the bag's values
//	POST /put?k&v_kb                 a raw session value (Session.Put)
//	POST /login?user                 RenewID, tag, Put("user")
//	POST /logout                     Destroy
//
// Errors answer JSON {"error"} with 413 (too large), 503 (store unavailable),
// 409 (conflict) or 500.
func (s *shop) routes(m *session.Manager, basket basketRoutes, wish scope.Handle[*Wishlist]) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /plain", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "plain\n")
	})
	mux.HandleFunc("GET /basket", func(w http.ResponseWriter, r *http.Request) {
		n, lines, err := basket.get(r.Context())
		if err != nil {
			apiError(w, err)
			return
		}
		sess, _ := session.FromContext(r.Context())
		started, err := sess.IsStarted(r.Context())
		if err != nil {
			apiError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"count": n, "lines": lines, "started": started})
	})
	mux.Handle("GET /ro/basket", session.ReadOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, lines, err := basket.get(r.Context())
		if err != nil {
			apiError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"count": n, "lines": lines})
	})))
	mux.HandleFunc("POST /basket/update", func(w http.ResponseWriter, r *http.Request) {
		sku, qty, note := lineParams(r)
		n, err := basket.update(r.Context(), sku, qty, note)
		if err != nil {
			apiError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"count": n})
	})
	plain := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sku, qty, note := lineParams(r)
		n, err := basket.plain(r.Context(), sku, qty, note, s.waiter(r))
		if err != nil {
			apiError(w, err)
			return
		}
		if ms, _ := strconv.Atoi(r.FormValue("sleep_ms")); ms > 0 {
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		writeJSON(w, http.StatusOK, map[string]any{"count": n})
	})
	mux.Handle("POST /basket/plain", plain)
	// The same change behind the per-session lock; and a read behind it on a
	// read-only route (which must not lock).
	mux.Handle("POST /excl/basket/plain", session.Exclusive(plain))
	mux.Handle("GET /ro/excl/basket", session.ReadOnly(session.Exclusive(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _, err := basket.get(r.Context())
		if err != nil {
			apiError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"count": n})
	}))))
	mux.HandleFunc("POST /wish/plain", func(w http.ResponseWriter, r *http.Request) {
		wl, err := wish.Get(r.Context())
		if err != nil {
			apiError(w, err)
			return
		}
		s.waiter(r)()
		wl.SKUs = append(wl.SKUs, r.FormValue("sku"))
		writeJSON(w, http.StatusOK, map[string]any{"count": len(wl.SKUs)})
	})
	mux.HandleFunc("GET /wish", func(w http.ResponseWriter, r *http.Request) {
		wl, err := wish.Get(r.Context())
		if err != nil {
			apiError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"count": len(wl.SKUs)})
	})
	mux.HandleFunc("POST /bag/{name}", func(w http.ResponseWriter, r *http.Request) {
		sess, _ := session.FromContext(r.Context())
		bag, err := sess.Bag(r.PathValue("name"))
		if err == nil {
			err = bag.Set(r.Context(), r.FormValue("k"), r.FormValue("v"))
		}
		if err != nil {
			apiError(w, err)
			return
		}
		s.waiter(r)()
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	})
	mux.HandleFunc("GET /bag/{name}", func(w http.ResponseWriter, r *http.Request) {
		sess, _ := session.FromContext(r.Context())
		bag, err := sess.Bag(r.PathValue("name"))
		if err != nil {
			apiError(w, err)
			return
		}
		all, err := bag.All(r.Context())
		if err != nil {
			apiError(w, err)
			return
		}
		out := map[string]string{}
		for k, v := range all {
			var s string
			if err := v.Decode(&s); err != nil {
				apiError(w, err)
				return
			}
			out[k] = s
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /put", func(w http.ResponseWriter, r *http.Request) {
		sess, _ := session.FromContext(r.Context())
		kb, _ := strconv.Atoi(r.FormValue("v_kb"))
		v := r.FormValue("v") + strings.Repeat("x", kb<<10)
		if err := sess.Start(r.Context()); err != nil {
			apiError(w, err)
			return
		}
		if err := sess.Put(r.Context(), r.FormValue("k"), v); err != nil {
			apiError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	})
	mux.HandleFunc("GET /put", func(w http.ResponseWriter, r *http.Request) {
		sess, _ := session.FromContext(r.Context())
		var v string
		if err := sess.Get(r.Context(), r.FormValue("k"), &v); err != nil {
			apiError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"len": len(v), "head": v[:min(len(v), 16)]})
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		sess, _ := session.FromContext(r.Context())
		user := r.FormValue("user")
		err := sess.RenewID(r.Context())
		if err == nil {
			err = sess.Put(r.Context(), "user", user)
		}
		if err == nil {
			err = sess.AddTag(r.Context(), "user:"+user)
		}
		if err != nil {
			apiError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"user": user})
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		sess, _ := session.FromContext(r.Context())
		if err := sess.Destroy(r.Context(), "logout"); err != nil {
			apiError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	})

	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	root.Handle("/", m.Middleware(mux))
	return root
}

// lineParams reads sku, qty (default 1) and note_kb (a note of that many KiB).
func lineParams(r *http.Request) (string, int, string) {
	qty, err := strconv.Atoi(r.FormValue("qty"))
	if err != nil || qty == 0 {
		qty = 1
	}
	kb, _ := strconv.Atoi(r.FormValue("note_kb"))
	sku := r.FormValue("sku")
	if sku == "" {
		sku = "tea"
	}
	return sku, qty, strings.Repeat("n", kb<<10)
}

// classify maps an error to its status, as the demo's web layer does.
func classify(err error) int {
	switch {
	case errors.Is(err, cache.ErrValueTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, cache.ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, scope.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, session.ErrNotStarted):
		return http.StatusNotFound
	case errors.Is(err, session.ErrLockTimeout):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func apiError(w http.ResponseWriter, err error) {
	writeJSON(w, classify(err), map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ---- barriers: make concurrent requests overlap for sure ----

// barriers lets n requests that carry the same barrier name wait for each other
// after they loaded their object and before they change and commit it, so that
// every one of them reads before any of them writes.
type barriers struct {
	mu sync.Mutex
	m  map[string]*barrier
}

type barrier struct {
	n    int
	seen int
	done chan struct{}
}

func newBarriers() *barriers { return &barriers{m: map[string]*barrier{}} }

// waiter returns the request's wait function (a no-op without a barrier).
func (s *shop) waiter(r *http.Request) func() {
	name := r.FormValue("barrier")
	n, _ := strconv.Atoi(r.FormValue("n"))
	if name == "" || n < 2 {
		return func() {}
	}
	return func() { s.barrier.wait(name, n) }
}

func (b *barriers) wait(name string, n int) {
	b.mu.Lock()
	br := b.m[name]
	if br == nil {
		br = &barrier{n: n, done: make(chan struct{})}
		b.m[name] = br
	}
	br.seen++
	if br.seen == br.n {
		close(br.done)
		delete(b.m, name)
	}
	b.mu.Unlock()
	select {
	case <-br.done:
	case <-time.After(10 * time.Second):
	}
}

// ---- logs ----

// logSink is a slog.Handler that keeps warnings and errors for assertions and
// drops the rest.
type logSink struct {
	mu      sync.Mutex
	records []string
}

func (l *logSink) Enabled(_ context.Context, lvl slog.Level) bool { return lvl >= slog.LevelWarn }

func (l *logSink) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	l.records = append(l.records, b.String())
	l.mu.Unlock()
	return nil
}

func (l *logSink) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logSink) WithGroup(string) slog.Handler      { return l }

// Matching returns the kept records containing sub.
func (l *logSink) Matching(sub string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.records {
		if strings.Contains(r, sub) {
			out = append(out, r)
		}
	}
	return out
}
