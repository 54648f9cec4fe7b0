package reliability_test

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/filestore"
	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/cache/redisstore"
	"github.com/fxsession/fxsession/internal/testserver"
)

// storeKinds are the backends the cross-stack checks run on.
var storeKinds = []string{"memory", "file", "redis"}

// memBackend is a fresh memory store, closed when the test ends.
func memBackend(t testing.TB) cache.Backend {
	s := memstore.New(memstore.Options{Namespace: "rel", JanitorInterval: -1})
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// fileBackend opens the file store in dir (several opens of one dir act as
// several processes sharing it), closed when the test ends.
func fileBackend(t testing.TB, dir string) cache.Backend {
	t.Helper()
	s, err := filestore.Open(filestore.Options{Dir: dir, Namespace: "rel"})
	if err != nil {
		t.Fatalf("filestore: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// redisBackend opens a store in namespace ns on r with the client the demo and
// redisstore.Module build (redisstore.NewClient: 1 s timeouts, one retry), each
// call with its own client (as two app servers would have).
func redisBackend(t testing.TB, r *testserver.Redis, ns string) cache.Backend {
	t.Helper()
	client := redisstore.NewClient(redis.UniversalOptions{Addrs: []string{r.Addr()}})
	t.Cleanup(func() { _ = client.Close() })
	s, err := redisstore.New(client, redisstore.Options{Namespace: ns})
	if err != nil {
		t.Fatalf("redisstore: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// sharedBackends returns n backends of kind on one underlying store (one map,
// one folder, one Redis namespace), as n app servers would share it. Memory
// can only be shared within one process: its n backends are one store.
func sharedBackends(t testing.TB, kind string, n int) []cache.Backend {
	t.Helper()
	out := make([]cache.Backend, n)
	switch kind {
	case "memory":
		b := memBackend(t)
		for i := range out {
			out[i] = b
		}
	case "file":
		dir := t.TempDir()
		for i := range out {
			out[i] = fileBackend(t, dir)
		}
	case "redis":
		ns := cachetest.Namespace("rel")
		for i := range out {
			out[i] = redisBackend(t, sharedRedis(t), ns)
		}
	default:
		t.Fatalf("unknown store %q", kind)
	}
	return out
}
