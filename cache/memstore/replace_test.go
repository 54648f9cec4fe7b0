package memstore_test

import (
	"context"
	"slices"
	"testing"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/memstore"
)

// TestReplaceKeepsTagsAndValue: replacing an entry in place (same tags) or with
// other tags and values of other sizes leaves the value, tags and tag index right.
func TestReplaceKeepsTagsAndValue(t *testing.T) {
	s := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	steps := []cache.Item{
		{Key: "k", Value: []byte("a long first value"), Tags: []string{"x", "y"}},
		{Key: "k", Value: []byte("short"), Tags: []string{"x", "y"}},
		{Key: "k", Value: []byte("a much, much longer value than any before it"), Tags: []string{"x", "y"}},
		{Key: "k", Value: []byte("v"), Tags: []string{"y", "z", "z"}},
		{Key: "k", Value: []byte("w")},
	}
	var prev cache.Version
	for i, it := range steps {
		v, err := s.CompareAndSet(ctx, it, prev)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		got, err := s.Get(ctx, "k")
		if err != nil || string(got.Value) != string(it.Value) || got.Version != v {
			t.Fatalf("step %d: %q v%d %v", i, got.Value, got.Version, err)
		}
		want := slices.Compact(slices.Clone(it.Tags))
		if !slices.Equal(got.Tags, want) {
			t.Fatalf("step %d: tags %v, want %v", i, got.Tags, want)
		}
		for _, tag := range []string{"x", "y", "z"} {
			n := 0
			for k, err := range s.Tagged(ctx, tag) {
				if err != nil || k != "k" {
					t.Fatalf("step %d: Tagged(%s): %q %v", i, tag, k, err)
				}
				n++
			}
			if w := slices.Contains(want, tag); w != (n == 1) {
				t.Fatalf("step %d: Tagged(%s) gave %d keys", i, tag, n)
			}
		}
		// A value read earlier is not changed by a later write.
		keep := string(got.Value)
		if i+1 < len(steps) {
			defer func() {
				if string(got.Value) != keep {
					t.Errorf("step %d's value changed to %q", i, got.Value)
				}
			}()
		}
		prev = v
	}
	if n, err := s.FlushByTag(ctx, "x"); err != nil || n != 0 {
		t.Fatalf("FlushByTag(x) = %d, %v", n, err)
	}
}
