package memstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/memstore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// opener opens one store per namespace: memory stores share nothing, so two
// of them are trivially isolated; the suite's Sub checks cover namespaces that
// share one store.
func opener(opts memstore.Options) cachetest.OpenFunc {
	return func(tb testing.TB, ns string) cache.Backend {
		o := opts
		o.Namespace = ns
		s := memstore.New(o)
		tb.Cleanup(func() { s.Close() })
		return s
	}
}

func TestConformance(t *testing.T) {
	cachetest.Run(t, "memory", opener(memstore.Options{}))
}

func TestJanitorDisabled(t *testing.T) {
	s := memstore.New(memstore.Options{JanitorInterval: -1})
	if _, err := s.Set(t.Context(), cache.Item{Key: "k", Value: []byte("x"), TTL: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if n, err := s.CollectGarbage(t.Context()); err != nil || n != 1 {
		t.Fatalf("CollectGarbage = %d, %v; want 1", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestMaxValueSize(t *testing.T) {
	s := memstore.New(memstore.Options{MaxValueSize: 10})
	defer s.Close()
	if _, err := s.Set(t.Context(), cache.Item{Key: "k", Value: make([]byte, 11)}); !errors.Is(err, cache.ErrValueTooLarge) {
		t.Fatalf("Set of 11 bytes with a 10-byte limit: %v", err)
	}
	sub, _ := s.Sub("s")
	if _, err := sub.Set(t.Context(), cache.Item{Key: "k", Value: make([]byte, 11)}); !errors.Is(err, cache.ErrValueTooLarge) {
		t.Fatalf("Sub does not inherit the limit: %v", err)
	}
}

func TestModule(t *testing.T) {
	var b cache.Backend
	app := fxtest.New(t,
		memstore.Module(memstore.Options{Namespace: "app", JanitorInterval: 10 * time.Millisecond}),
		fx.Populate(&b),
	)
	app.RequireStart()
	if b.Namespace() != "app" {
		t.Fatalf("namespace %q", b.Namespace())
	}
	if _, err := b.Set(t.Context(), cache.Item{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	app.RequireStop()
	if _, err := b.Get(context.Background(), "k"); !errors.Is(err, cache.ErrClosed) {
		t.Fatalf("Get after the app stopped: %v, want ErrClosed", err)
	}
	// goleak (TestMain) proves the janitor stopped with the app.
}

func TestModuleNotStarted(t *testing.T) {
	// Constructed but never started: no janitor goroutine to leak.
	var b cache.Backend
	app := fxtest.New(t, memstore.Module(memstore.Options{}), fx.Populate(&b))
	if err := app.Err(); err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t)
}

func TestModuleBadNamespace(t *testing.T) {
	app := fx.New(fx.NopLogger, memstore.Module(memstore.Options{Namespace: "a b"}), fx.Invoke(func(cache.Backend) {}))
	if !errors.Is(app.Err(), cache.ErrInvalidKey) {
		t.Fatalf("bad namespace: %v, want ErrInvalidKey", app.Err())
	}
}

func BenchmarkMemory(b *testing.B) {
	cachetest.Bench(b, opener(memstore.Options{}))
}
