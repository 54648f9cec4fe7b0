package scope_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/scope"
	"github.com/fxsession/fxsession/session"
)

// Till is a singleton that wrongly holds the session-scoped basket.
type Till struct{ b *ShoppingBasket }

func NewTill(b *ShoppingBasket) *Till { return &Till{b: b} }

type WithFunc struct {
	OnDone func() `msgpack:"on_done"`
	Ch     chan int
}

type Shape interface{ Area() float64 }

type Square struct{ Side float64 }

func (s Square) Area() float64 { return s.Side * s.Side }

type Circle struct{ R float64 }

func (c *Circle) Area() float64 { return 3 * c.R * c.R }

type Drawing struct {
	Shapes []Shape `msgpack:"shapes"`
}

type HoldsHandle struct {
	P scope.Handle[*Prefs]
}

type CycleA struct{ b *CycleB }
type CycleB struct{ a *CycleA }

func startErr(t *testing.T, opts ...fx.Option) string {
	t.Helper()
	base := []fx.Option{
		fx.NopLogger,
		fx.Supply(session.Config{GCInterval: session.Never}),
		fx.Provide(func() cache.Store { return memstore.New(memstore.Options{}) }),
		session.Module,
	}
	app := fx.New(append(base, opts...)...)
	if err := app.Err(); err != nil {
		return err.Error()
	}
	if err := app.Start(context.Background()); err != nil {
		return err.Error()
	}
	_ = app.Stop(context.Background())
	return ""
}

func TestStartupValidation(t *testing.T) {
	catalog := fx.Options(fx.Supply(NewCatalog()), scope.Repository[*Catalog]())
	cases := []struct {
		name string
		opts []fx.Option
		want []string
	}{
		{"captive dependency", []fx.Option{catalog, scope.Provide(NewShoppingBasket), fx.Provide(NewTill), fx.Invoke(func(*Till) {})},
			[]string{"captive dependency", "scope_test.NewTill", "*scope_test.ShoppingBasket", "scope.Handle[*scope_test.ShoppingBasket]"}},
		{"un-encodable state", []fx.Option{scope.Provide(func() *WithFunc { return &WithFunc{} })},
			[]string{"*scope_test.WithFunc field OnDone (func())", "a func cannot be stored", "field Ch (chan int)", "session:\"-\""}},
		{"interface without implementations", []fx.Option{scope.Provide(func() *Drawing { return &Drawing{} })},
			[]string{"field Shapes[] (scope_test.Shape)", "scope.Implementations[scope_test.Shape]"}},
		// fx itself refuses the second registration (its Handle marker is
		// provided twice), naming the type.
		{"registered twice", []fx.Option{scope.Provide(NewPrefs), scope.Provide(func() *Prefs { return &Prefs{} })},
			[]string{"func(scope.registerItWithScopeProvide) *scope_test.Prefs", "already provided"}},
		// Issue 11: a Handle of a type never registered fails fx start instead of
		// the first Get.
		{"handle of an unregistered type", []fx.Option{fx.Invoke(func(scope.Handle[*Counter]) {})},
			[]string{"missing type: func(scope.registerItWithScopeProvide) *scope_test.Counter"}},
		{"handle of an unregistered type in a constructor", []fx.Option{scope.Provide(NewPrefs),
			fx.Provide(func(scope.Handle[*Counter]) *Till { return &Till{} }), fx.Invoke(func(*Till) {})},
			[]string{"missing type: func(scope.registerItWithScopeProvide) *scope_test.Counter"}},
		{"handle of an unregistered type in a session-scoped type", []fx.Option{scope.Provide(func(h scope.Handle[*Counter]) *Prefs { return &Prefs{} })},
			[]string{"scope.Handle[*scope_test.Counter]", "*scope_test.Counter is not session-scoped", "scope.Provide(<constructor returning *scope_test.Counter>)"}},
		{"entity without repository", []fx.Option{fx.Supply(NewCatalog()), scope.Provide(NewShoppingBasket)},
			[]string{"field Items[].Product (*scope_test.Product)", "no repository", "scope.Entities"}},
		{"result not a pointer to a struct", []fx.Option{scope.Provide(func() Prefs { return Prefs{} })},
			[]string{"returns scope_test.Prefs", "pointer to a struct"}},
		{"result not a struct", []fx.Option{scope.Provide(func() *int { return new(int) })},
			[]string{"returns *int"}},
		{"missing singleton", []fx.Option{scope.Provide(NewCheckout), scope.Provide(NewShoppingBasket), scope.Repository[*Catalog]()},
			[]string{"scope.Provide(scope_test.NewCheckout): parameter 2 (*scope_test.Catalog) is not provided", "fx.Provide"}},
		{"cycle", []fx.Option{scope.Provide(func(b *CycleB) *CycleA { return &CycleA{b} }), scope.Provide(func(a *CycleA) *CycleB { return &CycleB{a} })},
			[]string{"cycle", "*scope_test.CycleA -> *scope_test.CycleB -> *scope_test.CycleA"}},
		{"annotated result tags", []fx.Option{scope.Provide(fx.Annotate(NewPrefs, fx.ResultTags(`name:"p"`)))},
			[]string{"fx.Annotate(scope_test.NewPrefs)", "fx.ResultTags", "fx.In parameter struct"}},
		{"not a function", []fx.Option{scope.Provide(42)}, []string{"want a constructor function"}},
		{"untagged handle field", []fx.Option{scope.Provide(func() *HoldsHandle { return &HoldsHandle{} })},
			[]string{"field P is a scope.Handle[", "Prefs]", "inject:\"\""}},
		{"bad key", []fx.Option{scope.Provide(NewPrefs, scope.Key("has space"))}, []string{"scope.Key(\"has space\")", "invalid key"}},
		{"repository without Find", []fx.Option{scope.Entities(struct{}{})}, []string{"scope.Entities", "no method Find"}},
		{"missing repository", []fx.Option{scope.Repository[*Catalog]()}, []string{"scope.Repository[*scope_test.Catalog]()", "not provided"}},
	}
	for _, c := range cases {
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
}

func TestImplementationsRegistered(t *testing.T) {
	e := newEnv(t, memory(t),
		scope.Implementations[Shape](Square{}, &Circle{}),
		scope.Provide(func() *Drawing { return &Drawing{} }))
	var h scope.Handle[*Drawing]
	populate(t, e, &h)
	ctx, s := e.mgr.NewContext(context.Background(), "")
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := h.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d.Shapes = []Shape{Square{2}, &Circle{1}}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	id, _ := s.ID(ctx)
	ctx2, _ := e.mgr.NewContext(context.Background(), id)
	d2, err := h.Get(ctx2)
	if err != nil || len(d2.Shapes) != 2 || d2.Shapes[0].Area() != 4 || d2.Shapes[1].Area() != 3 {
		t.Fatalf("shapes after load: %v %v", d2, err)
	}
}

// ---- parameters: fx.In structs, names, optional, groups, fx.Annotate ----

type Greeter struct{ Word string }

type Plugin interface{ Name() string }
type pluginA struct{}

func (pluginA) Name() string { return "a" }

type wizardParams struct {
	fx.In
	Greeter *Greeter  `name:"formal"`
	Missing io.Reader `optional:"true"`
	Plugins []Plugin  `group:"plugins"`
	Basket  *ShoppingBasket
	Logger  *slog.Logger `optional:"true"`
	Nested  struct {
		fx.In
		Catalog *Catalog
	}
}

type Wizard struct {
	Step   int `msgpack:"step"`
	p      wizardParams
	Tagged *Greeter             `inject:"name=formal"`
	Prefs  scope.Handle[*Prefs] `inject:""`
}

func NewWizard(p wizardParams) *Wizard { return &Wizard{p: p} }

type Annotated struct {
	Word string `msgpack:"word"`
}

func NewAnnotated(g *Greeter, s string) *Annotated { return &Annotated{Word: g.Word + "/" + s} }

func TestParameterObjectsAndAnnotate(t *testing.T) {
	formal := &Greeter{"good day"}
	e := newEnv(t, memory(t),
		fx.Supply(fx.Annotate(formal, fx.ResultTags(`name:"formal"`))),
		fx.Supply(fx.Annotate(&Greeter{"hi"}, fx.ResultTags(`name:"casual"`))),
		fx.Supply(fx.Annotate("suffix", fx.ResultTags(`name:"s"`))),
		fx.Provide(fx.Annotate(func() Plugin { return pluginA{} }, fx.ResultTags(`group:"plugins"`))),
		scope.Provide(NewWizard),
		scope.Provide(fx.Annotate(NewAnnotated, fx.ParamTags(`name:"casual"`, `name:"s"`))),
	)
	var w scope.Handle[*Wizard]
	var a scope.Handle[*Annotated]
	populate(t, e, &w)
	populate(t, e, &a)
	ctx, s := e.mgr.NewContext(context.Background(), "")
	wiz, err := w.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	basket, _ := e.h.basket.Get(ctx)
	switch {
	case wiz.p.Greeter != formal:
		t.Error("named parameter")
	case wiz.p.Missing != nil:
		t.Error("optional parameter")
	case len(wiz.p.Plugins) != 1 || wiz.p.Plugins[0].Name() != "a":
		t.Errorf("group parameter: %v", wiz.p.Plugins)
	case wiz.p.Basket != basket:
		t.Error("session-scoped field of an fx.In struct is not the request's instance")
	case wiz.p.Logger != e.logger || wiz.p.Nested.Catalog != e.catalog:
		t.Error("logger or nested fx.In struct")
	case wiz.Tagged != formal:
		t.Error("inject:\"name=formal\" field")
	}
	prefs, err := wiz.Prefs.Get(ctx)
	if want, _ := e.h.prefs.Get(ctx); err != nil || prefs != want {
		t.Errorf("inject-tagged Handle field: %v", err)
	}
	an, err := a.Get(ctx)
	if err != nil || an.Word != "hi/suffix" {
		t.Fatalf("fx.Annotate with ParamTags: %+v %v", an, err)
	}
	_ = s
}

// Leaf is an entity whose repository is built by an annotated constructor.
type Leaf struct{ ID, Color string }

func (l *Leaf) EntityID() string { return l.ID }

type LeafRepo struct{ prefix string }

func NewLeafRepo(g *Greeter) *LeafRepo { return &LeafRepo{prefix: g.Word} }

func (r *LeafRepo) Find(_ context.Context, id string) (*Leaf, error) {
	return &Leaf{ID: id, Color: r.prefix + " green"}, nil
}

type Tree struct {
	Leaves []*Leaf `msgpack:"leaves"`
}

func TestEntitiesFromAnnotatedConstructor(t *testing.T) {
	e := newEnv(t, memory(t),
		fx.Supply(fx.Annotate(&Greeter{"dark"}, fx.ResultTags(`name:"g"`))),
		scope.Entities(fx.Annotate(NewLeafRepo, fx.ParamTags(`name:"g"`))),
		scope.Provide(func() *Tree { return &Tree{} }),
		fx.Invoke(func(r *LeafRepo) {}), // the repository is provided to the app
	)
	var h scope.Handle[*Tree]
	populate(t, e, &h)
	ctx, s := e.mgr.NewContext(context.Background(), "")
	_ = s.Start(ctx)
	tree, _ := h.Get(ctx)
	tree.Leaves = []*Leaf{{ID: "oak", Color: "dark green"}}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if raw := e.stored("scope:Tree.")[0].Value; strings.Contains(string(raw), "green") {
		t.Fatalf("unchanged leaf stored whole: %q", raw)
	}
	id, _ := s.ID(ctx)
	ctx2, _ := e.mgr.NewContext(context.Background(), id)
	tree2, err := h.Get(ctx2)
	if err != nil || len(tree2.Leaves) != 1 || tree2.Leaves[0].Color != "dark green" {
		t.Fatalf("tree after load: %+v %v", tree2, err)
	}
	if msg := startErr(t, scope.Entities(fx.Annotate(NewLeafRepo, fx.ResultTags(`name:"r"`)))); !strings.Contains(msg, "scope.Entities(fx.Annotate(scope_test.NewLeafRepo)): fx.ResultTags") {
		t.Fatalf("annotated repository with result tags: %s", msg)
	}
}

// TestDirectInjectionExplained: an app that takes a session-scoped *T directly
// (not through a Handle) fails fx start, and the reason is said in so many words
// next to fx's "missing type".
func TestDirectInjectionExplained(t *testing.T) {
	var logs syncBuffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	defer slog.SetDefault(old)
	err := startErr(t, scope.Provide(NewPrefs), fx.Invoke(func(*Prefs) {}))
	if !strings.Contains(err, "missing type: *scope_test.Prefs") {
		t.Fatalf("start error: %q", err)
	}
	if !strings.Contains(logs.String(), "*scope_test.Prefs is session-scoped") || !strings.Contains(logs.String(), "scope.Handle[*scope_test.Prefs]") {
		t.Fatalf("no explanation logged: %q", logs.String())
	}
	// Another type's error says nothing of Prefs.
	logs.Reset()
	_ = startErr(t, scope.Provide(NewPrefs), fx.Invoke(func(*Till) {}))
	if strings.Contains(logs.String(), "Prefs") {
		t.Fatalf("explanation for an unrelated failure: %q", logs.String())
	}
}
