package redisstore

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/internal/testserver"
)

// go-redis replays a command whose reply was lost (a read timeout). These tests
// send the same script call twice, as such a replay does, and check that the
// second run reports the outcome of the first instead of a spurious failure.
func TestReplays(t *testing.T) {
	r := testserver.StartRedis(t)
	ctx := t.Context()
	s, err := New(r.Client(), Options{Namespace: "replay"})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("CompareAndSet", func(t *testing.T) {
		v1, err := s.Set(ctx, cache.Item{Key: "k", Value: []byte("1")})
		if err != nil {
			t.Fatal(err)
		}
		ver := newVersion()
		keys, args := s.writeCall(cache.Item{Key: "k", Value: []byte("2"), Tags: []string{"t"}}, ver)
		args = append(args, strconv.FormatUint(uint64(v1), 10))
		for i := range 2 {
			got, err := s.sc.cas.Run(ctx, s.client, keys, args...).Text()
			if err != nil || got != strconv.FormatUint(uint64(ver), 10) {
				t.Fatalf("run %d: %q, %v; want the version %d", i+1, got, err, ver)
			}
		}
		e, err := s.Get(ctx, "k")
		if err != nil || e.Version != ver || string(e.Value) != "2" {
			t.Fatalf("after the replay: %q at %d, %v", e.Value, e.Version, err)
		}
		// Another writer's call with the same expectation conflicts.
		if _, err := s.CompareAndSet(ctx, cache.Item{Key: "k", Value: []byte("3")}, v1); !errors.Is(err, cache.ErrConflict) {
			t.Fatalf("a second writer at the old version: %v, want ErrConflict", err)
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
				t.Fatalf("replayed SET NX GET: %q, %v; want our token (which Lock takes as success)", prev, err)
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

func TestTTLMillis(t *testing.T) {
	for d, want := range map[time.Duration]int64{
		0: 0, time.Nanosecond: 1, time.Millisecond: 1, time.Millisecond + 1: 2, 1500 * time.Microsecond: 2, time.Hour: 3600000,
	} {
		if got := ttlMillis(d); got != want {
			t.Errorf("ttlMillis(%v) = %d, want %d", d, got, want)
		}
	}
}

func TestCarries(t *testing.T) {
	for _, c := range []struct {
		tags, tag string
		want      bool
	}{
		{"", "a", false}, {"a", "a", true}, {"ab", "a", false}, {"b,a", "a", true}, {"a,b", "b", true},
		{"aa,b", "a", false}, {"x,a.b,y", "a.b", true}, {"x,a.b,y", "a", false},
	} {
		if got := carries(c.tags, c.tag); got != c.want {
			t.Errorf("carries(%q, %q) = %v", c.tags, c.tag, got)
		}
	}
}
