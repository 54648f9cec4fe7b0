package memstore_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/memstore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// open returns Subs of one root store per test, so that every namespace of a
// test shares one underlying store; the first call's namespace opens the root.
func opener() cachetest.OpenFunc {
	return func(tb testing.TB, ns string) cache.Backend {
		s := memstore.New(memstore.Options{Namespace: ns})
		tb.Cleanup(func() { s.Close() })
		return s
	}
}

func TestConformance(t *testing.T) {
	cachetest.Run(t, "memory", opener())
}

func BenchmarkMemory(b *testing.B) {
	cachetest.Bench(b, opener())
}
