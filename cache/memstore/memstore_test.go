package memstore_test

import (
	"testing"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/memstore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// opener opens every namespace of one test on one shared memory, as processes
// share a server.
func opener(t *testing.T) cachetest.OpenFunc {
	world := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = world.Close() })
	return func(tb testing.TB, ns string) cache.Store {
		s, err := world.Namespaced(ns)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = s.Close() })
		return s
	}
}

func TestConformance(t *testing.T) {
	cachetest.Run(t, "memory", opener(t), cachetest.Options{Parallel: true})
}

func BenchmarkStore(b *testing.B) {
	world := memstore.New(memstore.Options{})
	cachetest.Bench(b, func(tb testing.TB, ns string) cache.Store {
		s, err := world.Namespaced(ns)
		if err != nil {
			tb.Fatal(err)
		}
		return s
	})
}

func TestModule(t *testing.T) {
	var st cache.Store
	app := fxtest.New(t, memstore.Module(memstore.Options{Namespace: "app"}), fx.Populate(&st))
	app.RequireStart()
	if st.Namespace() != "app" {
		t.Fatalf("namespace %q", st.Namespace())
	}
	app.RequireStop()
	if _, err := st.Read(t.Context(), "k"); err == nil {
		t.Fatal("store usable after the app stopped")
	}
	bad := fx.New(fx.NopLogger, memstore.Module(memstore.Options{Namespace: "a b"}), fx.Populate(&st))
	if bad.Err() == nil {
		t.Fatal("an invalid namespace did not fail fx start")
	}
}
