package scope

import (
	"reflect"
	"strings"
	"testing"

	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
)

type iCatalog struct{}
type iBasket struct{ N int }
type iTill struct{}

func newICatalog() *iCatalog                { return &iCatalog{} }
func newIBasket(*iCatalog, string) *iBasket { return &iBasket{} }
func newITill(*iBasket) *iTill              { return &iTill{} }

// TestAnnotatedShape pins what scope relies on in fx.Annotate's value (go.uber.org/fx
// v1.24): an unexported struct "annotated" with exported fields Target,
// ParamTags, ResultTags, As and Hooks and a Build method on its pointer that
// returns a function taking one fx.In struct.
func TestAnnotatedShape(t *testing.T) {
	ann := fx.Annotate(newIBasket, fx.ParamTags(``, `name:"x"`))
	v := reflect.ValueOf(ann)
	if v.Type().PkgPath() != "go.uber.org/fx" || v.Type().Name() != "annotated" {
		t.Fatalf("fx.Annotate returns %s.%s", v.Type().PkgPath(), v.Type().Name())
	}
	for _, f := range []string{"Target", "ParamTags", "ResultTags", "As", "Hooks"} {
		if !v.FieldByName(f).IsValid() {
			t.Fatalf("fx.Annotate's value has no field %s", f)
		}
	}
	fn, name, ok, err := unwrapAnnotated("Provide", ann)
	if err != nil || !ok || name != "fx.Annotate(scope.newIBasket)" {
		t.Fatalf("unwrapAnnotated: %v %q %v", ok, name, err)
	}
	ft := reflect.TypeOf(fn)
	if ft.NumIn() != 1 || !embeds(ft.In(0), inType) || ft.In(0).Field(2).Tag.Get("name") != "x" {
		t.Fatalf("built function: %s", ft)
	}
	if ft.NumOut() != 1 || ft.Out(0) != reflect.TypeFor[*iBasket]() {
		t.Fatalf("built function results: %s", ft)
	}
	info, err := inspectConstructor(ann, "Provide")
	if err != nil || len(info.leaves) != 2 || info.leaves[1].name != "x" || info.result != reflect.TypeFor[*iBasket]() {
		t.Fatalf("inspectConstructor: %+v %v", info, err)
	}
	// Not an annotation: left alone.
	if _, _, ok, _ := unwrapAnnotated("Provide", newIBasket); ok {
		t.Fatal("a plain function taken for an annotation")
	}
}

// TestParseGraph studies dig's DOT output (dig v1.19) for what the registry
// needs: which constructor consumes which value, and which values are provided.
func TestParseGraph(t *testing.T) {
	var graph fx.DotGraph
	app := fx.New(fx.NopLogger,
		fx.Provide(newICatalog, newITill),
		fx.Supply(fx.Annotate("dsn", fx.ResultTags(`name:"dsn"`))),
		fx.Populate(&graph),
	)
	if err := app.Err(); err != nil {
		t.Fatal(err)
	}
	g := parseGraph(string(graph))
	for _, want := range []string{"*scope.iCatalog", "*scope.iTill", "string[name=dsn]", "fx.Lifecycle"} {
		if !g.provided[want] {
			t.Errorf("%s not seen as provided in:\n%s", want, graph)
		}
	}
	if g.provided["*scope.iBasket"] {
		t.Error("*scope.iBasket seen as provided")
	}
	if c := g.consumers["*scope.iBasket"]; len(c) != 1 || c[0] != "github.com/fxsession/fxsession/scope.newITill" {
		t.Errorf("consumers of *scope.iBasket = %v in:\n%s", c, graph)
	}
	// Garbage is ignored, not fatal.
	if g := parseGraph("digraph {\n\tsubgraph cluster_x {\n\t\tlabel = oops\n\"unterminated\n}"); len(g.consumers) != 0 {
		t.Errorf("garbage parsed into %v", g.consumers)
	}
}

func TestTypeKey(t *testing.T) {
	k := typeKey(reflect.TypeFor[*iBasket]())
	if !strings.HasPrefix(k, "scope:iBasket.") || len(k) != len("scope:iBasket.")+12 {
		t.Fatalf("key %q", k)
	}
	if err := cache.ValidateKey(k); err != nil {
		t.Fatal(err)
	}
	if typeKey(reflect.TypeFor[*iTill]()) == k || typeKey(reflect.TypeFor[iBasket]()) != k {
		t.Fatal("keys are not per type, or depend on the pointer")
	}
	type généré[T any] struct{ V T }
	if err := cache.ValidateKey(typeKey(reflect.TypeFor[*généré[map[string]int]]())); err != nil {
		t.Fatalf("non-ASCII generic type name: %v", err)
	}
}
