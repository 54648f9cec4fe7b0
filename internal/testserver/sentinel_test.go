package testserver

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestSentinelFailover starts a Sentinel setup, kills the master and checks that
// the sentinels promote the replica, that one failover client (never recreated)
// works again on the new master with the data written before the kill, and
// that the old master comes back as a replica.
func TestSentinelFailover(t *testing.T) {
	verifyNoLeak(t)
	start := time.Now()
	s := StartSentinel(t, WithMasterName("shop-main"))
	t.Logf("setup ready after %v", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	if s.MasterName() != "shop-main" {
		t.Fatalf("MasterName = %q", s.MasterName())
	}
	if got := s.SentinelAddrs(); len(got) != 3 || len(s.Sentinels()) != 3 {
		t.Fatalf("SentinelAddrs = %q, want three", got)
	}
	if addr, err := s.MasterAddr(ctx); err != nil || addr != s.Master().Addr() {
		t.Fatalf("MasterAddr = %q, %v; want %s", addr, err, s.Master().Addr())
	}
	// Each sentinel has its own configuration file, rewritten by Sentinel.
	for _, r := range s.Sentinels() {
		conf, err := os.ReadFile(filepath.Join(r.Dir(), "redis.conf"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(conf), "sentinel monitor shop-main 127.0.0.1") || !strings.Contains(string(conf), "sentinel myid") {
			t.Fatalf("%s's configuration file:\n%s", r.Addr(), conf)
		}
	}

	c := s.Client()
	if err := c.Set(ctx, "before", "kept", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// Replicated before the kill (WAIT), so the promotion keeps it.
	if n, err := c.Wait(ctx, 1, 5000).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v", n, err)
	}
	if v, err := s.Replica().Client().Get(ctx, "before").Result(); err != nil || v != "kept" {
		t.Fatalf("GET on the replica = %q, %v", v, err)
	}
	// A universal client with the master name is a failover client too.
	uc := redis.NewUniversalClient(s.UniversalOptions())
	defer uc.Close()
	if _, ok := uc.(*redis.Client); !ok {
		t.Fatalf("NewUniversalClient with MasterName gave a %T", uc)
	}
	if v, err := uc.Get(ctx, "before").Result(); err != nil || v != "kept" {
		t.Fatalf("GET through the universal client = %q, %v", v, err)
	}

	old := s.Master()
	if err := old.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	p, err := s.WaitForPromotion(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	if p.Old != old || p.New != s.Replica() {
		t.Fatalf("promotion %s -> %s, want %s -> %s", p.Old.Addr(), p.New.Addr(), old.Addr(), s.Replica().Addr())
	}
	if cur, err := s.CurrentMaster(ctx); err != nil || cur != s.Replica() {
		t.Fatalf("CurrentMaster after the failover = %v, %v", cur, err)
	}
	// The same clients reach the new master.
	var failures int
	for _, cl := range []redis.UniversalClient{c, uc} {
		failures += untilWorks(ctx, t, func(ctx context.Context) error { return cl.Set(ctx, "after", "written", 0).Err() })
	}
	back := time.Now()
	if v, err := c.Get(ctx, "before").Result(); err != nil || v != "kept" {
		t.Fatalf("GET before after the failover = %q, %v", v, err)
	}
	t.Logf("killed %s: promotion to %s seen after %v; clients back %v after it (%d failed attempts)",
		old.Addr(), p.New.Addr(), p.Detected.Sub(killed).Round(time.Millisecond), back.Sub(p.Detected).Round(time.Millisecond), failures)
	if d := back.Sub(p.Detected); d > 20*time.Second {
		t.Errorf("clients took %v after the promotion to work again", d)
	}

	// The old master comes back as a replica of the new one.
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitForReplica(ctx, old); err != nil {
		t.Fatal(err)
	}
	if v, err := old.Client().Get(ctx, "after").Result(); err != nil || v != "written" {
		t.Fatalf("GET on the restarted old master = %q, %v", v, err)
	}
	t.Logf("old master back as a replica %v after its restart", time.Since(back).Round(time.Millisecond))
}

// TestSentinelOptions: the timing options reach the sentinels, the Redis
// options reach the data servers, and a pause of the master is failed over too.
func TestSentinelOptions(t *testing.T) {
	verifyNoLeak(t)
	s := StartSentinel(t,
		WithDownAfter(1500*time.Millisecond),
		WithFailoverTimeout(4*time.Second),
		WithSentinelRedisOptions(WithRedisArgs("--maxmemory", "64mb")),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	if s.MasterName() != DefaultMasterName {
		t.Fatalf("MasterName = %q", s.MasterName())
	}
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.SentinelAddrs()[0]})
	defer sc.Close()
	m, err := sc.Master(ctx, DefaultMasterName).Result()
	if err != nil {
		t.Fatal(err)
	}
	if m["down-after-milliseconds"] != "1500" || m["failover-timeout"] != "4000" || m["quorum"] != "2" {
		t.Fatalf("SENTINEL MASTER: %v", m)
	}
	for _, r := range s.Servers() {
		if v, err := r.Client().ConfigGet(ctx, "maxmemory").Result(); err != nil || v["maxmemory"] != "67108864" {
			t.Fatalf("%s: maxmemory %v, %v", r.Addr(), v, err)
		}
	}

	// A frozen master is failed over like a dead one.
	old := s.Master()
	if err := old.Pause(); err != nil {
		t.Fatal(err)
	}
	p, err := s.WaitForPromotion(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	if p.New != s.Replica() {
		t.Fatalf("promoted %s, want %s", p.New.Addr(), s.Replica().Addr())
	}
	untilWorks(ctx, t, func(ctx context.Context) error { return s.Client().Set(ctx, "k", "v", 0).Err() })
	// Resumed, the old master learns it was replaced and follows the new one.
	if err := old.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitForReplica(ctx, old); err != nil {
		t.Fatal(err)
	}
	addrs := []string{s.Master().Addr(), s.Replica().Addr()}
	if cur, err := s.MasterAddr(ctx); err != nil || !slices.Contains(addrs, cur) || cur == old.Addr() {
		t.Fatalf("MasterAddr = %q, %v", cur, err)
	}
}

// untilWorks calls f every 20 ms until it succeeds and returns the number of
// failed calls; it fails the test when ctx ends first.
func untilWorks(ctx context.Context, t *testing.T, f func(context.Context) error) int {
	t.Helper()
	for failures := 0; ; failures++ {
		err := f(ctx)
		if err == nil {
			return failures
		}
		select {
		case <-ctx.Done():
			t.Fatalf("still failing when the test's time ran out: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
