// Tests on a real Redis Cluster of three masters with a replica each
// (internal/testserver.StartCluster).

package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/redisstore"
	"github.com/fxsession/fxsession/internal/testserver"
)

// realClusterClient is a client of c as NewClusterClient builds it: the
// package's defaults (1 s timeouts, the slot map read every second), so that the
// failover figures are those an application gets.
func realClusterClient(t *testing.T, c *testserver.Cluster) *redis.ClusterClient {
	t.Helper()
	cc := redisstore.NewClusterClient(redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// TestCluster runs the conformance suite on a real cluster of three masters and
// three replicas, and checks the spread of one namespace's records over the
// masters (one cluster for both: neither harms it).
func TestCluster(t *testing.T) {
	c := testserver.StartCluster(t)
	cachetest.Run(t, "redis-cluster-6", opener(clusterClient(t, c.Addrs()...), redisstore.Options{}), cachetest.Options{Parallel: true})
	t.Run("Spread", func(t *testing.T) { spread(t, c) })
}

// spread: 300 records of one namespace spread over the three masters, each
// holding at least 20% of them (counted with SCAN on each master).
func spread(t *testing.T, c *testserver.Cluster) {
	cc := realClusterClient(t, c)
	ctx := t.Context()
	s := newStore(t, cc, redisstore.Options{Namespace: "spread"})
	const n = 300
	for i := range n {
		w := cache.Write{Create: true, Fields: set("meta", "m"), AddTags: []string{fmt.Sprintf("user:%d", i%40)}, Expires: time.Now().Add(time.Hour)}
		if _, err := s.Write(ctx, cacheKey(i), w); err != nil {
			t.Fatal(err)
		}
	}
	masters, err := c.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(masters) != 3 {
		t.Fatalf("%d masters", len(masters))
	}
	total := 0
	var report []string
	for _, m := range masters {
		counts := map[string]int{}
		for _, kind := range []string{"r", "t", "x"} {
			var cursor uint64
			for {
				keys, next, err := m.Client().Scan(ctx, cursor, "fxs:spread:"+kind+":{*", 1000).Result()
				if err != nil {
					t.Fatal(err)
				}
				counts[kind] += len(keys)
				if cursor = next; cursor == 0 {
					break
				}
			}
		}
		dbsize, _ := m.Client().DBSize(ctx).Result()
		total += counts["r"]
		report = append(report, fmt.Sprintf("%s: %d records (%.0f%%), %d tag sets, %d expiry shards, DBSIZE %d",
			m.Addr(), counts["r"], 100*float64(counts["r"])/n, counts["t"], counts["x"], dbsize))
		if counts["r"] < n/5 {
			t.Errorf("master %s holds %d of %d records, less than 20%%", m.Addr(), counts["r"], n)
		}
		if counts["x"] == 0 {
			t.Errorf("master %s holds no expiry shard", m.Addr())
		}
	}
	t.Logf("spread of %d records over 3 masters:", n)
	for _, line := range report {
		t.Log(line)
	}
	if total != n {
		t.Fatalf("the masters hold %d records, want %d", total, n)
	}
	if got := firstErrOrKeys(t, s.Keys(ctx)); len(got) != n {
		t.Fatalf("Keys over the cluster: %d, want %d", len(got), n)
	}
}

// load runs increments (a read and a version-checked write, as the session
// layer's Update does) on keys from several goroutines until stop, recording
// every acknowledged value per key and when each key last failed and first
// succeeded again.
type load struct {
	s    cache.Store
	keys []string

	mu       sync.Mutex
	acked    map[string][]int // the values the store acknowledged, per key
	lastOK   map[string]time.Time
	failures map[string]int
	odd      []error // failures that are neither unavailable nor a conflict
}

func newLoad(s cache.Store, keys []string) *load {
	return &load{s: s, keys: keys, acked: map[string][]int{}, lastOK: map[string]time.Time{}, failures: map[string]int{}}
}

// run increments until ctx ends, with workers goroutines.
func (l *load) run(ctx context.Context, workers int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; ctx.Err() == nil; i++ {
				k := l.keys[i%len(l.keys)]
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				n, err := increment(cctx, l.s, k)
				cancel()
				l.mu.Lock()
				switch {
				case err == nil:
					l.acked[k] = append(l.acked[k], n)
					l.lastOK[k] = time.Now()
				case errors.Is(err, cache.ErrConflict):
				case ctx.Err() != nil:
				case errors.Is(err, cache.ErrUnavailable):
					l.failures[k]++
				default:
					l.odd = append(l.odd, err)
				}
				l.mu.Unlock()
				if err != nil && !errors.Is(err, cache.ErrConflict) {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	return &wg
}

// increment is one attempt of a compare-and-set increment of field n.
func increment(ctx context.Context, s cache.Store, key string) (int, error) {
	r, err := s.Read(ctx, key, "n")
	if err != nil {
		return 0, err
	}
	f, _ := r.Field("n")
	var cur int
	_, _ = fmt.Sscan(string(f.Value), &cur)
	if _, err := s.Write(ctx, key, cache.Write{Fields: []cache.FieldWrite{cache.SetIf("n", []byte(fmt.Sprint(cur+1)), f.Version)}}); err != nil {
		return 0, err
	}
	return cur + 1, nil
}

// lost counts the acknowledged increments of key that the store no longer holds:
// values acknowledged twice (a write rolled back, and a later version-checked
// write succeeding on the older state) and values above the final one.
func (l *load) lost(t *testing.T, key string) int {
	t.Helper()
	r, err := l.s.Read(context.Background(), key, "n")
	if err != nil {
		t.Fatalf("final read of %s: %v", key, err)
	}
	f, _ := r.Field("n")
	var final int
	_, _ = fmt.Sscan(string(f.Value), &final)
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := map[int]bool{}
	lost := 0
	for _, v := range l.acked[key] {
		if seen[v] || v > final {
			lost++
		}
		seen[v] = true
	}
	return lost
}

// recordsOn returns the keys whose records the master m serves.
func recordsOn(t *testing.T, c *testserver.Cluster, ns string, keys []string, m *testserver.Redis) []string {
	t.Helper()
	var out []string
	for _, k := range keys {
		owner, err := c.MasterForKey(t.Context(), "fxs:"+ns+":r:{"+k+"}")
		if err != nil {
			t.Fatal(err)
		}
		if owner == m {
			out = append(out, k)
		}
	}
	return out
}

// TestClusterFailover: a master SIGKILLed under a load of version-checked
// writes. Its records answer ErrUnavailable (never another error) until its
// replica is promoted, and the same store and client serve them again within
// recoveryBound of the promotion; the other masters' records are served
// throughout.
func TestClusterFailover(t *testing.T) {
	c := testserver.StartCluster(t)
	cc := realClusterClient(t, c)
	const ns = "fo"
	s := newStore(t, cc, redisstore.Options{Namespace: ns})
	ctx := t.Context()
	var keys []string
	for i := range 30 {
		k := cacheKey(i)
		keys = append(keys, k)
		if _, err := s.Write(ctx, k, cache.Write{Create: true, Fields: set("n", "0")}); err != nil {
			t.Fatal(err)
		}
	}
	victim, err := c.MasterForKey(ctx, "fxs:"+ns+":r:{"+keys[0]+"}")
	if err != nil {
		t.Fatal(err)
	}
	onVictim := recordsOn(t, c, ns, keys, victim)

	l := newLoad(s, keys)
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	wg := l.run(lctx, 8)
	time.Sleep(time.Second)
	killed := time.Now()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	p, err := c.WaitForPromotion(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("master %s killed; replica %s promoted %v later", victim.Addr(), p.New.Addr(), p.Detected.Sub(killed).Round(time.Millisecond))
	// Wait until every record of the dead master was written again after the
	// promotion, or recoveryBound passed.
	deadline := p.Detected.Add(recoveryBound)
	var recovered time.Time
	for time.Now().Before(deadline.Add(time.Second)) {
		l.mu.Lock()
		all := true
		recovered = time.Time{}
		for _, k := range onVictim {
			ok := l.lastOK[k]
			if ok.Before(killed) {
				all = false
				break
			}
			if ok.After(recovered) {
				recovered = ok
			}
		}
		l.mu.Unlock()
		if all {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	stop()
	wg.Wait()
	l.mu.Lock()
	failures, odd := 0, l.odd
	for _, k := range onVictim {
		failures += l.failures[k]
	}
	l.mu.Unlock()
	if len(odd) > 0 {
		t.Errorf("%d failures were neither unavailable nor conflicts, e.g. %v", len(odd), odd[0])
	}
	if recovered.IsZero() || recovered.After(deadline) {
		t.Fatalf("the dead master's %d records were not all written again within %v of the promotion", len(onVictim), recoveryBound)
	}
	t.Logf("its %d records failed %d times with ErrUnavailable and were all written again %v after the promotion (%v after the kill)",
		len(onVictim), failures, recovered.Sub(p.Detected).Round(time.Millisecond), recovered.Sub(killed).Round(time.Millisecond))
	lost := 0
	for _, k := range keys {
		lost += l.lost(t, k)
	}
	t.Logf("acknowledged increments lost without the durability mode: %d", lost)
}

// TestClusterFailoverDurable: the durability mode against a lagging replica.
// The victim's replica is paused (SIGSTOP) under a load of version-checked
// writes, then the master is SIGKILLed and the replica resumed and promoted: the
// writes it never received are lost. In the durability mode none of them had
// been acknowledged (0 acknowledged writes lost); a store without the mode,
// under the same load on other records, acknowledged writes the failover rolled
// back. The old master, started again, rejoins as a replica, and durable writes
// succeed again.
func TestClusterFailoverDurable(t *testing.T) {
	c := testserver.StartCluster(t)
	cc := realClusterClient(t, c)
	const ns = "fod"
	durable := newStore(t, cc, redisstore.Options{Namespace: ns, MinReplicas: 1, ReplicaTimeout: replicaTimeout})
	// The records are created through a client whose ReadTimeout leaves room for ackTimeout.
	setup := newStore(t, clusterClient(t, c.Addrs()...), redisstore.Options{Namespace: ns, MinReplicas: 1, ReplicaTimeout: ackTimeout})
	plain := newStore(t, cc, redisstore.Options{Namespace: ns})
	ctx := t.Context()
	var keys []string
	for i := range 60 {
		k := cacheKey(i)
		keys = append(keys, k)
		if _, err := setup.Write(ctx, k, cache.Write{Create: true, Fields: set("n", "0")}); err != nil {
			t.Fatal(err)
		}
	}
	victim, err := c.MasterForKey(ctx, "fxs:"+ns+":r:{"+keys[0]+"}")
	if err != nil {
		t.Fatal(err)
	}
	onVictim := recordsOn(t, c, ns, keys, victim)
	half := len(onVictim) / 2
	dl, pl := newLoad(durable, onVictim[:half]), newLoad(plain, onVictim[half:])
	shards, err := c.Shards(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var replica *testserver.Redis
	for _, sh := range shards {
		if sh.Master == victim && len(sh.Replicas) == 1 {
			replica = sh.Replicas[0]
		}
	}
	if replica == nil {
		t.Fatalf("no replica of %s", victim.Addr())
	}

	lctx, stop := context.WithCancel(ctx)
	defer stop()
	dwg, pwg := dl.run(lctx, 4), pl.run(lctx, 4)
	time.Sleep(500 * time.Millisecond)
	if err := replica.Pause(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the plain store goes on acknowledging; the durable one cannot
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := replica.Resume(); err != nil {
		t.Fatal(err)
	}
	p, err := c.WaitForPromotion(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("replica %s promoted after its master was killed", p.New.Addr())
	if err := victim.Start(); err != nil { // rejoins as the new master's replica
		t.Fatal(err)
	}
	took := eventually(t, "a durable write after the old master rejoined", func() error {
		_, err := increment(ctx, durable, onVictim[0])
		if errors.Is(err, cache.ErrConflict) {
			return nil
		}
		return err
	})
	t.Logf("durable writes succeed again %v after the old master was started again", took)
	time.Sleep(300 * time.Millisecond)
	stop()
	dwg.Wait()
	pwg.Wait()

	for _, l := range []*load{dl, pl} {
		if len(l.odd) > 0 {
			t.Errorf("%d failures were neither unavailable nor conflicts, e.g. %v", len(l.odd), l.odd[0])
		}
	}
	dLost, pLost := 0, 0
	for _, k := range onVictim[:half] {
		dLost += dl.lost(t, k)
	}
	for _, k := range onVictim[half:] {
		pLost += pl.lost(t, k)
	}
	t.Logf("acknowledged increments lost: %d in the durability mode, %d without it", dLost, pLost)
	if dLost != 0 {
		t.Fatalf("the durability mode acknowledged %d writes the failover rolled back", dLost)
	}
	if pLost == 0 {
		t.Log("without the durability mode no acknowledged write was lost this time (expected some: the replica was paused)")
	}
}
