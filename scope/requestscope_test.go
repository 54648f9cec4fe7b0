package scope_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/scope"
	"github.com/fxsession/fxsession/session"
)

// Journal records what happens to request-scoped objects, in order.
type Journal struct {
	mu   sync.Mutex
	log  []string
	made atomic.Int64
}

func (j *Journal) add(s string) {
	j.mu.Lock()
	j.log = append(j.log, s)
	j.mu.Unlock()
}

func (j *Journal) take() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := j.log
	j.log = nil
	return out
}

// Tx is request-scoped: one per request, closed at its end.
type Tx struct {
	j  *Journal
	id int64
}

func NewTx(j *Journal) *Tx {
	tx := &Tx{j: j, id: j.made.Add(1)}
	j.add("open tx")
	return tx
}

func (tx *Tx) Close() error {
	tx.j.add("close tx")
	return nil
}

// Audit is request-scoped too and takes the request's Tx and the visitor's
// Prefs (session-scoped); its Close fails, which is logged.
type Audit struct {
	Tx    *Tx
	Prefs *Prefs
	j     *Journal
}

func NewAudit(tx *Tx, p *Prefs, j *Journal, ctx struct{}) *Audit {
	j.add("open audit")
	return &Audit{Tx: tx, Prefs: p, j: j}
}

func (a *Audit) Close() error {
	a.j.add("close audit")
	return errors.New("audit sink full")
}

type reqEnv struct {
	srv     *httptest.Server
	handler http.Handler
	journal *Journal
	logs    *syncBuffer
	calls   *cachetest.Counter
}

func newReqEnv(t *testing.T) *reqEnv {
	e := &reqEnv{journal: &Journal{}, logs: &syncBuffer{}, calls: &cachetest.Counter{}}
	store := cachetest.Wrap(memstore.New(memstore.Options{}), e.calls.Hook)
	var (
		m     *session.Manager
		tx    scope.RequestHandle[*Tx]
		audit scope.RequestHandle[*Audit]
	)
	app := fxtest.New(t, fx.NopLogger,
		fx.Supply(slog.New(slog.NewTextHandler(e.logs, nil))),
		fx.Supply(session.Config{GCInterval: session.Never}),
		fx.Provide(func() cache.Store { return store }),
		session.Module,
		fx.Supply(e.journal),
		scope.Provide(NewPrefs),
		scope.ProvideRequest(NewTx),
		scope.ProvideRequest(func(tx *Tx, p *Prefs, j *Journal) *Audit { return NewAudit(tx, p, j, struct{}{}) }),
		fx.Populate(&m, &tx, &audit),
	)
	app.RequireStart()
	t.Cleanup(app.RequireStop)
	mux := http.NewServeMux()
	mux.HandleFunc("/tx", func(w http.ResponseWriter, r *http.Request) {
		var wg sync.WaitGroup
		ids := make([]int64, 4)
		for i := range ids {
			wg.Go(func() {
				x, err := tx.Get(r.Context())
				if err != nil {
					t.Error(err)
					return
				}
				ids[i] = x.id
			})
		}
		wg.Wait()
		for _, id := range ids[1:] {
			if id != ids[0] {
				t.Errorf("one request got several Tx: %v", ids)
			}
		}
		_ = scope.AtRequestEnd(r.Context(), func() error { e.journal.add("end hook"); return nil })
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("/audit", func(w http.ResponseWriter, r *http.Request) {
		a, err := audit.Get(r.Context())
		if err != nil {
			t.Error(err)
			return
		}
		x, _ := tx.Get(r.Context())
		if a.Tx != x || a.Prefs == nil {
			t.Errorf("Audit got another Tx (%p, request's %p) or no Prefs", a.Tx, x)
		}
		if r.URL.Query().Has("panic") {
			panic("handler bug")
		}
	})
	e.handler = m.Middleware(mux)
	e.srv = httptest.NewServer(e.handler)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *reqEnv) get(t *testing.T, path string) *http.Response {
	t.Helper()
	resp, err := http.Get(e.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestRequestScope: one instance per request, closed at its end in the reverse
// order of construction (end hooks included), also when the handler panics;
// without a session, and starting none.
func TestRequestScope(t *testing.T) {
	e := newReqEnv(t)
	resp := e.get(t, "/tx")
	if got := e.journal.take(); strings.Join(got, ",") != "open tx,end hook,close tx" {
		t.Fatalf("first request: %q", got)
	}
	if resp.Header.Get("Set-Cookie") != "" || e.calls.Count() != 0 {
		t.Fatalf("the request scope started a session or touched the store: %q, %d calls", resp.Header.Get("Set-Cookie"), e.calls.Count())
	}
	e.get(t, "/tx")
	if got := e.journal.take(); strings.Join(got, ",") != "open tx,end hook,close tx" || e.journal.made.Load() != 2 {
		t.Fatalf("second request: %q, %d Tx made in all", got, e.journal.made.Load())
	}
	// Audit takes the request's Tx (built first) and the visitor's Prefs: closed
	// the other way round; its Close error is logged.
	e.get(t, "/audit")
	if got := e.journal.take(); strings.Join(got, ",") != "open tx,open audit,close audit,close tx" {
		t.Fatalf("audit request: %q", got)
	}
	if !strings.Contains(e.logs.String(), "audit sink full") {
		t.Fatalf("a Close error was not logged: %s", e.logs)
	}
	// A panicking handler still closes its objects.
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the handler did not panic")
			}
		}()
		e.handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/audit?panic=1", nil))
	}()
	if got := e.journal.take(); strings.Join(got, ",") != "open tx,open audit,close audit,close tx" {
		t.Fatalf("after a panic: %q", got)
	}
	if e.calls.Count() != 0 {
		t.Fatalf("%d store calls: the request scope must not use the session's store", e.calls.Count())
	}
}

// TestRequestScopeRules: the captive rules are checked at fx start, each error
// naming both types and the fix.
func TestRequestScopeRules(t *testing.T) {
	j := fx.Supply(&Journal{})
	for _, c := range []struct {
		name string
		opts []fx.Option
		want []string
	}{
		{"singleton takes a request-scoped type", []fx.Option{j, scope.ProvideRequest(NewTx), fx.Provide(func(*Tx) *Till { return &Till{} }), fx.Invoke(func(*Till) {})},
			[]string{"captive dependency", "request-scoped *scope_test.Tx", "scope.RequestHandle[*scope_test.Tx]"}},
		{"session-scoped type takes a request-scoped type", []fx.Option{j, scope.ProvideRequest(NewTx), scope.Provide(func(*Tx) *Prefs { return &Prefs{} })},
			[]string{"the session-scoped *scope_test.Prefs takes the request-scoped *scope_test.Tx", "scope.RequestHandle[*scope_test.Tx]"}},
		{"handle of a type not request-scoped", []fx.Option{scope.Provide(NewPrefs), fx.Invoke(func(scope.RequestHandle[*Prefs]) {})},
			[]string{"missing type: func(scope.registerItWithScopeProvideRequest) *scope_test.Prefs"}},
		{"registered in both lifetimes", []fx.Option{scope.Provide(NewPrefs), scope.ProvideRequest(NewPrefs)},
			[]string{"*scope_test.Prefs is registered twice", "scope.Provide(scope_test.NewPrefs)", "scope.ProvideRequest(scope_test.NewPrefs)"}},
		{"missing singleton", []fx.Option{scope.ProvideRequest(NewTx)},
			[]string{"scope.ProvideRequest(scope_test.NewTx): parameter 1 (*scope_test.Journal) is not provided"}},
		{"cycle", []fx.Option{scope.ProvideRequest(func(*CycleB) *CycleA { return &CycleA{} }), scope.ProvideRequest(func(*CycleA) *CycleB { return &CycleB{} })},
			[]string{"request-scoped types depend on each other in a cycle"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := startErr(t, c.opts...)
			if err == "" {
				t.Fatal("the app started")
			}
			for _, w := range c.want {
				if !strings.Contains(err, w) {
					t.Errorf("error lacks %q:\n%s", w, err)
				}
			}
		})
	}
	// A request-scoped type taken directly by an invoke is explained.
	var logs syncBuffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	defer slog.SetDefault(old)
	_ = startErr(t, j, scope.ProvideRequest(NewTx), fx.Invoke(func(*Tx) {}))
	if !strings.Contains(logs.String(), "*scope_test.Tx is request-scoped") || !strings.Contains(logs.String(), "scope.RequestHandle[*scope_test.Tx]") {
		t.Fatalf("no explanation logged: %s", logs.String())
	}
}

// TestRequestHandleOutsideRequest: without the middleware there is no request
// to end: Get says so.
func TestRequestHandleOutsideRequest(t *testing.T) {
	var h scope.RequestHandle[*Tx]
	app := fxtest.New(t, fx.NopLogger, fx.Supply(&Journal{}),
		fx.Provide(func() cache.Store { return memstore.New(memstore.Options{}) }), session.Module,
		scope.ProvideRequest(NewTx), fx.Populate(&h))
	app.RequireStart()
	defer app.RequireStop()
	if _, err := h.Get(context.Background()); !errors.Is(err, scope.ErrNoSession) {
		t.Fatalf("Get outside a request = %v", err)
	}
}

// ctxKey carries a value through the request's context.
type ctxKey struct{}

// Trace is request-scoped and takes the request's context.
type Trace struct{ ID string }

// TestRequestScopedTakesContext: a context.Context parameter of a
// request-scoped constructor is the request's context; a session-scoped one may
// not take it.
func TestRequestScopedTakesContext(t *testing.T) {
	var (
		m     *session.Manager
		trace scope.RequestHandle[*Trace]
	)
	app := fxtest.New(t, fx.NopLogger,
		fx.Provide(func() cache.Store { return memstore.New(memstore.Options{}) }), session.Module,
		scope.ProvideRequest(func(ctx context.Context) *Trace {
			id, _ := ctx.Value(ctxKey{}).(string)
			return &Trace{ID: id}
		}),
		fx.Populate(&m, &trace))
	app.RequireStart()
	defer app.RequireStop()
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr, err := trace.Get(r.Context())
		if err != nil {
			t.Error(err)
			return
		}
		io.WriteString(w, tr.ID)
	}))
	r := httptest.NewRequest("GET", "/", nil)
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, "req-42"))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Body.String() != "req-42" {
		t.Fatalf("the constructor's context carried %q, want the request's value", w.Body.String())
	}
	if err := startErr(t, scope.Provide(func(context.Context) *Prefs { return &Prefs{} })); !strings.Contains(err, "context.Context") {
		t.Fatalf("a session-scoped constructor taking a context: %q", err)
	}
}
