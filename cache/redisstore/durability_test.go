package redisstore_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/redisstore"
	"github.com/fxsession/fxsession/internal/testserver"
)

// replicaTimeout is the durability mode's wait where a test expects too few
// replicas: the write fails after it.
const replicaTimeout = 300 * time.Millisecond

// ackTimeout is the durability mode's wait where a test needs the write
// acknowledged. WAIT answers as soon as the replica acknowledges, so a long wait
// costs nothing when all is well, and a replica that a loaded machine leaves
// unscheduled for a moment (CI saw 300 ms pass without an acknowledgement right
// after a cluster formed) does not fail the test.
const ackTimeout = time.Second

// expectTooFewReplicas checks that err is the durability mode's refusal and that
// it came within the replica timeout (and some slack for a loaded machine).
func expectTooFewReplicas(t *testing.T, what string, err error, took time.Duration) {
	t.Helper()
	if !errors.Is(err, cache.ErrUnavailable) || !strings.Contains(fmt.Sprint(err), "replicas") {
		t.Fatalf("%s with the replica paused: %v, want an error matching ErrUnavailable about replicas", what, err)
	}
	if took < replicaTimeout-10*time.Millisecond || took > replicaTimeout+1500*time.Millisecond {
		t.Fatalf("%s with the replica paused failed after %v; the replica timeout is %v", what, took, replicaTimeout)
	}
	t.Logf("%s with the replica paused failed after %v: %v", what, took, err)
}

// eventually retries f until it succeeds or 15 s passed.
func eventually(t *testing.T, what string, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := f()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("%s: still failing after 15 s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDurability: a master with one replica, the replica paused (SIGSTOP). In
// the durability mode a write, a delete and a create fail with ErrUnavailable
// within the replica timeout (having been applied on the master all the same,
// as documented); a version conflict is still a conflict; a store without the
// mode goes on writing. Resumed, the same store writes again.
func TestDurability(t *testing.T) {
	master, replica := startReplicated(t)
	c := testClient(t, master)
	ctx := t.Context()
	s := newStore(t, c, redisstore.Options{Namespace: "dur", MinReplicas: 1, ReplicaTimeout: ackTimeout})
	short := newStore(t, c, redisstore.Options{Namespace: "dur", MinReplicas: 1, ReplicaTimeout: replicaTimeout})
	plain := newStore(t, c, redisstore.Options{Namespace: "dur"})

	v := try(s.Write(ctx, "k", cache.Write{Create: true, Fields: set("f", "1"), AddTags: []string{"u"}})).must(t)
	try(s.Write(ctx, "gone", cache.Write{Create: true})).must(t)

	if err := replica.Pause(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := short.Write(ctx, "k", cache.Write{Fields: []cache.FieldWrite{cache.SetIf("f", []byte("2"), v)}})
	expectTooFewReplicas(t, "Write", err, time.Since(start))
	// The write reached the master: a failover could now lose it, which is why it
	// was not acknowledged.
	rec := try(plain.Read(ctx, "k")).must(t)
	if f, _ := rec.Field("f"); string(f.Value) != "2" {
		t.Fatalf("the unacknowledged write is not on the master: f = %q", f.Value)
	}
	start = time.Now()
	_, err = short.Write(ctx, "n", cache.Write{Create: true, Fields: set("f", "1")})
	expectTooFewReplicas(t, "Create", err, time.Since(start))
	start = time.Now()
	_, err = short.Delete(ctx, "gone")
	expectTooFewReplicas(t, "Delete", err, time.Since(start))
	start = time.Now()
	_, err = short.DeleteMany(ctx, []string{"n"})
	expectTooFewReplicas(t, "DeleteMany", err, time.Since(start))
	// A failed condition wrote nothing: it is a conflict, whatever the replicas.
	if _, err := short.Write(ctx, "k", cache.Write{Fields: []cache.FieldWrite{cache.SetIf("f", []byte("3"), v)}}); !errors.Is(err, cache.ErrConflict) {
		t.Fatalf("a stale write with the replica paused: %v, want ErrConflict", err)
	}
	// Reads and stores without the mode are not affected.
	try(s.Read(ctx, "k")).must(t)
	try(plain.Write(ctx, "k", cache.Write{Fields: set("g", "1")})).must(t)

	if err := replica.Resume(); err != nil {
		t.Fatal(err)
	}
	// A store whose client still points at a server that became a replica (as
	// after a failover) gets READONLY for the write, and WAIT refused: the
	// write is unavailable, not refused for good.
	onReplica := newStore(t, testClient(t, replica), redisstore.Options{Namespace: "dur", MinReplicas: 1, ReplicaTimeout: replicaTimeout})
	if _, err := onReplica.Write(ctx, "k", cache.Write{Fields: set("g", "2")}); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("a durable write sent to a replica: %v, want an error matching ErrUnavailable", err)
	}
	took := eventually(t, "a durable write after the resume", func() error {
		_, err := s.Write(ctx, "k", cache.Write{Fields: set("h", "1")})
		return err
	})
	t.Logf("a durable write succeeded again %v after the resume", took)
	rec = try(s.Read(ctx, "k")).must(t)
	if _, ok := rec.Field("h"); !ok {
		t.Fatal("the durable write after the resume is missing")
	}
}

// keyOn returns a key whose Redis key made by mk the master m serves.
func keyOn(t *testing.T, c *testserver.Cluster, m *testserver.Redis, mk func(string) string) string {
	t.Helper()
	for n := range 1000 {
		k := fmt.Sprintf("k%d", n)
		owner, err := c.MasterForKey(t.Context(), mk(k))
		if err != nil {
			t.Fatal(err)
		}
		if owner == m {
			return k
		}
	}
	t.Fatalf("no key on master %s", m.Addr())
	return ""
}

// TestDurabilityCluster: on a cluster of three masters with a replica each, the
// durability mode sends WAIT to each node that took part of a write. With the
// second master's replica paused, writes whose record and index entries all live
// on the first master succeed, while a write touching the second master (its
// record, or only a tag set there) fails with ErrUnavailable.
func TestDurabilityCluster(t *testing.T) {
	c := testserver.StartCluster(t)
	shards, err := c.Shards(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(shards) != 3 || len(shards[1].Replicas) != 1 {
		t.Fatalf("cluster layout: %+v", shards)
	}
	first, second, secondReplica := shards[0].Master, shards[1].Master, shards[1].Replicas[0]
	cc := clusterClient(t, c.Addrs()...)
	nodeTrips := &counter{}
	cc.OnNewNode(func(n *redis.Client) { n.AddHook(nodeTrips) })
	ctx := t.Context()
	const ns = "durc"
	s := newStore(t, cc, redisstore.Options{Namespace: ns, MinReplicas: 1, ReplicaTimeout: ackTimeout})
	short := newStore(t, cc, redisstore.Options{Namespace: ns, MinReplicas: 1, ReplicaTimeout: replicaTimeout})
	recordKey := func(k string) string { return "fxs:" + ns + ":r:{" + k + "}" }
	tagKey := func(k string) string { return "fxs:" + ns + ":t:{" + k + "}" }
	on0, on1 := keyOn(t, c, first, recordKey), keyOn(t, c, second, recordKey)
	tag0, tag1 := keyOn(t, c, first, tagKey), keyOn(t, c, second, tagKey)

	for _, k := range []string{on0, on1} {
		try(s.Write(ctx, k, cache.Write{Create: true, Fields: set("f", "1")})).must(t)
	}
	nodeTrips.take()
	try(s.Write(ctx, on0, cache.Write{Fields: set("f", "2"), AddTags: []string{tag1}})).must(t)
	pipes := nodeTrips.takePipelines()
	t.Logf("a durable write of a record on one master and a tag on the other: %d node pipelines, sent at once", pipes)
	if pipes != 2 {
		t.Fatalf("%d node pipelines, want one per master", pipes)
	}

	if err := secondReplica.Pause(); err != nil {
		t.Fatal(err)
	}
	try(s.Write(ctx, on0, cache.Write{Fields: set("f", "3"), AddTags: []string{tag0}})).must(t)
	start := time.Now()
	_, err = short.Write(ctx, on1, cache.Write{Fields: set("f", "3")})
	expectTooFewReplicas(t, "Write of a record on the second master", err, time.Since(start))
	start = time.Now()
	_, err = short.Write(ctx, on0, cache.Write{AddTags: []string{tag1}})
	expectTooFewReplicas(t, "Write of a record on the first master tagged on the second", err, time.Since(start))
	try(s.Delete(ctx, on0)).must(t)
	start = time.Now()
	_, err = short.Delete(ctx, on1)
	expectTooFewReplicas(t, "Delete on the second master", err, time.Since(start))

	if err := secondReplica.Resume(); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, "a durable write on the second master after the resume", func() error {
		_, err := s.Write(ctx, on1, cache.Write{Create: true, Fields: set("f", "4")})
		return err
	})
	t.Logf("durable writes on the second master succeed again %v after the resume", took)
}
