package redisstore

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/internal/testserver"
)

// go-redis sends a command again when its reply was lost (a read timeout, a
// broken connection). These tests send the same calls twice, as such a replay
// does, and check that the second run reports the outcome of the first instead
// of a spurious conflict or a lost report.
func TestReplays(t *testing.T) {
	r := testserver.StartRedis(t)
	ctx := t.Context()
	s, err := New(r.Client(), Options{Namespace: "replay"})
	if err != nil {
		t.Fatal(err)
	}

	send := func(calls []*call) {
		t.Helper()
		if _, err := s.run(ctx, calls, true); err != nil {
			t.Fatal(err)
		}
	}
	reply := func(c *call) []any {
		t.Helper()
		v, err := c.cmd.Slice()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	t.Run("Write", func(t *testing.T) {
		v1, err := s.Write(ctx, "k", cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("n", []byte("1"))}})
		if err != nil {
			t.Fatal(err)
		}
		w := cache.Write{Fields: []cache.FieldWrite{cache.SetIf("n", []byte("2"), v1)}, AddTags: []string{"t"}}
		now := time.Now()
		var versions []any
		for range 2 {
			calls, script := s.writeCalls("k", w, now, "same-id")
			send(calls)
			rep := reply(script)
			if rep[0] != int64(writeOK) {
				t.Fatalf("run of a write sent again: %v, want success", rep)
			}
			versions = append(versions, rep[1])
		}
		if versions[0] != versions[1] {
			t.Fatalf("the write sent again got version %v, the first %v", versions[1], versions[0])
		}
		// Another writer with the same expectation conflicts.
		if _, err := s.Write(ctx, "k", w); !errors.Is(err, cache.ErrConflict) {
			t.Fatalf("a second writer at the old version: %v, want ErrConflict", err)
		}
		// A create sent again succeeds too.
		c := cache.Write{Create: true}
		for range 2 {
			calls, script := s.writeCalls("new", c, now, "create-id")
			send(calls)
			if rep := reply(script); rep[0] != int64(writeOK) {
				t.Fatalf("a create sent again: %v, want success", rep)
			}
		}
	})

	t.Run("CollectGarbage", func(t *testing.T) {
		exp := time.Now().Add(50 * time.Millisecond)
		if _, err := s.Write(ctx, "old", cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("m", []byte("meta"))}, AddTags: []string{"u"}, Expires: exp}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		collect := func(token string) []any {
			c := scriptCall(s.sc.collect, []string{s.recordKey("old"), s.graveKey("old")}, token, time.Now().UnixMilli(), s.tombstoneTTL.Milliseconds(), "m")
			send([]*call{c})
			return reply(c)
		}
		first := collect("gc-1:")
		if first[0] != int64(collectDone) {
			t.Fatalf("first collection: %v", first)
		}
		again := collect("gc-1:")
		if !slices.Equal(first, again) {
			t.Fatalf("the collection sent again got %q, the first %q", again, first)
		}
		rec, err := collected("old", again)
		if err != nil || rec.Version == 0 || len(rec.Fields) != 1 || string(rec.Fields[0].Value) != "meta" || !slices.Equal(rec.Tags, []string{"u"}) {
			t.Fatalf("record from the tombstone: %+v, %v", rec, err)
		}
		if other := collect("gc-2:"); other[0] != int64(collectGone) {
			t.Fatalf("another collector: %v, want gone", other)
		}
	})

	t.Run("Lock", func(t *testing.T) {
		token := "replayed-token"
		for i := range 2 {
			prev, err := s.client.SetArgs(ctx, s.lockKey("l"), token, redis.SetArgs{Mode: "NX", TTL: time.Minute, Get: true}).Result()
			if i == 0 && !errors.Is(err, redis.Nil) {
				t.Fatalf("first SET NX GET: %q, %v; want nil", prev, err)
			}
			if i == 1 && (err != nil || prev != token) {
				t.Fatalf("SET NX GET sent again: %q, %v; want our token (which Lock takes as success)", prev, err)
			}
		}
		if _, err := s.Lock(ctx, "l", time.Minute); !errors.Is(err, cache.ErrLocked) {
			t.Fatalf("Lock by another owner: %v, want ErrLocked", err)
		}
		if ok, err := s.Unlock(ctx, "l", token); err != nil || !ok {
			t.Fatalf("Unlock = %v, %v", ok, err)
		}
	})
}

func TestHasTag(t *testing.T) {
	for _, c := range []struct {
		tags, tag string
		want      bool
	}{
		{"", "a", false}, {"a", "a", true}, {"ab", "a", false}, {"b,a", "a", true}, {"a,b", "b", true},
		{"aa,b", "a", false}, {"x,a.b,y", "a.b", true}, {"x,a.b,y", "a", false},
	} {
		if got := hasTag(c.tags, c.tag); got != c.want {
			t.Errorf("hasTag(%q, %q) = %v", c.tags, c.tag, got)
		}
	}
}

func TestExpiryMillis(t *testing.T) {
	for in, want := range map[time.Time]int64{
		time.UnixMilli(1234): 1234,
		time.Unix(0, 0):      1,
		time.Unix(-100, 0):   1,
		time.Date(99999, 1, 1, 0, 0, 0, 0, time.UTC): 1 << 50,
	} {
		if got := expiryMillis(in); got != want {
			t.Errorf("expiryMillis(%v) = %d, want %d", in, got, want)
		}
	}
}
