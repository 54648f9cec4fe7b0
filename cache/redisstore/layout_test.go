package redisstore_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/redisstore"
	"github.com/fxsession/fxsession/internal/testserver"
)

// res carries a (value, error) pair to must: try(f()).must(t).
type res[T any] struct {
	v   T
	err error
}

func try[T any](v T, err error) res[T] { return res[T]{v, err} }

func (r res[T]) must(t testing.TB) T {
	t.Helper()
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.v
}

func set(kv ...string) []cache.FieldWrite {
	var out []cache.FieldWrite
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, cache.Set(kv[i], []byte(kv[i+1])))
	}
	return out
}

// TestLayout checks what lands in Redis: one hash per record with the record key
// as its hash tag, versions in front of the values, the internal fields, the
// tag and expiry indexes, the lock, and the native expiry with its retention.
func TestLayout(t *testing.T) {
	r := testserver.StartRedis(t)
	c := testClient(t, r)
	ctx := t.Context()
	s := newStore(t, c, redisstore.Options{Namespace: "lay"})
	exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	v := try(s.Write(ctx, "a", cache.Write{Create: true, Fields: set("f", "hello"), AddTags: []string{"t1", "t2"}, Expires: exp})).must(t)
	try(s.Write(ctx, "b", cache.Write{Create: true, AddTags: []string{"t1"}})).must(t)
	try(s.Lock(ctx, "l", time.Minute)).must(t)

	keys := try(c.Keys(ctx, "*").Result()).must(t)
	slices.Sort(keys)
	var shard string
	for _, k := range keys {
		if strings.HasPrefix(k, "fxs:lay:x:{lay/") {
			shard = k
		}
	}
	want := []string{"fxs:lay:l:{l}", "fxs:lay:r:{a}", "fxs:lay:r:{b}", "fxs:lay:t:{t1}", "fxs:lay:t:{t2}", shard}
	slices.Sort(want)
	if shard == "" || !slices.Equal(keys, want) {
		t.Fatalf("keys in Redis %q, want %q (and one expiry shard)", keys, want)
	}
	h := try(c.HGetAll(ctx, "fxs:lay:r:{a}").Result()).must(t)
	f := h["f"]
	if len(f) != 8+len("hello") || f[8:] != "hello" || binary.BigEndian.Uint64([]byte(f[:8])) != uint64(v) {
		t.Fatalf("field f stored as %q, want the version %d in 8 bytes, then hello", f, v)
	}
	if h["#v"] != fmt.Sprint(v) || h["#e"] != fmt.Sprint(exp.UnixMilli()) || h["#t"] != "t1,t2" || h["#w"] == "" || len(h) != 5 {
		t.Fatalf("record hash %q", h)
	}
	// Native expiry: the logical one plus the retention (default 1 h).
	if ttl := try(c.PTTL(ctx, "fxs:lay:r:{a}").Result()).must(t); ttl < 119*time.Minute || ttl > 2*time.Hour {
		t.Fatalf("record a lives %v in Redis, want its hour plus an hour of retention", ttl)
	}
	if ttl := try(c.PTTL(ctx, "fxs:lay:r:{b}").Result()).must(t); ttl != -1 {
		t.Fatalf("record b without expiry has TTL %v", ttl)
	}
	if score := try(c.ZScore(ctx, shard, "a").Result()).must(t); int64(score) != exp.UnixMilli() {
		t.Fatalf("expiry index holds a at %v, want %d", score, exp.UnixMilli())
	}
	if got := try(c.ZRange(ctx, "fxs:lay:t:{t1}", 0, -1).Result()).must(t); !slices.Equal(got, []string{"a", "b"}) && !slices.Equal(got, []string{"b", "a"}) {
		t.Fatalf("tag t1 holds %q", got)
	}
	// A write that does not name tags leaves the tag sets alone; removing a tag
	// leaves the member (the record's own tags are authoritative).
	try(s.Write(ctx, "a", cache.Write{Fields: set("g", "1"), RemoveTags: []string{"t2"}})).must(t)
	if n := try(c.ZCard(ctx, "fxs:lay:t:{t2}").Result()).must(t); n != 1 {
		t.Fatalf("t2 has %d members after a removal, want 1 (stale, left for the cleaners)", n)
	}
	if rec := try(s.Read(ctx, "a")).must(t); !slices.Equal(rec.Tags, []string{"t1"}) {
		t.Fatalf("tags of a: %q", rec.Tags)
	}
	// Flush removes everything of the namespace, locks included.
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if keys := try(c.Keys(ctx, "*").Result()).must(t); len(keys) != 0 {
		t.Fatalf("after Flush, Redis holds %q", keys)
	}
}

// TestHashTags: on a cluster, a record's keys (hash, tombstone) share the record
// key's slot, and the tag sets and expiry shards have slots of their own.
func TestHashTags(t *testing.T) {
	r := startOneNodeCluster(t)
	c := r.Client()
	ctx := t.Context()
	slot := func(k string) int64 { return try(c.ClusterKeySlot(ctx, k).Result()).must(t) }
	for _, k := range []string{"sel-1", "sel-2", "x"} {
		if slot("fxs:ns:r:{"+k+"}") != slot(k) || slot("fxs:ns:g:{"+k+"}") != slot(k) {
			t.Fatalf("record %q is not in its own key's slot", k)
		}
	}
	// 300 records of one namespace land on about as many slots: the namespace
	// is not one slot.
	slots := map[int64]bool{}
	for i := range 300 {
		slots[slot(fmt.Sprintf("fxs:ns:r:{%s}", cacheKey(i)))] = true
	}
	if len(slots) < 290 {
		t.Fatalf("300 records of one namespace use only %d slots", len(slots))
	}
	// Shard i of the expiry index lies in the i-th sixteenth of the slots.
	for _, ns := range []string{"ns", "shop", "a.b"} {
		s := newStore(t, c, redisstore.Options{Namespace: ns})
		for i, k := range redisstore.ShardKeys(s) {
			if !strings.HasPrefix(k, "fxs:"+ns+":x:{"+ns+"/") {
				t.Fatalf("shard key %q", k)
			}
			if got := int(slot(k)) * 16 / 16384; got != i {
				t.Fatalf("shard %d of %q (%s) is in slot %d, the %d-th sixteenth", i, ns, k, slot(k), got)
			}
		}
	}
}

// cacheKey is a random-looking record key, as session selectors are.
func cacheKey(i int) string { return fmt.Sprintf("s%08x", uint32(i)*2654435761) }

// counter is a go-redis hook counting round trips (a command or a pipeline) and
// commands.
type counter struct {
	mu        sync.Mutex
	trips     int
	cmds      []string
	pipelines int
}

func (c *counter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.mu.Lock()
		c.trips++
		c.cmds = append(c.cmds, cmd.Name())
		c.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.mu.Lock()
		c.trips++
		c.pipelines++
		for _, cmd := range cmds {
			c.cmds = append(c.cmds, cmd.Name())
		}
		c.mu.Unlock()
		return next(ctx, cmds)
	}
}

// take returns the round trips and commands counted since the last take.
func (c *counter) take() (int, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	trips, cmds := c.trips, c.cmds
	c.trips, c.cmds, c.pipelines = 0, nil, 0
	return trips, cmds
}

// takePipelines returns the pipelines counted since the last take (a cluster
// client's own slot-map reads, single commands, are left out).
func (c *counter) takePipelines() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.pipelines
	c.trips, c.cmds, c.pipelines = 0, nil, 0
	return n
}

// commandCalls is the number of commands the server ran (INFO commandstats),
// scripts' own calls included.
func commandCalls(t *testing.T, c *redis.Client) map[string]int {
	t.Helper()
	info := try(c.Info(t.Context(), "commandstats").Result()).must(t)
	out := map[string]int{}
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		var n int
		_, _ = fmt.Sscanf(rest, "%d", &n)
		out[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return out
}

// TestRoundTrips counts the client round trips (a pipeline is one) and the
// commands of each operation, with a go-redis hook, and logs the commands the
// server ran (INFO commandstats, scripts' inner calls included).
func TestRoundTrips(t *testing.T) {
	for _, mode := range []string{"single", "durable"} {
		t.Run(mode, func(t *testing.T) {
			var r *testserver.Redis
			opts := redisstore.Options{Namespace: "rt"}
			if mode == "durable" {
				r, _ = startReplicated(t)
				opts.MinReplicas, opts.ReplicaTimeout = 1, time.Second
			} else {
				r = testserver.StartRedis(t)
			}
			c := testClient(t, r)
			cnt := &counter{}
			c.AddHook(cnt)
			s := newStore(t, c, opts)
			ctx := t.Context()
			// Warm up: load the scripts, open connections.
			try(s.Write(ctx, "warm", cache.Write{Create: true, Fields: set("a", "1")})).must(t)
			try(s.Delete(ctx, "warm")).must(t)
			_ = try(s.ReadMany(ctx, []string{"warm"})).must(t)
			try(s.Lock(ctx, "warm", time.Second)).must(t)
			try(s.Unlock(ctx, "warm", "x")).must(t)
			cnt.take()

			exp := time.Now().Add(time.Hour)
			var basket cache.Field // read before the CAS step
			steps := []struct {
				name  string
				trips int
				fn    func() error
			}{
				{"Write (create: 3 fields, 1 tag, expiry)", 1, func() error {
					_, err := s.Write(ctx, "k", cache.Write{Create: true, Fields: set("meta", "m", "basket", "b", "user", "u"), AddTags: []string{"user:1"}, Expires: exp})
					return err
				}},
				{"Read (whole record)", 1, func() error { _, err := s.Read(ctx, "k"); return err }},
				{"Read (2 fields)", 1, func() error {
					r, err := s.Read(ctx, "k", "meta", "basket")
					basket, _ = r.Field("basket")
					return err
				}},
				{"ReadMany (3 keys)", 1, func() error { _, err := s.ReadMany(ctx, []string{"k", "j", "k"}); return err }},
				{"Write (CAS of 1 field)", 1, func() error {
					_, err := s.Write(ctx, "k", cache.Write{Fields: []cache.FieldWrite{cache.SetIf("basket", []byte("b2"), basket.Version)}})
					return err
				}},
				{"Write (touch: expiry only)", 1, func() error {
					_, err := s.Write(ctx, "k", cache.Write{Expires: exp.Add(time.Minute)})
					return err
				}},
				{"Delete", 1, func() error { _, err := s.Delete(ctx, "k"); return err }},
				{"Lock", 1, func() error { _, err := s.Lock(ctx, "l", time.Minute); return err }},
			}
			for _, st := range steps {
				before := commandCalls(t, r.Client())
				if err := st.fn(); err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				trips, cmds := cnt.take()
				after := commandCalls(t, r.Client())
				var server []string
				for name, n := range after {
					if d := n - before[name]; d > 0 && name != "info" {
						server = append(server, fmt.Sprintf("%s=%d", name, d))
					}
				}
				slices.Sort(server)
				t.Logf("%-40s %d round trip(s), client commands %q; server ran %s", st.name, trips, cmds, strings.Join(server, " "))
				if trips != st.trips {
					t.Errorf("%s: %d round trips, want %d", st.name, trips, st.trips)
				}
				if mode == "durable" && strings.HasPrefix(st.name, "Write") || strings.HasPrefix(st.name, "Delete") && mode == "durable" {
					if !slices.Contains(cmds, "wait") {
						t.Errorf("%s in the durability mode sent no WAIT: %q", st.name, cmds)
					}
				}
			}
		})
	}
}
