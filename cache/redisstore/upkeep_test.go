package redisstore_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/redisstore"
	"github.com/fxsession/fxsession/internal/testserver"
)

func tagged(t *testing.T, s cache.Store, tag string) []string {
	t.Helper()
	out := firstErrOrKeys(t, s.Tagged(t.Context(), tag))
	slices.Sort(out)
	return out
}

// TestTagIndexUpkeep: stale members (records deleted, expired or untagged)
// are never yielded; Tagged and CollectGarbage remove them once they are older
// than the grace period; CollectGarbage's sweep runs at most once per period
// and leaves valid members alone for the recheck period.
func TestTagIndexUpkeep(t *testing.T) {
	r := testserver.StartRedis(t)
	c := testClient(t, r)
	ctx := t.Context()
	s := newStore(t, c, redisstore.Options{Namespace: "tags"})
	const set = "fxs:tags:t:{u}"
	card := func() int64 { return try(c.ZCard(ctx, set).Result()).must(t) }
	soon := time.Now().Add(100 * time.Millisecond)
	for _, k := range []string{"a", "b", "d"} {
		try(s.Write(ctx, k, cache.Write{Create: true, AddTags: []string{"u"}})).must(t)
	}
	try(s.Write(ctx, "c", cache.Write{Create: true, AddTags: []string{"u"}, Expires: soon})).must(t)
	try(s.Delete(ctx, "b")).must(t)
	try(s.Write(ctx, "d", cache.Write{RemoveTags: []string{"u"}})).must(t)
	time.Sleep(200 * time.Millisecond)

	// Fresh stale members are skipped but kept: a write may be adding the tag
	// again on another slot at this very moment.
	if got := tagged(t, s, "u"); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("Tagged(u) = %q, want [a]", got)
	}
	if n := card(); n != 4 {
		t.Fatalf("the tag set holds %d members, want 4 (stale ones younger than the grace period stay)", n)
	}
	// Older than the grace period, Tagged removes them.
	redisstore.SetUpkeep(s, 0, time.Hour, 0)
	if got := tagged(t, s, "u"); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("Tagged(u) = %q, want [a]", got)
	}
	if n := card(); n != 1 {
		t.Fatalf("the tag set holds %d members after Tagged, want 1", n)
	}

	// CollectGarbage's sweep removes stale members of sets nobody iterates and
	// rescores the valid ones an hour ahead.
	try(s.Write(ctx, "e", cache.Write{Create: true, AddTags: []string{"u", "w"}})).must(t)
	try(s.Write(ctx, "f", cache.Write{Create: true, AddTags: []string{"u"}})).must(t)
	try(s.Delete(ctx, "e")).must(t)
	time.Sleep(5 * time.Millisecond)
	try(s.CollectGarbage(ctx, cache.GCOptions{})).must(t)
	if n := card(); n != 2 {
		t.Fatalf("the tag set holds %d members after the sweep, want 2 (a, f)", n)
	}
	if n := try(c.Exists(ctx, "fxs:tags:t:{w}").Result()).must(t); n != 0 {
		t.Fatal("the sweep left a set of only stale members")
	}
	if score := try(c.ZScore(ctx, set, "a").Result()).must(t); score < float64(time.Now().Add(50*time.Minute).UnixMilli()) {
		t.Fatalf("a valid member was not rescored ahead: %v", score)
	}

	// CollectGarbage removes the collected records from their tag sets.
	try(s.Write(ctx, "g", cache.Write{Create: true, AddTags: []string{"v"}, Expires: time.Now().Add(50 * time.Millisecond)})).must(t)
	time.Sleep(100 * time.Millisecond)
	if n := try(s.CollectGarbage(ctx, cache.GCOptions{})).must(t); n != 1 {
		t.Fatalf("CollectGarbage = %d, want 1", n)
	}
	if n := try(c.Exists(ctx, "fxs:tags:t:{v}").Result()).must(t); n != 0 {
		t.Fatal("the collected record is still in its tag set")
	}

	// With the default period, the sweep runs once per ten minutes across all
	// stores of the namespace.
	throttled := newStore(t, c, redisstore.Options{Namespace: "tags"})
	redisstore.SetUpkeep(throttled, 0, time.Hour, 10*time.Minute)
	try(throttled.CollectGarbage(ctx, cache.GCOptions{})).must(t)
	try(s.Write(ctx, "h", cache.Write{Create: true, AddTags: []string{"u"}})).must(t)
	try(s.Delete(ctx, "h")).must(t)
	try(throttled.CollectGarbage(ctx, cache.GCOptions{})).must(t)
	if n := card(); n != 3 {
		t.Fatalf("the tag set holds %d members, want 3: the second sweep within ten minutes must not run", n)
	}
	if ttl := try(c.PTTL(ctx, "fxs:tags:l:{#sweep}").Result()).must(t); ttl < 9*time.Minute {
		t.Fatalf("the sweep's period marker lives %v", ttl)
	}
}

// TestExpiryIndexUpkeep: CollectGarbage removes the index entries of records
// collected, deleted or no longer expiring, and corrects the entries whose
// record expires later than the index says.
func TestExpiryIndexUpkeep(t *testing.T) {
	r := testserver.StartRedis(t)
	c := testClient(t, r)
	ctx := t.Context()
	s := newStore(t, c, redisstore.Options{Namespace: "idx"})
	soon := time.Now().Add(3 * time.Second) // long enough for the calls below on a loaded machine
	later := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	for _, k := range []string{"x", "y", "z", "w"} {
		try(s.Write(ctx, k, cache.Write{Create: true, Expires: soon})).must(t)
	}
	try(s.Write(ctx, "y", cache.Write{Expires: cache.NoExpiry})).must(t)
	try(s.Delete(ctx, "z")).must(t)
	try(s.Write(ctx, "w", cache.Write{Expires: later})).must(t)
	all := func() map[string]float64 {
		out := map[string]float64{}
		keys := try(c.Keys(ctx, "fxs:idx:x:*").Result()).must(t)
		for _, k := range keys {
			for _, z := range try(c.ZRangeWithScores(ctx, k, 0, -1).Result()).must(t) {
				out[z.Member.(string)] = z.Score
			}
		}
		return out
	}
	// Simulate an index entry left behind by a lost update: w's entry says
	// "soon" although w expires in an hour.
	keys := try(c.Keys(ctx, "fxs:idx:x:*").Result()).must(t)
	for _, k := range keys {
		if _, err := c.ZScore(ctx, k, "w").Result(); err == nil {
			try(c.ZAdd(ctx, k, redis.Z{Score: float64(soon.UnixMilli()), Member: "w"}).Result()).must(t)
		}
	}
	time.Sleep(time.Until(soon) + 50*time.Millisecond)
	var got []string
	n := try(s.CollectGarbage(ctx, cache.GCOptions{Removed: func(r cache.Record) { got = append(got, r.Key) }})).must(t)
	if n != 1 || !slices.Equal(got, []string{"x"}) {
		t.Fatalf("CollectGarbage = %d, reported %q; want x only", n, got)
	}
	left := all()
	if len(left) != 1 || int64(left["w"]) != later.UnixMilli() {
		t.Fatalf("the expiry index holds %v, want only w at %d", left, later.UnixMilli())
	}
	try(s.Read(ctx, "y")).must(t)
	try(s.Read(ctx, "w")).must(t)
}

// TestNativeExpiry: Redis drops an expired record on its own after the
// retention; the collector then finds nothing to report and cleans the index.
func TestNativeExpiry(t *testing.T) {
	r := testserver.StartRedis(t)
	c := testClient(t, r)
	ctx := t.Context()
	// A retention long enough that the record is still in Redis when checked
	// below, also on a loaded machine.
	s := newStore(t, c, redisstore.Options{Namespace: "nat", ExpiredRetention: 3 * time.Second})
	try(s.Write(ctx, "k", cache.Write{Create: true, Fields: set("f", "1"), Expires: time.Now().Add(100 * time.Millisecond)})).must(t)
	try(s.Write(ctx, "kept", cache.Write{Create: true, Fields: set("f", "1"), Expires: time.Now().Add(100 * time.Millisecond)})).must(t)
	time.Sleep(150 * time.Millisecond)
	// Expired but within the retention: absent for reads, still in Redis.
	if _, err := s.Read(ctx, "k"); err == nil {
		t.Fatal("an expired record was read")
	}
	if n := try(c.Exists(ctx, "fxs:nat:r:{k}").Result()).must(t); n != 1 {
		t.Fatal("Redis dropped the record before the retention ran out")
	}
	waitFor(t, "Redis drops the record", func() error {
		if n := try(c.Exists(ctx, "fxs:nat:r:{k}", "fxs:nat:r:{kept}").Result()).must(t); n != 0 {
			return errors.New("not yet")
		}
		return nil
	})
	if n := try(s.CollectGarbage(ctx, cache.GCOptions{})).must(t); n != 0 {
		t.Fatalf("CollectGarbage after Redis dropped the records = %d, want 0", n)
	}
	if keys := try(c.Keys(ctx, "fxs:nat:*").Result()).must(t); !slices.Equal(keys, []string{"fxs:nat:l:{#sweep}"}) {
		t.Fatalf("left in Redis: %q, want only the tag sweep's period marker", keys)
	}
}
