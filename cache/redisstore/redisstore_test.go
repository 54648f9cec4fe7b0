package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/redisstore"
	"github.com/fxsession/fxsession/internal/testserver"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testClient is a client on r as NewClient (and so ModuleWith) builds it, with
// test-friendly 2 s timeouts, closed at cleanup.
func testClient(tb testing.TB, r *testserver.Redis) *redis.Client {
	tb.Helper()
	c := redisstore.NewClient(redis.UniversalOptions{
		Addrs:        []string{r.Addr()},
		DialTimeout:  2 * time.Second,
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
	}).(*redis.Client)
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// opener returns a cachetest.OpenFunc on client.
func opener(client redis.UniversalClient) cachetest.OpenFunc {
	return func(tb testing.TB, ns string) cache.Backend {
		s, err := redisstore.New(client, redisstore.Options{Namespace: ns})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = s.Close() })
		return s
	}
}

func TestConformance(t *testing.T) {
	r := testserver.StartRedis(t)
	cachetest.RunWith(t, "redis", opener(testClient(t, r)), cachetest.Options{NativeExpiry: true})
}

// TestConformanceCluster runs the suite on a one-node Redis Cluster holding all
// 16384 slots: Redis refuses cross-slot commands and scripts there exactly as on
// a big cluster, so this proves the hash tagging.
func TestConformanceCluster(t *testing.T) {
	r := startCluster(t)
	cc := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                 []string{r.Addr()},
		DialTimeout:           2 * time.Second,
		ReadTimeout:           2 * time.Second,
		WriteTimeout:          2 * time.Second,
		ContextTimeoutEnabled: true,
	})
	t.Cleanup(func() { _ = cc.Close() })
	cachetest.RunWith(t, "redis-cluster", opener(cc), cachetest.Options{NativeExpiry: true})
}

func startCluster(t *testing.T) *testserver.Redis {
	t.Helper()
	r := testserver.StartRedis(t, testserver.WithRedisArgs(
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
	))
	ctx := t.Context()
	c := r.Client()
	if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := c.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not ok after 10 s: %v\n%s", err, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newStore(t *testing.T, c redis.UniversalClient, ns string) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(c, redisstore.Options{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// res carries a (value, error) pair to must: try(f()).must(t).
type res[T any] struct {
	v   T
	err error
}

func try[T any](v T, err error) res[T] { return res[T]{v, err} }

func (r res[T]) must(t *testing.T) T {
	t.Helper()
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.v
}

func members(t *testing.T, c *redis.Client, key string) []string {
	t.Helper()
	m := try(c.SMembers(t.Context(), key).Result()).must(t)
	slices.Sort(m)
	return m
}

// TestLayout checks what lands in Redis: hash-tagged keys, tag sets that follow
// their entries, tag-set lifetimes that cover their entries'.
func TestLayout(t *testing.T) {
	r := testserver.StartRedis(t)
	c := testClient(t, r)
	ctx := t.Context()
	s := newStore(t, c, "lay")

	try(s.Set(ctx, cache.Item{Key: "a", Value: []byte("1"), Tags: []string{"t1", "t2", "t1"}, TTL: time.Hour})).must(t)
	try(s.Set(ctx, cache.Item{Key: "b", Value: []byte("2"), Tags: []string{"t1"}, TTL: time.Minute})).must(t)
	try(s.Lock(ctx, "l", time.Minute)).must(t)

	keys := try(c.Keys(ctx, "*").Result()).must(t)
	slices.Sort(keys)
	want := []string{"fxs:{lay}:e:a", "fxs:{lay}:e:b", "fxs:{lay}:l:l", "fxs:{lay}:t:t1", "fxs:{lay}:t:t2"}
	if !slices.Equal(keys, want) {
		t.Fatalf("keys in Redis %q, want %q", keys, want)
	}
	if got := members(t, c, "fxs:{lay}:t:t1"); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("t1 members %q", got)
	}
	// A duplicated tag is stored once.
	if e := try(s.Get(ctx, "a")).must(t); !slices.Equal(e.Tags, []string{"t1", "t2"}) {
		t.Fatalf("tags of a: %q", e.Tags)
	}
	// The set lives as long as its longest-lived entry.
	if ttl := try(c.PTTL(ctx, "fxs:{lay}:t:t1").Result()).must(t); ttl < 59*time.Minute {
		t.Fatalf("t1 lives %v, shorter than entry a (1 h)", ttl)
	}
	// An entry that never expires makes its sets permanent.
	try(s.Set(ctx, cache.Item{Key: "c", Value: []byte("3"), Tags: []string{"t2"}})).must(t)
	if ttl := try(c.PTTL(ctx, "fxs:{lay}:t:t2").Result()).must(t); ttl != -1 {
		t.Fatalf("t2 with a permanent member has TTL %v, want none", ttl)
	}

	// Retagging and deleting keep the sets in step.
	try(s.Set(ctx, cache.Item{Key: "a", Value: []byte("1"), Tags: []string{"t3"}})).must(t)
	if got := members(t, c, "fxs:{lay}:t:t1"); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("t1 after retagging a: %q", got)
	}
	if got := members(t, c, "fxs:{lay}:t:t2"); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("t2 after retagging a: %q", got)
	}
	try(s.Delete(ctx, "b")).must(t)
	if n := try(c.Exists(ctx, "fxs:{lay}:t:t1").Result()).must(t); n != 0 {
		t.Fatal("t1 still exists after its last entry went")
	}
	try(s.FlushByTag(ctx, "t3")).must(t)
	if n := try(c.Exists(ctx, "fxs:{lay}:e:a", "fxs:{lay}:t:t3").Result()).must(t); n != 0 {
		t.Fatal("FlushByTag left the entry or its set behind")
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Flush keeps the locks.
	keys = try(c.Keys(ctx, "*").Result()).must(t)
	if !slices.Equal(keys, []string{"fxs:{lay}:l:l"}) {
		t.Fatalf("after Flush, Redis holds %q; want only the lock", keys)
	}
}

// TestCollectGarbagePrunesTagSets: members of expired entries linger in a set
// kept alive by a permanent entry; Tagged hides them, CollectGarbage removes them
// and still returns 0.
func TestCollectGarbagePrunesTagSets(t *testing.T) {
	r := testserver.StartRedis(t)
	c := testClient(t, r)
	ctx := t.Context()
	s := newStore(t, c, "gc")
	try(s.Set(ctx, cache.Item{Key: "forever", Value: []byte("f"), Tags: []string{"user"}})).must(t)
	var items []cache.Item
	for i := range 2500 { // more than one batch
		items = append(items, cache.Item{Key: fmt.Sprintf("s%04d", i), Value: []byte("s"), Tags: []string{"user"}, TTL: 50 * time.Millisecond})
	}
	if err := s.SetMany(ctx, items); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if n := try(c.SCard(ctx, "fxs:{gc}:t:user").Result()).must(t); n != 2501 {
		t.Fatalf("tag set holds %d members before garbage collection, want 2501 (stale ones linger)", n)
	}
	var tagged []string
	for k, err := range s.Tagged(ctx, "user") {
		if err != nil {
			t.Fatal(err)
		}
		tagged = append(tagged, k)
	}
	if !slices.Equal(tagged, []string{"forever"}) {
		t.Fatalf("Tagged = %d keys, want only forever", len(tagged))
	}
	if n := try(s.CollectGarbage(ctx)).must(t); n != 0 {
		t.Fatalf("CollectGarbage = %d, want 0 (native expiry)", n)
	}
	if got := members(t, c, "fxs:{gc}:t:user"); !slices.Equal(got, []string{"forever"}) {
		t.Fatalf("tag set after garbage collection: %d members", len(got))
	}
}

// TestScriptCacheFlushed: after SCRIPT FLUSH (or a restart) the scripts are sent
// again, in plain calls and in pipelines.
func TestScriptCacheFlushed(t *testing.T) {
	r := testserver.StartRedis(t)
	c := testClient(t, r)
	ctx := t.Context()
	s := newStore(t, c, "sf")
	v := try(s.Set(ctx, cache.Item{Key: "k", Value: []byte("1"), Tags: []string{"t"}})).must(t)
	for _, step := range []func() error{
		func() error {
			_, err := s.Set(ctx, cache.Item{Key: "k", Value: []byte("2"), Tags: []string{"t"}})
			return err
		},
		func() error {
			return s.SetMany(ctx, []cache.Item{{Key: "m1", Value: []byte("x")}, {Key: "m2", Value: []byte("y"), Tags: []string{"t"}}})
		},
		func() error {
			e, err := s.Get(ctx, "k")
			if err != nil {
				return err
			}
			v, err = s.CompareAndSet(ctx, cache.Item{Key: "k", Value: []byte("3")}, e.Version)
			return err
		},
		func() error { _, err := s.Delete(ctx, "m1"); return err },
		func() error { _, err := s.FlushByTag(ctx, "t"); return err },
		func() error { _, err := s.CollectGarbage(ctx); return err },
		func() error {
			tok, err := s.Lock(ctx, "l", time.Minute)
			if err != nil {
				return err
			}
			c.ScriptFlush(ctx)
			ok, err := s.Unlock(ctx, "l", tok)
			if err == nil && !ok {
				err = errors.New("Unlock reported false")
			}
			return err
		},
	} {
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := step(); err != nil {
			t.Fatalf("after SCRIPT FLUSH: %v", err)
		}
	}
	if e := try(s.Get(ctx, "k")).must(t); e.Version != v || string(e.Value) != "3" {
		t.Fatalf("k = %q at %d", e.Value, e.Version)
	}
}

// TestForeignKey: a key of another type under the namespace is reported as an
// error of its own, not as an unavailable store.
func TestForeignKey(t *testing.T) {
	r := testserver.StartRedis(t)
	c := testClient(t, r)
	ctx := t.Context()
	s := newStore(t, c, "fk")
	if err := c.Set(ctx, "fxs:{fk}:e:str", "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := s.Get(ctx, "str")
	if err == nil || errors.Is(err, cache.ErrUnavailable) || errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Get of a foreign string key: %v, want a WRONGTYPE error", err)
	}
	if !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("Get of a foreign string key: %v", err)
	}
	// All skips it (SCAN by type).
	for e, err := range s.All(ctx) {
		t.Fatalf("All yielded %v, %v", e.Key, err)
	}
}

func TestNewOptions(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	if _, err := redisstore.New(nil, redisstore.Options{}); err == nil {
		t.Fatal("New(nil) succeeded")
	}
	if _, err := redisstore.New(c, redisstore.Options{Namespace: "a{b}"}); !errors.Is(err, cache.ErrInvalidKey) {
		t.Fatalf("New with namespace a{b}: %v, want ErrInvalidKey", err)
	}
	s, err := redisstore.New(c, redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Namespace() != redisstore.DefaultNamespace {
		t.Fatalf("default namespace %q", s.Namespace())
	}
	small, err := redisstore.New(c, redisstore.Options{MaxValueSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := small.Set(t.Context(), cache.Item{Key: "k", Value: []byte("12345")}); !errors.Is(err, cache.ErrValueTooLarge) {
		t.Fatalf("5 bytes over a limit of 4: %v", err)
	}
	if _, err := small.Lock(t.Context(), "l", 0); err == nil {
		t.Fatal("Lock with lifetime 0 succeeded")
	}
}

// TestModule starts an fx app with each module and uses the backend.
func TestModule(t *testing.T) {
	r := testserver.StartRedis(t)
	for name, mod := range map[string]fx.Option{
		"Module":     redisstore.Module(r.URL(), redisstore.Options{Namespace: "mod"}),
		"ModuleWith": redisstore.ModuleWith(redis.UniversalOptions{Addrs: []string{r.Addr()}}, redisstore.Options{Namespace: "modw"}),
	} {
		t.Run(name, func(t *testing.T) {
			var b cache.Backend
			app := fxtest.New(t, mod, fx.Populate(&b))
			app.RequireStart()
			if _, err := b.Set(t.Context(), cache.Item{Key: "k", Value: []byte("v")}); err != nil {
				t.Fatal(err)
			}
			if e, err := b.Get(t.Context(), "k"); err != nil || string(e.Value) != "v" {
				t.Fatalf("Get = %q, %v", e.Value, err)
			}
			app.RequireStop()
			if _, err := b.Get(t.Context(), "k"); !errors.Is(err, cache.ErrClosed) {
				t.Fatalf("Get after stop: %v, want ErrClosed", err)
			}
		})
	}
}

// TestModuleUnreachable: a server that is not there fails fx start promptly
// with a wrapped error, and leaves nothing running.
func TestModuleUnreachable(t *testing.T) {
	r := testserver.StartRedis(t)
	url := r.URL()
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]fx.Option{
		"Module":     redisstore.Module(url, redisstore.Options{}),
		"ModuleWith": redisstore.ModuleWith(redis.UniversalOptions{Addrs: []string{r.Addr()}}, redisstore.Options{}),
		"BadURL":     redisstore.Module("http://nope", redisstore.Options{}),
	} {
		t.Run(name, func(t *testing.T) {
			app := fx.New(mod, fx.Invoke(func(cache.Backend) {}), fx.NopLogger)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			start := time.Now()
			err := app.Start(ctx)
			took := time.Since(start)
			if err == nil {
				_ = app.Stop(ctx)
				t.Fatal("app started without Redis")
			}
			t.Logf("start failed after %v: %v", took, err)
			if name != "BadURL" && !errors.Is(err, cache.ErrUnavailable) {
				t.Fatalf("start error %v, want one matching ErrUnavailable", err)
			}
			if took > 3*time.Second {
				t.Fatalf("start took %v to fail", took)
			}
		})
	}
}

// faultOps are the operations checked against a broken server.
func faultOps(b cache.Backend) map[string]func(ctx context.Context) error {
	item := cache.Item{Key: "k", Value: []byte("x"), Tags: []string{"t"}}
	return map[string]func(ctx context.Context) error{
		"Get":           func(ctx context.Context) error { _, err := b.Get(ctx, "k"); return err },
		"GetMany":       func(ctx context.Context) error { _, err := b.GetMany(ctx, []string{"k", "j"}); return err },
		"Set":           func(ctx context.Context) error { _, err := b.Set(ctx, item); return err },
		"SetMany":       func(ctx context.Context) error { return b.SetMany(ctx, []cache.Item{item, item}) },
		"CompareAndSet": func(ctx context.Context) error { _, err := b.CompareAndSet(ctx, item, 1); return err },
		"Delete":        func(ctx context.Context) error { _, err := b.Delete(ctx, "k"); return err },
		"Has":           func(ctx context.Context) error { _, err := b.Has(ctx, "k"); return err },
		"Flush":         func(ctx context.Context) error { return b.Flush(ctx) },
		"FlushByTag":    func(ctx context.Context) error { _, err := b.FlushByTag(ctx, "t"); return err },
		"Tagged":        func(ctx context.Context) error { return firstErr(b.Tagged(ctx, "t")) },
		"All":           func(ctx context.Context) error { return firstErr2(b.All(ctx)) },
		"CollectGarbage": func(ctx context.Context) error {
			_, err := b.CollectGarbage(ctx)
			return err
		},
		"Lock":   func(ctx context.Context) error { _, err := b.Lock(ctx, "l", time.Minute); return err },
		"Unlock": func(ctx context.Context) error { _, err := b.Unlock(ctx, "l", "tok"); return err },
	}
}

func firstErr(seq iter.Seq2[string, error]) error {
	for _, err := range seq {
		if err != nil {
			return err
		}
	}
	return errors.New("iteration ended without an error")
}

func firstErr2(seq iter.Seq2[cache.Entry, error]) error {
	for _, err := range seq {
		if err != nil {
			return err
		}
	}
	return errors.New("iteration ended without an error")
}

// faultBound is how long an operation on a dead or paused server may take with
// 500 ms timeouts and one retry: about 1 s expected, generous for a loaded
// two-core machine.
const faultBound = 3 * time.Second

// expectUnavailable runs every op at once and checks each fails with
// ErrUnavailable within faultBound; it returns the slowest time.
func expectUnavailable(t *testing.T, what string, ops map[string]func(context.Context) error) time.Duration {
	t.Helper()
	type result struct {
		name string
		took time.Duration
		err  error
	}
	results := make(chan result, len(ops))
	var wg sync.WaitGroup
	for name, op := range ops {
		wg.Go(func() {
			// The context is not what bounds the call: the client's timeouts are.
			start := time.Now()
			err := op(context.Background())
			results <- result{name, time.Since(start), err}
		})
	}
	wg.Wait()
	close(results)
	var slowest time.Duration
	var times []string
	for r := range results {
		times = append(times, fmt.Sprintf("%s %v", r.name, r.took.Round(time.Millisecond)))
		if !errors.Is(r.err, cache.ErrUnavailable) {
			t.Errorf("%s, %s: error %v, want one matching cache.ErrUnavailable", what, r.name, r.err)
		}
		if r.took > faultBound {
			t.Errorf("%s, %s took %v, more than %v", what, r.name, r.took, faultBound)
		}
		slowest = max(slowest, r.took)
	}
	slices.Sort(times)
	t.Logf("%s: %d operations failed with ErrUnavailable, slowest after %v (%s)", what, len(ops), slowest, strings.Join(times, ", "))
	return slowest
}

// waitBack waits for b to answer again after the server came back.
func waitBack(t *testing.T, b cache.Backend) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		_, err := b.Get(context.Background(), "kept")
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("store not usable 10 s after the server came back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServerFaults: the server stopped, killed or paused under a running store
// (built by ModuleWith, with 500 ms timeouts) gives prompt ErrUnavailable
// errors, a context deadline bounds a call to a paused server, and the same
// store works again once the server is back.
func TestServerFaults(t *testing.T) {
	r := testserver.StartRedis(t, testserver.WithAppendOnly())
	var b cache.Backend
	app := fxtest.New(t,
		redisstore.ModuleWith(redis.UniversalOptions{
			Addrs:        []string{r.Addr()},
			DialTimeout:  500 * time.Millisecond,
			ReadTimeout:  500 * time.Millisecond,
			WriteTimeout: 500 * time.Millisecond,
		}, redisstore.Options{Namespace: "fault"}),
		fx.Populate(&b),
	)
	app.RequireStart()
	defer app.RequireStop()
	ctx := t.Context()
	v, err := b.Set(ctx, cache.Item{Key: "kept", Value: []byte("v"), Tags: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	ops := faultOps(b)

	// Stopped: connections refused.
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	expectUnavailable(t, "stopped", ops)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped: store usable again %v after the restart", waitBack(t, b))

	// Killed: the open connections break mid-stream.
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	expectUnavailable(t, "killed", ops)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed: store usable again %v after the restart", waitBack(t, b))

	// Paused: connections accepted, nothing answered.
	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
	expectUnavailable(t, "paused", ops)
	// A context deadline shorter than the timeouts wins.
	dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	start := time.Now()
	_, err = b.Get(dctx, "kept")
	took := time.Since(start)
	cancel()
	if !errors.Is(err, cache.ErrUnavailable) || took > time.Second {
		t.Errorf("Get with a 100 ms deadline on a paused server: %v after %v", err, took)
	}
	t.Logf("paused: Get with a 100 ms deadline failed after %v: %v", took, err)
	if err := r.Resume(); err != nil {
		t.Fatal(err)
	}
	t.Logf("paused: store usable again %v after the resume", waitBack(t, b))

	// The data survived (append-only file) and the store works as before.
	e, err := b.Get(ctx, "kept")
	if err != nil || e.Version != v || string(e.Value) != "v" {
		t.Fatalf("after the faults: %q at %d, %v; want v at %d", e.Value, e.Version, err, v)
	}
	if _, err := b.CompareAndSet(ctx, cache.Item{Key: "kept", Value: []byte("w")}, v); err != nil {
		t.Fatal(err)
	}
	tok, err := b.Lock(ctx, "after", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Unlock(ctx, "after", tok); err != nil || !ok {
		t.Fatalf("Unlock = %v, %v", ok, err)
	}
}

func BenchmarkRedis(b *testing.B) {
	r := testserver.StartRedis(b)
	cachetest.Bench(b, opener(testClient(b, r)))
}
