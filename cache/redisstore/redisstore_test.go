package redisstore_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/redisstore"
	"github.com/fxsession/fxsession/internal/testserver"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTimeout is the client timeout of the tests: generous for a loaded
// two-core machine.
const testTimeout = 2 * time.Second

// recoveryBound is how soon after a promotion a store must serve every record
// again in the failover tests: a cluster client reads the slot map every second
// and a Sentinel client hears of the switch at once, so about a second is
// expected; the rest is room for a loaded machine.
const recoveryBound = 10 * time.Second

// testClient is a client on r as NewClient (and so ModuleWith) builds it, with
// the test timeouts, closed at cleanup.
func testClient(tb testing.TB, r *testserver.Redis) *redis.Client {
	tb.Helper()
	c := redisstore.NewClient(redis.UniversalOptions{
		Addrs:        []string{r.Addr()},
		DialTimeout:  testTimeout,
		ReadTimeout:  testTimeout,
		WriteTimeout: testTimeout,
	}).(*redis.Client)
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// clusterClient is a cluster client as NewClusterClient builds it, with the test
// timeouts, closed at cleanup.
func clusterClient(tb testing.TB, addrs ...string) *redis.ClusterClient {
	tb.Helper()
	c := redisstore.NewClusterClient(redis.ClusterOptions{
		Addrs:        addrs,
		DialTimeout:  testTimeout,
		ReadTimeout:  testTimeout,
		WriteTimeout: testTimeout,
	})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// opener returns a cachetest.OpenFunc on client with opts (its namespace set by
// the suite).
func opener(client redis.UniversalClient, opts redisstore.Options) cachetest.OpenFunc {
	return func(tb testing.TB, ns string) cache.Store {
		o := opts
		o.Namespace = ns
		s, err := redisstore.New(client, o)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = s.Close() })
		return s
	}
}

func newStore(tb testing.TB, c redis.UniversalClient, opts redisstore.Options) *redisstore.Store {
	tb.Helper()
	s, err := redisstore.New(c, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	r := testserver.StartRedis(t)
	cachetest.Run(t, "redis", opener(testClient(t, r), redisstore.Options{}), cachetest.Options{Parallel: true})
}

// TestConformanceCluster runs the suite on a one-node Redis Cluster holding all
// 16384 slots: Redis refuses cross-slot commands and scripts there exactly as on
// a big cluster, so this proves the hash tagging, and the store takes the
// cluster client's paths (ForEachMaster, cluster pipelines).
func TestConformanceCluster(t *testing.T) {
	r := startOneNodeCluster(t)
	cachetest.Run(t, "redis-cluster", opener(clusterClient(t, r.Addr()), redisstore.Options{}), cachetest.Options{Parallel: true})
}

// TestConformanceDurable runs the suite in the durability mode on a master with
// a replica: every write waits for the replica.
func TestConformanceDurable(t *testing.T) {
	master, _ := startReplicated(t)
	opts := redisstore.Options{MinReplicas: 1, ReplicaTimeout: time.Second}
	cachetest.Run(t, "redis-durable", opener(testClient(t, master), opts), cachetest.Options{Parallel: true})
}

// TestConformanceSentinel runs the suite through a Sentinel setup (a master,
// a replica and three sentinels, addressed by the master's name), as an app
// configured with Sentinel reaches its store: the failover client asks the
// sentinels for the master and every command goes there.
func TestConformanceSentinel(t *testing.T) {
	sen := testserver.StartSentinel(t)
	c := redisstore.NewClient(redis.UniversalOptions{
		MasterName:   sen.MasterName(),
		Addrs:        sen.SentinelAddrs(),
		DialTimeout:  testTimeout,
		ReadTimeout:  testTimeout,
		WriteTimeout: testTimeout,
	})
	t.Cleanup(func() { _ = c.Close() })
	if _, ok := c.(*redis.Client); !ok {
		t.Fatalf("NewClient with a master name made a %T, want the failover *redis.Client", c)
	}
	cachetest.Run(t, "redis-sentinel", opener(c, redisstore.Options{}), cachetest.Options{Parallel: true})
}

// TestConformanceSmallBatches runs the suite with tiny batches, so that every
// iteration crosses many page boundaries.
func TestConformanceSmallBatches(t *testing.T) {
	r := testserver.StartRedis(t)
	cachetest.Run(t, "redis-batch7", opener(testClient(t, r), redisstore.Options{BatchSize: 7}), cachetest.Options{Parallel: true, Many: 300})
}

func BenchmarkStore(b *testing.B) {
	r := testserver.StartRedis(b)
	cachetest.Bench(b, opener(testClient(b, r), redisstore.Options{}))
}

func BenchmarkStoreCluster(b *testing.B) {
	r := startOneNodeCluster(b)
	cachetest.Bench(b, opener(clusterClient(b, r.Addr()), redisstore.Options{}))
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// startOneNodeCluster starts a redis-server in cluster mode holding every
// slot, its cluster bus on a free port of its own (port + 10000 may be taken or
// above 65535).
func startOneNodeCluster(tb testing.TB, opts ...testserver.RedisOption) *testserver.Redis {
	tb.Helper()
	opts = append([]testserver.RedisOption{testserver.WithRedisArgs(
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-port", freePort(tb),
	)}, opts...)
	r := testserver.StartRedis(tb, opts...)
	if err := r.Client().Do(context.Background(), "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		tb.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
	}
	waitClusterOK(tb, r)
	return r
}

// waitClusterOK waits until r reports cluster_state:ok.
func waitClusterOK(tb testing.TB, r *testserver.Redis) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := r.Client().ClusterInfo(context.Background()).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("cluster not ok after 20 s: %v\n%s", err, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// noSyncDelay makes a master start a replica's full sync at once (Redis waits
// 5 s by default for more replicas to share it).
func noSyncDelay() testserver.RedisOption {
	return testserver.WithRedisArgs("--repl-diskless-sync-delay", "0")
}

// startReplicated starts a master and a replica of it and waits until the
// replica is in sync.
func startReplicated(tb testing.TB) (master, replica *testserver.Redis) {
	tb.Helper()
	master = testserver.StartRedis(tb, noSyncDelay())
	host, port, _ := net.SplitHostPort(master.Addr())
	replica = testserver.StartRedis(tb, testserver.WithRedisArgs("--replicaof", host, port))
	waitInSync(tb, master, 1, "probe")
	return master, replica
}

// waitInSync waits until n replicas acknowledge a write of probe (a key the
// master serves) to master. The probe is written only once the master counts n
// replicas: a write made before a replica connected is not in the replication
// stream, and WAIT would count the replica for it at once.
func waitInSync(tb testing.TB, master *testserver.Redis, n int, probe string) {
	tb.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c := master.Client()
		info, err := c.Info(ctx, "replication").Result()
		var acked int64
		if err == nil && strings.Contains(info, "connected_slaves:"+strconv.Itoa(n)+"\r\n") {
			err = c.Set(ctx, probe, time.Now().String(), 0).Err()
			if err == nil {
				acked, err = c.Do(ctx, "WAIT", n, 100).Int64()
			}
			if err == nil && acked >= int64(n) {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d replicas not in sync after 20 s (%d acknowledged): %v\n%s", n, acked, err, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNewOptions(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ReadTimeout: time.Second})
	defer c.Close()
	if _, err := redisstore.New(nil, redisstore.Options{}); err == nil {
		t.Fatal("New(nil) succeeded")
	}
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	defer ring.Close()
	if _, err := redisstore.New(ring, redisstore.Options{}); err == nil {
		t.Fatal("New with a Ring succeeded")
	}
	if _, err := redisstore.New(c, redisstore.Options{Namespace: "a{b}"}); !errors.Is(err, cache.ErrInvalidKey) {
		t.Fatalf("New with namespace a{b}: %v, want ErrInvalidKey", err)
	}
	for name, o := range map[string]redisstore.Options{
		"MaxValueSize":                     {MaxValueSize: -1},
		"BatchSize":                        {BatchSize: -1},
		"ExpiredRetention":                 {ExpiredRetention: -1},
		"MinReplicas":                      {MinReplicas: -1},
		"ReplicaTimeout":                   {ReplicaTimeout: -1},
		"ReplicaTimeout above ReadTimeout": {MinReplicas: 1, ReplicaTimeout: time.Second},
	} {
		if _, err := redisstore.New(c, o); err == nil {
			t.Errorf("New with a bad %s succeeded", name)
		}
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
	_, err = small.Write(t.Context(), "k", cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("f", []byte("12345"))}})
	if !errors.Is(err, cache.ErrValueTooLarge) {
		t.Fatalf("5 bytes over a limit of 4: %v", err)
	}
	if _, err := small.Lock(t.Context(), "l", 0); err == nil {
		t.Fatal("Lock with lifetime 0 succeeded")
	}
}

// waitFor retries check until it passes or 20 s passed.
func waitFor(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 20 s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
