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

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/redisstore"
	"github.com/fxsession/fxsession/internal/testserver"
)

// faultOps are the operations checked against a broken server.
func faultOps(s cache.Store) map[string]func(ctx context.Context) error {
	w := cache.Write{Fields: set("f", "x"), AddTags: []string{"t"}, Expires: time.Now().Add(time.Hour)}
	return map[string]func(ctx context.Context) error{
		"Read":       func(ctx context.Context) error { _, err := s.Read(ctx, "kept"); return err },
		"ReadFields": func(ctx context.Context) error { _, err := s.Read(ctx, "kept", "f"); return err },
		"ReadMany":   func(ctx context.Context) error { _, err := s.ReadMany(ctx, []string{"kept", "j"}); return err },
		"Write":      func(ctx context.Context) error { _, err := s.Write(ctx, "kept", w); return err },
		"Delete":     func(ctx context.Context) error { _, err := s.Delete(ctx, "other"); return err },
		"DeleteMany": func(ctx context.Context) error { _, err := s.DeleteMany(ctx, []string{"o1", "o2"}); return err },
		"Keys":       func(ctx context.Context) error { return firstErr(s.Keys(ctx)) },
		"Tagged":     func(ctx context.Context) error { return firstErr(s.Tagged(ctx, "t")) },
		"Flush":      func(ctx context.Context) error { return s.Flush(ctx) },
		"CollectGarbage": func(ctx context.Context) error {
			_, err := s.CollectGarbage(ctx, cache.GCOptions{})
			return err
		},
		"Lock":   func(ctx context.Context) error { _, err := s.Lock(ctx, "l", time.Minute); return err },
		"Unlock": func(ctx context.Context) error { _, err := s.Unlock(ctx, "l", "tok"); return err },
	}
}

// firstErr drains seq and returns its first error (or one saying there was
// none).
func firstErr(seq iter.Seq2[string, error]) error {
	for _, err := range seq {
		if err != nil {
			return err
		}
	}
	return errors.New("iteration ended without an error")
}

// faultBound is how long an operation on a dead or paused server may take with
// 500 ms timeouts: about 1 s expected (a retry), generous for a loaded two-core
// machine.
const faultBound = 3 * time.Second

// expectUnavailable runs every op at once and checks each fails with
// ErrUnavailable within faultBound.
func expectUnavailable(t *testing.T, what string, ops map[string]func(context.Context) error) {
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
}

// waitBack waits for s to answer again after the server came back, without
// re-creating anything, and returns how long it took.
func waitBack(t *testing.T, s cache.Store) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		_, err := s.Read(context.Background(), "kept")
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
// store works again once the server is back. One server, and a one-node cluster
// through a cluster client. The record the test starts from and the checks of
// what survived go through another store on a client with the tests' longer
// timeouts: they must succeed, and 500 ms is too short a limit for that on a
// loaded machine.
func TestServerFaults(t *testing.T) {
	for _, mode := range []string{"single", "cluster"} {
		t.Run(mode, func(t *testing.T) {
			var (
				r  *testserver.Redis
				uo = redis.UniversalOptions{
					DialTimeout:  500 * time.Millisecond,
					ReadTimeout:  500 * time.Millisecond,
					WriteTimeout: 500 * time.Millisecond,
				}
			)
			if mode == "cluster" {
				r = startOneNodeCluster(t, testserver.WithAppendOnly())
				uo.IsClusterMode = true
			} else {
				r = testserver.StartRedis(t, testserver.WithAppendOnly())
			}
			steady := func() cache.Store {
				var c redis.UniversalClient = testClient(t, r)
				if uo.IsClusterMode {
					c = clusterClient(t, r.Addr())
				}
				return newStore(t, c, redisstore.Options{Namespace: "fault"})
			}
			uo.Addrs = []string{r.Addr()}
			var s cache.Store
			app := fxtest.New(t,
				redisstore.ModuleWith(uo, redisstore.Options{Namespace: "fault"}),
				fx.Populate(&s),
			)
			app.RequireStart()
			defer app.RequireStop()
			faults(t, r, s, steady)
		})
	}
}

// faults runs TestServerFaults on the store s of the server r; steady makes a
// store with longer timeouts on the same server and namespace (a new client
// each time, with no connection a fault broke).
func faults(t *testing.T, r *testserver.Redis, s cache.Store, steady func() cache.Store) {
	ctx := t.Context()
	v, err := steady().Write(ctx, "kept", cache.Write{Create: true, Fields: set("f", "v"), AddTags: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	ops := faultOps(s)

	// Stopped: connections refused.
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	expectUnavailable(t, "stopped", ops)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped: store usable again %v after the restart", waitBack(t, s))

	// Killed: the open connections break mid-stream.
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	expectUnavailable(t, "killed", ops)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed: store usable again %v after the restart", waitBack(t, s))

	// Paused: connections accepted, nothing answered.
	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
	expectUnavailable(t, "paused", ops)
	// A context deadline shorter than the timeouts wins.
	dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	start := time.Now()
	_, err = s.Read(dctx, "kept")
	took := time.Since(start)
	cancel()
	if !errors.Is(err, cache.ErrUnavailable) || took > time.Second {
		t.Errorf("Read with a 100 ms deadline on a paused server: %v after %v", err, took)
	}
	t.Logf("paused: Read with a 100 ms deadline failed after %v: %v", took, err)
	if err := r.Resume(); err != nil {
		t.Fatal(err)
	}
	t.Logf("paused: store usable again %v after the resume", waitBack(t, s))

	// The data survived (append-only file) and the server works as before; the
	// writes attempted during the faults never went through (the server was
	// away), so the version is the first one.
	s = steady()
	rec, err := s.Read(ctx, "kept")
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := rec.Field("f"); rec.Version != v || string(f.Value) != "v" {
		t.Fatalf("after the faults: %q at %d; want v at %d", f.Value, rec.Version, v)
	}
	if _, err := s.Write(ctx, "kept", cache.Write{Fields: []cache.FieldWrite{cache.SetIf("f", []byte("w"), v)}}); err != nil {
		t.Fatal(err)
	}
	tok, err := s.Lock(ctx, "after", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Unlock(ctx, "after", tok); err != nil || !ok {
		t.Fatalf("Unlock = %v, %v", ok, err)
	}
	if got := firstErrOrKeys(t, s.Tagged(ctx, "t")); !slices.Equal(got, []string{"kept"}) {
		t.Fatalf("Tagged after the faults: %q", got)
	}
}

func firstErrOrKeys(t *testing.T, seq iter.Seq2[string, error]) []string {
	t.Helper()
	var out []string
	for k, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, k)
	}
	return out
}

// TestModule starts an fx app with each module and uses the store.
func TestModule(t *testing.T) {
	r := testserver.StartRedis(t)
	c := startOneNodeCluster(t)
	for name, mod := range map[string]fx.Option{
		"Module":        redisstore.Module(r.URL(), redisstore.Options{Namespace: "mod"}),
		"ModuleCluster": redisstore.Module("redis://"+c.Addr()+"?addr="+c.Addr(), redisstore.Options{Namespace: "modc"}),
		"ModuleWith":    redisstore.ModuleWith(redis.UniversalOptions{Addrs: []string{r.Addr()}}, redisstore.Options{Namespace: "modw"}),
	} {
		t.Run(name, func(t *testing.T) {
			var s cache.Store
			app := fxtest.New(t, mod, fx.Populate(&s))
			app.RequireStart()
			if _, err := s.Write(t.Context(), "k", cache.Write{Create: true, Fields: set("f", "v")}); err != nil {
				t.Fatal(err)
			}
			rec, err := s.Read(t.Context(), "k")
			if f, _ := rec.Field("f"); err != nil || string(f.Value) != "v" {
				t.Fatalf("Read = %q, %v", f.Value, err)
			}
			app.RequireStop()
			if _, err := s.Read(t.Context(), "k"); !errors.Is(err, cache.ErrClosed) {
				t.Fatalf("Read after stop: %v, want ErrClosed", err)
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
		"Module":        redisstore.Module(url, redisstore.Options{}),
		"ModuleCluster": redisstore.Module("redis://"+r.Addr()+"?addr="+r.Addr(), redisstore.Options{}),
		"ModuleWith":    redisstore.ModuleWith(redis.UniversalOptions{Addrs: []string{r.Addr()}}, redisstore.Options{}),
		"BadURL":        redisstore.Module("http://nope", redisstore.Options{}),
		"BadOptions":    redisstore.Module(url, redisstore.Options{BatchSize: -1}),
	} {
		t.Run(name, func(t *testing.T) {
			app := fx.New(mod, fx.Invoke(func(cache.Store) {}), fx.NopLogger)
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
			if !strings.HasPrefix(name, "Bad") && !errors.Is(err, cache.ErrUnavailable) {
				t.Fatalf("start error %v, want one matching ErrUnavailable", err)
			}
			if took > 3*time.Second {
				t.Fatalf("start took %v to fail", took)
			}
		})
	}
}
