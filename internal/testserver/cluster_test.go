package testserver

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestClusterFailover starts a cluster, checks its layout and the key helpers,
// kills the master of a key and checks that its replica takes over, that one
// cluster client (never recreated) serves the key again with the data written
// before the kill, and that the old master comes back as a replica.
func TestClusterFailover(t *testing.T) {
	verifyNoLeak(t)
	start := time.Now()
	c := StartCluster(t)
	t.Logf("cluster ready after %v", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	if len(c.Nodes()) != 6 || len(c.Addrs()) != 6 {
		t.Fatalf("%d nodes", len(c.Nodes()))
	}
	shards, err := c.Shards(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[*Redis]bool{}
	slots := 0
	for _, s := range shards {
		if len(s.Replicas) != 1 || s.Master == nil || s.Replicas[0] == nil || seen[s.Master] || seen[s.Replicas[0]] {
			t.Fatalf("shard %+v", s)
		}
		seen[s.Master], seen[s.Replicas[0]] = true, true
		for _, r := range s.Slots {
			slots += r.End - r.Start + 1
		}
		if c.NodeID(s.Master) == "" || c.Node(s.Master.Addr()) != s.Master {
			t.Fatalf("no ID or address for %s", s.Master.Addr())
		}
	}
	if len(shards) != 3 || len(seen) != 6 || slots != 16384 {
		t.Fatalf("%d shards over %d nodes serving %d slots", len(shards), len(seen), slots)
	}
	masters, err := c.Masters(ctx)
	if err != nil || len(masters) != 3 {
		t.Fatalf("Masters = %v, %v", masters, err)
	}

	// The shared client writes keys on every master; MasterForKey agrees with
	// go-redis' own routing.
	cl := c.Client()
	for i := range 30 {
		key := fmt.Sprintf("key-%d", i)
		if err := cl.Set(ctx, key, i, 0).Err(); err != nil {
			t.Fatal(err)
		}
		m, err := c.MasterForKey(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		gm, err := cl.MasterForKey(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if gm.Options().Addr != m.Addr() {
			t.Fatalf("%s: MasterForKey %s, go-redis routes to %s", key, m.Addr(), gm.Options().Addr)
		}
	}
	for _, m := range masters {
		if n, err := m.Client().DBSize(ctx).Result(); err != nil || n == 0 {
			t.Fatalf("master %s holds %d keys, %v", m.Addr(), n, err)
		}
	}
	// A client from the universal options is a cluster client too.
	uc := redis.NewUniversalClient(c.UniversalOptions())
	defer uc.Close()
	if _, ok := uc.(*redis.ClusterClient); !ok {
		t.Fatalf("NewUniversalClient gave a %T", uc)
	}

	const key = "{victim}:k"
	if err := cl.Set(ctx, key, "kept", 0).Err(); err != nil {
		t.Fatal(err)
	}
	old, err := c.MasterForKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var replica *Redis
	for _, s := range shards {
		if s.Master == old {
			replica = s.Replicas[0]
		}
	}
	// Replicated before the kill, so the promotion keeps it.
	if n, err := old.Client().Wait(ctx, 1, 5000).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 on %s = %d, %v", old.Addr(), n, err)
	}
	if err := old.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	p, err := c.WaitForPromotion(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	if p.Old != old || p.New != replica {
		t.Fatalf("promotion %s -> %s, want %s -> %s", p.Old.Addr(), p.New.Addr(), old.Addr(), replica.Addr())
	}
	if m, err := c.MasterForKey(ctx, key); err != nil || m != replica {
		t.Fatalf("MasterForKey after the promotion = %v, %v", m, err)
	}
	failures := untilWorks(ctx, t, func(ctx context.Context) error { return cl.Set(ctx, key+"2", "after", 0).Err() })
	back := time.Now()
	if v, err := cl.Get(ctx, key).Result(); err != nil || v != "kept" {
		t.Fatalf("GET %s after the failover = %q, %v", key, v, err)
	}
	failures += untilWorks(ctx, t, func(ctx context.Context) error { return uc.Set(ctx, key+"3", "after", 0).Err() })
	t.Logf("killed %s: promotion of %s seen after %v; cluster client back %v after it (%d failed attempts in all)",
		old.Addr(), p.New.Addr(), p.Detected.Sub(killed).Round(time.Millisecond), back.Sub(p.Detected).Round(time.Millisecond), failures)
	if d := back.Sub(p.Detected); d > 20*time.Second {
		t.Errorf("the cluster client took %v after the promotion to work again", d)
	}

	// The old master comes back as a replica and the cluster is whole again.
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	shards, err = c.Shards(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(shards, func(s Shard) bool { return s.Master == replica })
	if i < 0 || len(shards[i].Replicas) != 1 || shards[i].Replicas[0] != old {
		t.Fatalf("after the restart, shards %+v", shards)
	}
	t.Logf("old master back as a replica %v after its restart", time.Since(back).Round(time.Millisecond))
}

// TestClusterOptions: the node timeout and the Redis options reach every node,
// and a paused master is failed over too.
func TestClusterOptions(t *testing.T) {
	verifyNoLeak(t)
	c := StartCluster(t, WithNodeTimeout(1500*time.Millisecond), WithClusterRedisOptions(WithRedisArgs("--maxmemory", "64mb")))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	for _, r := range c.Nodes() {
		v, err := r.Client().ConfigGet(ctx, "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if v["cluster-node-timeout"] != "1500" || v["maxmemory"] != "67108864" || v["cluster-port"] == "0" {
			t.Fatalf("%s: node timeout %s, maxmemory %s, cluster-port %s", r.Addr(), v["cluster-node-timeout"], v["maxmemory"], v["cluster-port"])
		}
	}
	masters, err := c.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old := masters[1]
	if err := old.Pause(); err != nil {
		t.Fatal(err)
	}
	p, err := c.WaitForPromotion(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	if p.New == old || p.New == nil {
		t.Fatalf("promoted %v", p.New)
	}
	// Resumed, the old master learns it was replaced and follows the new one.
	if err := old.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitForPromotion(ctx, old); err == nil {
		t.Fatal("WaitForPromotion of a replica succeeded")
	}
}
