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

// fresh opens a store in a namespace no other check uses.
func (s *suite) fresh(t *testing.T) cache.Store {
	t.Helper()
	return s.openNS(t, Namespace("ct"))
}

// openNS opens a store in the given namespace.
func (s *suite) openNS(t *testing.T, ns string) cache.Store {
	t.Helper()
	st := s.open(t, ns)
	if st == nil {
		t.Fatal("cachetest: OpenFunc returned a nil store")
	}
	if got := st.Namespace(); got != ns {
		t.Fatalf("Namespace() = %q, opened with %q", got, ns)
	}
	return st
}

// past sleeps until a moment safely after a record written before now with
// lifetime ttl has expired.
func past(ttl time.Duration) {
	time.Sleep(ttl + 80*time.Millisecond)
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

// create writes a new record with the given string fields and returns its version.
func create(t *testing.T, st cache.Store, key string, kv ...string) cache.Version {
	t.Helper()
	return write(t, st, key, cache.Write{Create: true, Fields: sets(kv...)})
}

// write applies w and fails the test on error.
func write(t *testing.T, st cache.Store, key string, w cache.Write) cache.Version {
	t.Helper()
	v, err := st.Write(t.Context(), key, w)
	if err != nil {
		t.Fatalf("Write(%q): %v", key, err)
	}
	if v == 0 {
		t.Fatalf("Write(%q) returned version 0", key)
	}
	return v
}

// sets turns name/value pairs into unconditional field writes.
func sets(kv ...string) []cache.FieldWrite {
	var out []cache.FieldWrite
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, cache.Set(kv[i], []byte(kv[i+1])))
	}
	return out
}

// read reads a record and fails the test on error.
func read(t *testing.T, st cache.Store, key string, fields ...string) cache.Record {
	t.Helper()
	r, err := st.Read(t.Context(), key, fields...)
	if err != nil {
		t.Fatalf("Read(%q, %q): %v", key, fields, err)
	}
	if r.Key != key {
		t.Fatalf("Read(%q).Key = %q", key, r.Key)
	}
	if !r.Exists() {
		t.Fatalf("Read(%q) returned a record with version 0", key)
	}
	return r
}

// missing checks that key reads as absent.
func missing(t *testing.T, st cache.Store, key string) {
	t.Helper()
	_, err := st.Read(t.Context(), key)
	if !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Read(%q) = %v, want ErrNotFound", key, err)
	}
}

// fieldsAre checks a record's fields: name/value pairs, any order, nothing more.
func fieldsAre(t *testing.T, r cache.Record, kv ...string) {
	t.Helper()
	want := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		want[kv[i]] = kv[i+1]
	}
	got := map[string]string{}
	for _, f := range r.Fields {
		if _, dup := got[f.Name]; dup {
			t.Fatalf("record %q has field %q twice", r.Key, f.Name)
		}
		got[f.Name] = string(f.Value)
		if f.Version == 0 {
			t.Fatalf("record %q field %q has version 0", r.Key, f.Name)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("record %q fields = %v, want %v", r.Key, got, want)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Fatalf("record %q fields = %v, want %v", r.Key, got, want)
		}
	}
}

// fieldVersion returns the version of a field the record must have.
func fieldVersion(t *testing.T, r cache.Record, name string) cache.Version {
	t.Helper()
	f, ok := r.Field(name)
	if !ok {
		t.Fatalf("record %q has no field %q", r.Key, name)
	}
	return f.Version
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func tagsAre(t *testing.T, r cache.Record, want ...string) {
	t.Helper()
	if !sameSet(r.Tags, want) {
		t.Fatalf("record %q tags = %q, want %q", r.Key, r.Tags, want)
	}
}

// collect drains a key stream.
func collect(t *testing.T, seq iter.Seq2[string, error]) []string {
	t.Helper()
	var out []string
	seen := map[string]bool{}
	for k, err := range seq {
		if err != nil {
			t.Fatalf("iteration: %v", err)
		}
		if seen[k] {
			t.Fatalf("iteration yielded %q twice", k)
		}
		seen[k] = true
		out = append(out, k)
	}
	return out
}

func taggedAre(t *testing.T, st cache.Store, tag string, want ...string) {
	t.Helper()
	if got := collect(t, st.Tagged(t.Context(), tag)); !sameSet(got, want) {
		t.Fatalf("Tagged(%q) = %q, want %q", tag, got, want)
	}
}

func keysAre(t *testing.T, st cache.Store, want ...string) {
	t.Helper()
	if got := collect(t, st.Keys(t.Context())); !sameSet(got, want) {
		t.Fatalf("Keys() = %d keys %q, want %d %q", len(got), trim(got), len(want), trim(want))
	}
}

func trim(s []string) []string {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}

func firstErr[V any](seq iter.Seq2[V, error]) error {
	for _, err := range seq {
		if err != nil {
			return err
		}
	}
	return nil
}

// within retries f until it succeeds or d passed (for effects that need a moment,
// like lock expiry on a loaded machine) and returns the last error.
func within(t *testing.T, d time.Duration, f func() error) error {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func cancelled(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	return ctx
}

// pattern is n bytes covering every byte value.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i) ^ seed
	}
	return b
}
