package reliability_test

import (
	"context"
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/filestore"
	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/cache/redisstore"
	"github.com/fxsession/fxsession/internal/testserver"
	"github.com/fxsession/fxsession/session"
)

// storeKinds are the backends the cross-stack checks run on.
var storeKinds = []string{"memory", "file", "redis"}

// memStore is a fresh memory store, closed when the test ends.
func memStore(t testing.TB) cache.Store {
	s := memstore.New(memstore.Options{Namespace: "rel"})
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// fileStore opens the file store in dir (several opens of one dir act as
// several processes sharing it), closed when the test ends.
func fileStore(t testing.TB, dir string) cache.Store {
	t.Helper()
	s, err := filestore.Open(filestore.Options{Dir: dir, Namespace: "rel"})
	if err != nil {
		t.Fatalf("filestore: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// redisStore opens a store in namespace ns on r with the client the demo and
// redisstore.Module build (redisstore.NewClient: 1 s timeouts, one retry), each
// call with its own client (as two app servers would have).
func redisStore(t testing.TB, r *testserver.Redis, ns string) cache.Store {
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

// sharedStores returns n backends of kind on one underlying store (one map,
// one folder, one Redis namespace), as n app servers would share it. Memory
// can only be shared within one process: its n backends are one store.
func sharedStores(t testing.TB, kind string, n int) []cache.Store {
	t.Helper()
	out := make([]cache.Store, n)
	switch kind {
	case "memory":
		b := memStore(t)
		for i := range out {
			out[i] = b
		}
	case "file":
		dir := t.TempDir()
		for i := range out {
			out[i] = fileStore(t, dir)
		}
	case "redis":
		ns := cachetest.Namespace("rel")
		for i := range out {
			out[i] = redisStore(t, sharedRedis(t), ns)
		}
	default:
		t.Fatalf("unknown store %q", kind)
	}
	return out
}

// ---- the session records, read and written around the session layer ----
//
// A session is one record of the manager's namespace (session.DefaultNamespace,
// a Sub of the store), keyed by its reference, with the fields "m" (metadata),
// "a" (activity), "v:<key>" (values), "b:<name>" (bags), "f" (flashes) and
// "e:<key>" (session-scoped objects, scope.Key).

// subOf walks down Sub namespaces.
func subOf(t testing.TB, s cache.Store, names ...string) cache.Store {
	t.Helper()
	for _, n := range names {
		var err error
		if s, err = s.Sub(n); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// sessionRecords is the namespace the session manager keeps its records in.
func sessionRecords(t testing.TB, s cache.Store) cache.Store {
	t.Helper()
	return subOf(t, s, session.DefaultNamespace)
}

// sessionKeys lists the keys (session references) of the stored sessions.
func sessionKeys(t testing.TB, s cache.Store) []string {
	t.Helper()
	var keys []string
	for k, err := range sessionRecords(t, s).Keys(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	return keys
}

// storedField returns the field called name of the one stored session that has
// it (there must be exactly one), and that session's reference.
func storedField(t testing.TB, s cache.Store, name string) (ref string, f cache.Field) {
	t.Helper()
	recs := sessionRecords(t, s)
	found := 0
	for _, k := range sessionKeys(t, s) {
		rec, err := recs.Read(context.Background(), k, name)
		if errors.Is(err, cache.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if g, ok := rec.Field(name); ok {
			ref, f = k, g
			found++
		}
	}
	if found != 1 {
		t.Fatalf("%d stored sessions have a field %q, want 1", found, name)
	}
	return ref, f
}

// overwriteField writes value into the field called name of the session
// record ref, through the store (one conditional-free cache.Store.Write), as
// a hostile or corrupt store would hold it.
func overwriteField(t testing.TB, s cache.Store, ref, name string, value []byte) {
	t.Helper()
	w := cache.Write{Fields: []cache.FieldWrite{cache.Set(name, value)}}
	if _, err := sessionRecords(t, s).Write(context.Background(), ref, w); err != nil {
		t.Fatalf("overwriting field %q of session %s: %v", name, ref, err)
	}
}
