package scope_test

import (
	"context"
	"sync/atomic"
	"testing"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/fxsession/fxsession/scope"
	"github.com/fxsession/fxsession/session"
)

// Types whose constructors count their calls.

var (
	wishCalls    atomic.Int64
	scratchCalls atomic.Int64
	eagerCalls   atomic.Int64
	sliceCalls   atomic.Int64
)

// Wishlist: the constructor keeps a singleton and sets plain defaults; its
// loads start from a copy.
type Wishlist struct {
	scope.Autostart
	SKUs    []string `msgpack:"skus"`
	Note    string   `msgpack:"note"`
	Limit   int      `msgpack:"limit"` // a default the stored state may lack
	Lazy    bool     `session:"-"`
	catalog *Catalog
	label   string
}

func NewWishlist(c *Catalog) *Wishlist {
	wishCalls.Add(1)
	return &Wishlist{catalog: c, Limit: 10, label: "wishes", Lazy: true}
}

// Scratchpad's constructor makes a map the instance must own.
type Scratchpad struct {
	Lines []string `msgpack:"lines"`
	seen  map[string]bool
}

func NewScratchpad() *Scratchpad {
	scratchCalls.Add(1)
	return &Scratchpad{seen: map[string]bool{}}
}

// Eager is like Wishlist, registered with ConstructOnLoad.
type Eager struct {
	N int `msgpack:"n"`
}

func NewEager() *Eager {
	eagerCalls.Add(1)
	return &Eager{}
}

// Sliced has a state field whose default is a non-nil slice.
type Sliced struct {
	Tags []string `msgpack:"tags"`
}

func NewSliced() *Sliced {
	sliceCalls.Add(1)
	return &Sliced{Tags: []string{}}
}

// TestLoadWithoutConstructor: after the first load of a type in the process,
// loads start from a copy of what its constructor returned, where that is the
// same as calling it; each load has its own object, the container's
// singletons and the constructor's plain values. A constructor that makes
// something the object must own (a map, a non-nil slice), or registered with
// ConstructOnLoad, runs for every load.
func TestLoadWithoutConstructor(t *testing.T) {
	catalog := NewCatalog()
	var (
		mgr     *session.Manager
		wish    scope.Handle[*Wishlist]
		scratch scope.Handle[*Scratchpad]
		eager   scope.Handle[*Eager]
		sliced  scope.Handle[*Sliced]
	)
	app := fxtest.New(t,
		memorySessions(t),
		fx.Supply(catalog),
		scope.Repository[*Catalog](),
		scope.Provide(NewWishlist),
		scope.Provide(NewScratchpad),
		scope.Provide(NewEager, scope.ConstructOnLoad()),
		scope.Provide(NewSliced),
		fx.Populate(&mgr),
		fx.Invoke(func(w scope.Handle[*Wishlist], s scope.Handle[*Scratchpad], e scope.Handle[*Eager], sl scope.Handle[*Sliced]) {
			wish, scratch, eager, sliced = w, s, e, sl
		}),
	)
	app.RequireStart()
	t.Cleanup(app.RequireStop)

	ctx, s := mgr.NewContext(context.Background(), "")
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	w, _ := wish.Get(ctx)
	w.SKUs, w.Note = []string{"tea", "mug"}, "for later"
	sp, _ := scratch.Get(ctx)
	sp.Lines = []string{"one"}
	e, _ := eager.Get(ctx)
	e.N = 1
	sl, _ := sliced.Get(ctx)
	sl.Tags = append(sl.Tags, "x")
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	id, _ := s.ID(ctx)
	counts := func() [4]int64 {
		return [4]int64{wishCalls.Load(), scratchCalls.Load(), eagerCalls.Load(), sliceCalls.Load()}
	}
	before := counts()

	var first *Wishlist
	const loads = 5
	for i := range loads {
		ctx, s := mgr.NewContext(context.Background(), id)
		w, err := wish.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if w.catalog != catalog || w.label != "wishes" || !w.Lazy || w.Limit != 10 || w.Note != "for later" || len(w.SKUs) != 2 {
			t.Fatalf("load %d: %+v", i, w)
		}
		if first == nil {
			first = w
			w.label, w.Lazy = "changed", false // not stored: the next load must not see them
		} else if w == first {
			t.Fatal("two loads share an object")
		}
		sp, _ := scratch.Get(ctx)
		if sp.seen == nil || len(sp.seen) != 0 {
			t.Fatalf("scratchpad's map: %v", sp.seen)
		}
		sp.seen["mine"] = true
		if _, err := eager.Get(ctx); err != nil {
			t.Fatal(err)
		}
		if sl, _ := sliced.Get(ctx); len(sl.Tags) != 1 {
			t.Fatalf("sliced: %+v", sl)
		}
		if err := s.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	after := counts()
	got := [4]int64{after[0] - before[0], after[1] - before[1], after[2] - before[2], after[3] - before[3]}
	if want := [4]int64{1, loads, loads, loads}; got != want {
		t.Fatalf("constructor calls for %d loads (wishlist, scratchpad, eager, sliced) = %v, want %v", loads, got, want)
	}
}
