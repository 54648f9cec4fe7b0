package cachetest

import (
	"context"
	"errors"
	"iter"
	"slices"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// suite holds what every check needs.
type suite struct {
	open OpenFunc
	o    Options
}

// fresh opens a backend in a namespace no other check uses.
func (s *suite) fresh(t *testing.T) cache.Backend {
	t.Helper()
	b := s.open(t, Namespace("ct"))
	if b == nil {
		t.Fatal("cachetest: OpenFunc returned a nil backend")
	}
	return b
}

// openNS opens a backend in the given namespace.
func (s *suite) openNS(t *testing.T, ns string) cache.Backend {
	t.Helper()
	b := s.open(t, ns)
	if b == nil {
		t.Fatal("cachetest: OpenFunc returned a nil backend")
	}
	if got := b.Namespace(); got != ns {
		t.Fatalf("Namespace() = %q, opened with %q", got, ns)
	}
	return b
}

// past sleeps until a moment safely after an entry written before now with
// lifetime ttl has expired.
func past(ttl time.Duration) {
	time.Sleep(ttl + 60*time.Millisecond)
}

func noErr(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: unexpected error: %v", what, err)
	}
}

func isErr(t *testing.T, err, want error, what string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: error = %v, want one matching %v", what, err, want)
	}
}

func mustSet(t *testing.T, b cache.Backend, it cache.Item) cache.Version {
	t.Helper()
	v, err := b.Set(t.Context(), it)
	noErr(t, err, "Set "+it.Key)
	if v == 0 {
		t.Fatalf("Set %s returned version 0", it.Key)
	}
	return v
}

func mustGet(t *testing.T, b cache.Backend, key string) cache.Entry {
	t.Helper()
	e, err := b.Get(t.Context(), key)
	noErr(t, err, "Get "+key)
	if e.Key != key {
		t.Fatalf("Get %s: entry key %q", key, e.Key)
	}
	if !e.Exists() {
		t.Fatalf("Get %s: found entry with version 0", key)
	}
	return e
}

func mustMissing(t *testing.T, b cache.Backend, key string) {
	t.Helper()
	e, err := b.Get(t.Context(), key)
	if !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Get %s: got (%q, %v), want ErrNotFound", key, e.Value, err)
	}
	has, err := b.Has(t.Context(), key)
	noErr(t, err, "Has "+key)
	if has {
		t.Fatalf("Has %s = true for a missing entry", key)
	}
}

func mustHas(t *testing.T, b cache.Backend, key string, want bool) {
	t.Helper()
	has, err := b.Has(t.Context(), key)
	noErr(t, err, "Has "+key)
	if has != want {
		t.Fatalf("Has %s = %v, want %v", key, has, want)
	}
}

func mustValue(t *testing.T, b cache.Backend, key, want string) cache.Entry {
	t.Helper()
	e := mustGet(t, b, key)
	if string(e.Value) != want {
		t.Fatalf("Get %s: value %q, want %q", key, e.Value, want)
	}
	return e
}

// sameSet reports whether a and b hold the same strings, ignoring order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func mustTags(t *testing.T, e cache.Entry, want ...string) {
	t.Helper()
	if !sameSet(e.Tags, want) {
		t.Fatalf("entry %s: tags %q, want %q", e.Key, e.Tags, want)
	}
}

// keys drains a Tagged sequence, failing on errors and duplicates.
func keys(t *testing.T, seq iter.Seq2[string, error]) []string {
	t.Helper()
	var out []string
	seen := map[string]bool{}
	for k, err := range seq {
		noErr(t, err, "Tagged")
		if seen[k] {
			t.Fatalf("Tagged yielded %q twice", k)
		}
		seen[k] = true
		out = append(out, k)
	}
	return out
}

func mustTagged(t *testing.T, b cache.Backend, tag string, want ...string) {
	t.Helper()
	got := keys(t, b.Tagged(t.Context(), tag))
	if !sameSet(got, want) {
		slices.Sort(got)
		t.Fatalf("Tagged %s = %q, want %q", tag, got, want)
	}
}

// entries drains an All sequence into a map, failing on errors and duplicates.
func entries(t *testing.T, b cache.Backend) map[string]cache.Entry {
	t.Helper()
	out := map[string]cache.Entry{}
	for e, err := range b.All(t.Context()) {
		noErr(t, err, "All")
		if _, dup := out[e.Key]; dup {
			t.Fatalf("All yielded %q twice", e.Key)
		}
		if !e.Exists() {
			t.Fatalf("All yielded %q with version 0", e.Key)
		}
		out[e.Key] = e
	}
	return out
}

func mustAll(t *testing.T, b cache.Backend, want ...string) map[string]cache.Entry {
	t.Helper()
	got := entries(t, b)
	var ks []string
	for k := range got {
		ks = append(ks, k)
	}
	if !sameSet(ks, want) {
		slices.Sort(ks)
		t.Fatalf("All yielded keys %q, want %q", ks, want)
	}
	return got
}

// firstErr drains seq and returns its first error (nil if none came).
func firstErr[V any](seq iter.Seq2[V, error]) error {
	for _, err := range seq {
		if err != nil {
			return err
		}
	}
	return nil
}

// within runs f and fails the test if it does not return within d.
func within(t *testing.T, d time.Duration, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		t.Fatalf("%s did not return within %v", what, d)
		return nil
	}
}

// mustExpires checks that e expires between lo and hi (with slack for stores
// that keep expiry in seconds).
func mustExpires(t *testing.T, e cache.Entry, lo, hi time.Time) {
	t.Helper()
	const slack = 1100 * time.Millisecond
	if e.Expires.IsZero() {
		t.Fatalf("entry %s: Expires is zero, want about %v", e.Key, lo)
	}
	if e.Expires.Before(lo.Add(-slack)) || e.Expires.After(hi.Add(slack)) {
		t.Fatalf("entry %s: Expires %v, want between %v and %v", e.Key, e.Expires, lo, hi)
	}
}

func cancelled(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	return ctx
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31) ^ seed
	}
	return b
}
