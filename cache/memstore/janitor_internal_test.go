package memstore

import (
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// stored counts the entries physically held (expired or not) in namespace ns.
func (s *Store) stored(ns string) int {
	s.sh.mu.RLock()
	defer s.sh.mu.RUnlock()
	if sp := s.sh.spaces[ns]; sp != nil {
		return len(sp.entries)
	}
	return 0
}

func TestJanitorRemovesExpired(t *testing.T) {
	ctx := t.Context()
	s := New(Options{JanitorInterval: 10 * time.Millisecond})
	defer s.Close()
	sub, err := s.Sub("child")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []cache.Backend{s, sub} {
		if _, err := b.Set(ctx, cache.Item{Key: "short", Value: []byte("x"), Tags: []string{"t"}, TTL: 5 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Set(ctx, cache.Item{Key: "long", Value: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Lock(ctx, "lock", 5*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.stored("default") != 1 || s.stored("default.child") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("janitor did not remove the expired entries: %d and %d stored", s.stored("default"), s.stored("default.child"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.sh.mu.RLock()
	tags, locks := len(s.sh.spaces["default"].tags), len(s.sh.spaces["default"].locks)
	s.sh.mu.RUnlock()
	if tags != 0 || locks != 0 {
		t.Fatalf("janitor left %d tag sets and %d expired locks", tags, locks)
	}
}
