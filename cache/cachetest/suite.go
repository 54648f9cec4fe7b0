package cachetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache"
)

func (s *suite) basic(t *testing.T) {
	st := s.fresh(t)
	ctx := t.Context()
	missing(t, st, "k")
	v1 := create(t, st, "k", "a", "1", "b", "2")
	r := read(t, st, "k")
	fieldsAre(t, r, "a", "1", "b", "2")
	if r.Version != v1 || fieldVersion(t, r, "a") != v1 || fieldVersion(t, r, "b") != v1 {
		t.Fatalf("versions: record %d, a %d, b %d; the write returned %d", r.Version, fieldVersion(t, r, "a"), fieldVersion(t, r, "b"), v1)
	}
	if !r.Expires.IsZero() || len(r.Tags) != 0 {
		t.Fatalf("a record created without expiry or tags reads back expiry %v, tags %q", r.Expires, r.Tags)
	}
	// An update of one field leaves the other alone and gives the record and the
	// written field a new, larger version.
	v2 := write(t, st, "k", cache.Write{Fields: sets("a", "one", "c", "3")})
	if v2 <= v1 {
		t.Fatalf("second write has version %d, not above %d", v2, v1)
	}
	r = read(t, st, "k")
	fieldsAre(t, r, "a", "one", "b", "2", "c", "3")
	if r.Version != v2 || fieldVersion(t, r, "a") != v2 || fieldVersion(t, r, "b") != v1 || fieldVersion(t, r, "c") != v2 {
		t.Fatalf("versions after update: record %d a %d b %d c %d (writes %d, %d)", r.Version,
			fieldVersion(t, r, "a"), fieldVersion(t, r, "b"), fieldVersion(t, r, "c"), v1, v2)
	}
	// A write with no fields is allowed (it can move tags or the expiry).
	v3 := write(t, st, "k", cache.Write{})
	if v3 <= v2 {
		t.Fatalf("empty write: version %d, not above %d", v3, v2)
	}
	r = read(t, st, "k")
	if r.Version != v3 || fieldVersion(t, r, "a") != v2 {
		t.Fatalf("empty write: record version %d (want %d), field a %d (want %d)", r.Version, v3, fieldVersion(t, r, "a"), v2)
	}
	ok, err := st.Delete(ctx, "k")
	noErr(t, err, "Delete")
	if !ok {
		t.Fatal("Delete of a live record reported false")
	}
	missing(t, st, "k")
}

func (s *suite) readFields(t *testing.T) {
	st := s.fresh(t)
	create(t, st, "k", "a", "1", "b", "2", "c", "3")
	fieldsAre(t, read(t, st, "k", "b"), "b", "2")
	fieldsAre(t, read(t, st, "k", "a", "c"), "a", "1", "c", "3")
	// Fields that do not exist are left out; the record still exists.
	r := read(t, st, "k", "zz", "a")
	fieldsAre(t, r, "a", "1")
	r = read(t, st, "k", "zz")
	fieldsAre(t, r)
	// Naming fields of a missing record is ErrNotFound, as ever.
	_, err := st.Read(t.Context(), "nope", "a")
	isErr(t, err, cache.ErrNotFound, "Read of a missing record with fields")
}

func (s *suite) readMany(t *testing.T) {
	st := s.fresh(t)
	ctx := t.Context()
	create(t, st, "k1", "a", "1", "b", "x")
	create(t, st, "k3", "a", "3")
	rs, err := st.ReadMany(ctx, []string{"k1", "k2", "k3", "k1"})
	noErr(t, err, "ReadMany")
	if len(rs) != 4 {
		t.Fatalf("ReadMany of 4 keys returned %d records", len(rs))
	}
	for i, k := range []string{"k1", "k2", "k3", "k1"} {
		if rs[i].Key != k {
			t.Fatalf("ReadMany[%d].Key = %q, want %q", i, rs[i].Key, k)
		}
	}
	if rs[1].Exists() || len(rs[1].Fields) != 0 {
		t.Fatalf("ReadMany: missing key yields %+v", rs[1])
	}
	fieldsAre(t, rs[0], "a", "1", "b", "x")
	fieldsAre(t, rs[2], "a", "3")
	fieldsAre(t, rs[3], "a", "1", "b", "x")
	rs, err = st.ReadMany(ctx, []string{"k1", "k3"}, "a")
	noErr(t, err, "ReadMany with fields")
	fieldsAre(t, rs[0], "a", "1")
	fieldsAre(t, rs[1], "a", "3")
	rs, err = st.ReadMany(ctx, nil)
	noErr(t, err, "ReadMany(nil)")
	if len(rs) != 0 {
		t.Fatalf("ReadMany(nil) = %d records", len(rs))
	}
	// Many keys at once.
	var keys []string
	for i := range 300 {
		k := fmt.Sprintf("m%03d", i)
		keys = append(keys, k)
		if i%2 == 0 {
			create(t, st, k, "n", strconv.Itoa(i))
		}
	}
	rs, err = st.ReadMany(ctx, keys)
	noErr(t, err, "ReadMany of 300")
	for i, r := range rs {
		if r.Exists() != (i%2 == 0) {
			t.Fatalf("ReadMany of 300: record %d exists = %v", i, r.Exists())
		}
		if r.Exists() {
			fieldsAre(t, r, "n", strconv.Itoa(i))
		}
	}
}

func (s *suite) createAndExistence(t *testing.T) {
	st := s.fresh(t)
	ctx := t.Context()
	// Without Create the record must exist.
	_, err := st.Write(ctx, "k", cache.Write{Fields: sets("a", "1")})
	isErr(t, err, cache.ErrNotFound, "Write without Create on a missing record")
	missing(t, st, "k")
	create(t, st, "k", "a", "1")
	// Create on a live record is a conflict, and changes nothing.
	_, err = st.Write(ctx, "k", cache.Write{Create: true, Fields: sets("a", "2", "b", "2")})
	isErr(t, err, cache.ErrConflict, "Create on a live record")
	fieldsAre(t, read(t, st, "k"), "a", "1")
	// A created record may have no fields at all.
	create(t, st, "empty")
	r := read(t, st, "empty")
	fieldsAre(t, r)
	write(t, st, "empty", cache.Write{Fields: sets("late", "1")})
	fieldsAre(t, read(t, st, "empty"), "late", "1")
}

func (s *suite) noResurrection(t *testing.T) {
	st := s.fresh(t)
	ctx := t.Context()
	create(t, st, "k", "a", "1")
	ok, err := st.Delete(ctx, "k")
	noErr(t, err, "Delete")
	if !ok {
		t.Fatal("Delete reported false for a live record")
	}
	// A request racing the deletion writes afterwards: it must not bring the
	// record back, with or without conditions, tags or expiry.
	for _, w := range []cache.Write{
		{Fields: sets("a", "2")},
		{Fields: []cache.FieldWrite{cache.SetIf("a", []byte("2"), 0)}},
		{AddTags: []string{"user"}},
		{Expires: time.Now().Add(time.Hour)},
		{Fields: []cache.FieldWrite{cache.Remove("a")}},
	} {
		_, err := st.Write(ctx, "k", w)
		isErr(t, err, cache.ErrNotFound, fmt.Sprintf("Write %+v after Delete", w))
	}
	missing(t, st, "k")
	keysAre(t, st)
	taggedAre(t, st, "user")
	ok, err = st.Delete(ctx, "k")
	noErr(t, err, "second Delete")
	if ok {
		t.Fatal("Delete of a deleted record reported true")
	}
}

func (s *suite) fieldCAS(t *testing.T) {
	st := s.fresh(t)
	ctx := t.Context()
	v1 := create(t, st, "k", "a", "1")
	// Expecting absence of a present field conflicts; of an absent one works.
	_, err := st.Write(ctx, "k", cache.Write{Fields: []cache.FieldWrite{cache.SetIf("a", []byte("x"), 0)}})
	isErr(t, err, cache.ErrConflict, "SetIf(a, 0) on a present field")
	v2 := write(t, st, "k", cache.Write{Fields: []cache.FieldWrite{cache.SetIf("b", []byte("b1"), 0)}})
	// The right version works, a stale one conflicts.
	v3 := write(t, st, "k", cache.Write{Fields: []cache.FieldWrite{cache.SetIf("a", []byte("2"), v1)}})
	_, err = st.Write(ctx, "k", cache.Write{Fields: []cache.FieldWrite{cache.SetIf("a", []byte("3"), v1)}})
	isErr(t, err, cache.ErrConflict, "SetIf with a stale version")
	// A version that belongs to another field does not count.
	_, err = st.Write(ctx, "k", cache.Write{Fields: []cache.FieldWrite{cache.SetIf("a", []byte("3"), v2)}})
	isErr(t, err, cache.ErrConflict, "SetIf with another field's version")
	r := read(t, st, "k")
	fieldsAre(t, r, "a", "2", "b", "b1")
	if fieldVersion(t, r, "a") != v3 {
		t.Fatalf("field a has version %d, want %d", fieldVersion(t, r, "a"), v3)
	}
	// Writing another field does not change a field's version: a condition on
	// it still holds.
	write(t, st, "k", cache.Write{Fields: sets("b", "b2")})
	write(t, st, "k", cache.Write{Fields: []cache.FieldWrite{cache.SetIf("a", []byte("4"), v3)}})
	// A conditional remove.
	r = read(t, st, "k")
	va := fieldVersion(t, r, "a")
	_, err = st.Write(ctx, "k", cache.Write{Fields: []cache.FieldWrite{{Name: "a", Remove: true, Check: true, Expect: va - 1}}})
	isErr(t, err, cache.ErrConflict, "conditional Remove with a stale version")
	write(t, st, "k", cache.Write{Fields: []cache.FieldWrite{{Name: "a", Remove: true, Check: true, Expect: va}}})
	fieldsAre(t, read(t, st, "k"), "b", "b2")
	// Create with a condition of absence is the usual form of a first write.
	write(t, st, "n", cache.Write{Create: true, Fields: []cache.FieldWrite{cache.SetIf("a", []byte("1"), 0)}})
	fieldsAre(t, read(t, st, "n"), "a", "1")
}

func (s *suite) atomic(t *testing.T) {
	st := s.fresh(t)
	ctx := t.Context()
	exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	v := write(t, st, "k", cache.Write{Create: true, Fields: sets("a", "1", "b", "1", "d", "1"), AddTags: []string{"t1"}, Expires: exp})
	// One failing condition: nothing of the write happens, not the other fields,
	// removals, tags or expiry.
	_, err := st.Write(ctx, "k", cache.Write{
		Fields: []cache.FieldWrite{
			cache.Set("b", []byte("2")),
			cache.Set("c", []byte("new")),
			cache.Remove("d"),
			cache.SetIf("a", []byte("x"), v+1000),
		},
		AddTags:    []string{"t2"},
		RemoveTags: []string{"t1"},
		Expires:    cache.NoExpiry,
	})
	isErr(t, err, cache.ErrConflict, "write with one stale condition")
	r := read(t, st, "k")
	fieldsAre(t, r, "a", "1", "b", "1", "d", "1")
	tagsAre(t, r, "t1")
	taggedAre(t, st, "t1", "k")
	taggedAre(t, st, "t2")
	if !r.Expires.Equal(exp) {
		t.Fatalf("expiry changed by a failed write: %v, want %v", r.Expires, exp)
	}
	if r.Version != v {
		t.Fatalf("record version changed by a failed write: %d, want %d", r.Version, v)
	}
	// Two conditions, both right: all of it happens.
	write(t, st, "k", cache.Write{
		Fields:     []cache.FieldWrite{cache.SetIf("a", []byte("2"), v), cache.SetIf("b", []byte("2"), v), cache.SetIf("c", []byte("3"), 0)},
		AddTags:    []string{"t2"},
		RemoveTags: []string{"t1"},
	})
	r = read(t, st, "k")
	fieldsAre(t, r, "a", "2", "b", "2", "c", "3", "d", "1")
	tagsAre(t, r, "t2")
}

func (s *suite) removeFields(t *testing.T) {
	st := s.fresh(t)
	create(t, st, "k", "a", "1", "b", "2")
	write(t, st, "k", cache.Write{Fields: []cache.FieldWrite{cache.Remove("a"), cache.Remove("never")}})
	fieldsAre(t, read(t, st, "k"), "b", "2")
	// A record whose last field went still exists.
	write(t, st, "k", cache.Write{Fields: []cache.FieldWrite{cache.Remove("b")}})
	fieldsAre(t, read(t, st, "k"))
	// A removed field that comes back gets a new version.
	v := write(t, st, "k", cache.Write{Fields: []cache.FieldWrite{cache.SetIf("a", []byte("again"), 0)}})
	if got := fieldVersion(t, read(t, st, "k"), "a"); got != v {
		t.Fatalf("re-created field has version %d, want %d", got, v)
	}
}

// manyFields: one write of thousands of fields, each set and then changed
// under its version check, and half of them removed in one write (a backend
// must not pass them to its server in one list that has a length limit).
func (s *suite) manyFields(t *testing.T) {
	st := s.fresh(t)
	const n = 5000
	ws := make([]cache.FieldWrite, n)
	for i := range ws {
		ws[i] = cache.SetIf("f"+strconv.Itoa(i), []byte(strconv.Itoa(i)), 0)
	}
	write(t, st, "k", cache.Write{Create: true, Fields: ws})
	r := read(t, st, "k")
	if len(r.Fields) != n {
		t.Fatalf("read %d fields, want %d", len(r.Fields), n)
	}
	for i, f := range r.Fields {
		ws[i] = cache.SetIf(f.Name, append([]byte("x"), f.Value...), f.Version)
	}
	write(t, st, "k", cache.Write{Fields: ws})
	// A stale version among them fails the whole write.
	stale := slices.Clone(ws)
	stale[n-1] = cache.SetIf(ws[n-1].Name, []byte("lost"), 1)
	if _, err := st.Write(t.Context(), "k", cache.Write{Fields: stale}); !errors.Is(err, cache.ErrConflict) {
		t.Fatalf("a write with one stale version: %v, want ErrConflict", err)
	}
	rm := make([]cache.FieldWrite, 0, n/2)
	for i := 0; i < n; i += 2 {
		rm = append(rm, cache.Remove("f"+strconv.Itoa(i)))
	}
	write(t, st, "k", cache.Write{Fields: rm})
	r = read(t, st, "k")
	if len(r.Fields) != n/2 {
		t.Fatalf("read %d fields after removing half, want %d", len(r.Fields), n/2)
	}
	for _, f := range r.Fields {
		i, err := strconv.Atoi(strings.TrimPrefix(f.Name, "f"))
		if err != nil || i%2 == 0 || string(f.Value) != "x"+strconv.Itoa(i) {
			t.Fatalf("field %s = %q after the writes", f.Name, f.Value)
		}
	}
}

func (s *suite) versions(t *testing.T) {
	st := s.fresh(t)
	ctx := t.Context()
	seen := map[cache.Version]bool{}
	var last cache.Version
	for round := range 3 {
		v := create(t, st, "k", "a", "x")
		for i := range 5 {
			if v <= last || seen[v] {
				t.Fatalf("round %d write %d: version %d repeats or is not above %d", round, i, v, last)
			}
			seen[v], last = true, v
			v = write(t, st, "k", cache.Write{Fields: sets("a", strconv.Itoa(i))})
		}
		// A deleted and re-created record never gets an old version back.
		if _, err := st.Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
	}
}

func (s *suite) values(t *testing.T) {
	st := s.fresh(t)
	bin := pattern(1000, 7)
	big := pattern(cache.DefaultMaxValueSize, 9)
	write(t, st, "k", cache.Write{Create: true, Fields: []cache.FieldWrite{
		cache.Set("empty", []byte{}),
		cache.Set("nil", nil),
		cache.Set("bin", bin),
		cache.Set("big", big),
		cache.Set("zero", []byte{0}),
	}})
	r := read(t, st, "k")
	want := map[string][]byte{"empty": {}, "nil": {}, "bin": bin, "big": big, "zero": {0}}
	if len(r.Fields) != len(want) {
		t.Fatalf("%d fields, want %d", len(r.Fields), len(want))
	}
	for name, v := range want {
		f, ok := r.Field(name)
		if !ok || !bytes.Equal(f.Value, v) {
			t.Fatalf("field %q: %d bytes (present %v), want %d bytes", name, len(f.Value), ok, len(v))
		}
	}
	// The store keeps no reference to the caller's slices.
	bin[0]++
	f, _ := read(t, st, "k", "bin").Field("bin")
	if f.Value[0] == bin[0] {
		t.Fatal("the store kept a reference to a written slice")
	}
}

func (s *suite) expiry(t *testing.T) {
	st := s.fresh(t)
	ctx := t.Context()
	ttl := s.o.TTL
	soon := time.Now().Add(ttl)
	far := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	write(t, st, "short", cache.Write{Create: true, Fields: sets("a", "1"), AddTags: []string{"tag"}, Expires: soon})
	write(t, st, "long", cache.Write{Create: true, Fields: sets("a", "1"), AddTags: []string{"tag"}, Expires: far})
	write(t, st, "moved", cache.Write{Create: true, Fields: sets("a", "1"), Expires: soon})
	write(t, st, "kept", cache.Write{Create: true, Fields: sets("a", "1"), Expires: soon})
	write(t, st, "cleared", cache.Write{Create: true, Fields: sets("a", "1"), Expires: soon})
	write(t, st, "stale", cache.Write{Create: true, Fields: sets("old", "1"), AddTags: []string{"old"}, Expires: soon})
	r := read(t, st, "long")
	if !r.Expires.Equal(far) {
		t.Fatalf("Expires = %v, want %v (millisecond precision at least)", r.Expires, far)
	}
	// Moving, keeping (zero time) and clearing the expiry.
	write(t, st, "moved", cache.Write{Expires: far})
	write(t, st, "kept", cache.Write{Fields: sets("b", "2")})
	write(t, st, "cleared", cache.Write{Expires: cache.NoExpiry})
	if r := read(t, st, "cleared"); !r.Expires.IsZero() {
		t.Fatalf("NoExpiry left Expires = %v", r.Expires)
	}
	past(ttl)
	for _, k := range []string{"short", "kept"} {
		missing(t, st, k)
		_, err := st.Write(ctx, k, cache.Write{Fields: sets("a", "2")})
		isErr(t, err, cache.ErrNotFound, "Write on an expired record")
		ok, err := st.Delete(ctx, k)
		noErr(t, err, "Delete of an expired record")
		if ok {
			t.Fatalf("Delete of expired %q reported true", k)
		}
	}
	read(t, st, "long")
	read(t, st, "moved")
	read(t, st, "cleared")
	rs, err := st.ReadMany(ctx, []string{"short", "long"})
	noErr(t, err, "ReadMany")
	if rs[0].Exists() || !rs[1].Exists() {
		t.Fatalf("ReadMany after expiry: short exists %v, long exists %v", rs[0].Exists(), rs[1].Exists())
	}
	keysAre(t, st, "long", "moved", "cleared")
	taggedAre(t, st, "tag", "long")
	// A record can be created again over an expired one, fresh.
	create(t, st, "short", "z", "9")
	r = read(t, st, "short")
	fieldsAre(t, r, "z", "9")
	tagsAre(t, r)
	// Also over one nothing has removed yet: none of its fields, tags or expiry
	// survive.
	create(t, st, "stale", "z", "9")
	r = read(t, st, "stale")
	fieldsAre(t, r, "z", "9")
	tagsAre(t, r)
	taggedAre(t, st, "old")
	if !r.Expires.IsZero() {
		t.Fatalf("a record created over an expired one has its expiry %v", r.Expires)
	}
	// An expiry in the past makes the record absent at once.
	write(t, st, "long", cache.Write{Expires: time.Now().Add(-time.Second)})
	missing(t, st, "long")
}

func (s *suite) tags(t *testing.T) {
	st := s.fresh(t)
	ctx := t.Context()
	write(t, st, "a", cache.Write{Create: true, Fields: sets("f", "1"), AddTags: []string{"user:1", "admin"}})
	write(t, st, "b", cache.Write{Create: true, Fields: sets("f", "1"), AddTags: []string{"user:1"}})
	create(t, st, "c", "f", "1")
	tagsAre(t, read(t, st, "a"), "user:1", "admin")
	tagsAre(t, read(t, st, "a", "f"), "user:1", "admin")
	taggedAre(t, st, "user:1", "a", "b")
	taggedAre(t, st, "admin", "a")
	taggedAre(t, st, "nobody")
	// Adding a present tag and removing an absent one change nothing.
	write(t, st, "a", cache.Write{AddTags: []string{"admin"}, RemoveTags: []string{"ghost"}})
	tagsAre(t, read(t, st, "a"), "user:1", "admin")
	// Moving a tag.
	write(t, st, "b", cache.Write{AddTags: []string{"user:2"}, RemoveTags: []string{"user:1"}})
	write(t, st, "c", cache.Write{AddTags: []string{"user:2"}})
	taggedAre(t, st, "user:1", "a")
	taggedAre(t, st, "user:2", "b", "c")
	// Writes that do not name tags keep them.
	write(t, st, "c", cache.Write{Fields: sets("g", "2")})
	tagsAre(t, read(t, st, "c"), "user:2")
	// A deleted record leaves its tags.
	_, err := st.Delete(ctx, "b")
	noErr(t, err, "Delete")
	taggedAre(t, st, "user:2", "c")
	// Re-created, it does not inherit its old tags.
	create(t, st, "b", "f", "2")
	tagsAre(t, read(t, st, "b"))
	taggedAre(t, st, "user:2", "c")
	// A tag both added and removed is refused.
	_, err = st.Write(ctx, "c", cache.Write{AddTags: []string{"x"}, RemoveTags: []string{"x"}})
	isErr(t, err, cache.ErrInvalidKey, "tag both added and removed")
}

func (s *suite) tagsMany(t *testing.T) {
	st := s.fresh(t)
	ctx := t.Context()
	n := s.o.Many / 2
	want := make([]string, 0, n)
	for i := range n {
		k := fmt.Sprintf("r%05d", i)
		write(t, st, k, cache.Write{Create: true, AddTags: []string{"big"}})
		want = append(want, k)
	}
	taggedAre(t, st, "big", want...)
	// Stopping early is fine.
	count := 0
	for _, err := range st.Tagged(ctx, "big") {
		noErr(t, err, "Tagged")
		count++
		if count == 3 {
			break
		}
	}
	deleted, err := st.DeleteMany(ctx, want[:n/2])
	noErr(t, err, "DeleteMany")
	if deleted != n/2 {
		t.Fatalf("DeleteMany removed %d, want %d", deleted, n/2)
	}
	taggedAre(t, st, "big", want[n/2:]...)
}

func (s *suite) delete(t *testing.T) {
	st := s.fresh(t)
	ctx := t.Context()
	for _, k := range []string{"a", "b", "c", "d"} {
		write(t, st, k, cache.Write{Create: true, Fields: sets("f", k), AddTags: []string{"t"}})
	}
	n, err := st.DeleteMany(ctx, []string{"a", "b", "nope", "a"})
	noErr(t, err, "DeleteMany")
	if n != 2 {
		t.Fatalf("DeleteMany of a, b, nope, a = %d, want 2", n)
	}
	n, err = st.DeleteMany(ctx, nil)
	noErr(t, err, "DeleteMany(nil)")
	if n != 0 {
		t.Fatalf("DeleteMany(nil) = %d", n)
	}
	missing(t, st, "a")
	missing(t, st, "b")
	keysAre(t, st, "c", "d")
	taggedAre(t, st, "t", "c", "d")
}

func (s *suite) keys(t *testing.T) {
	st := s.fresh(t)
	ctx := t.Context()
	keysAre(t, st)
	var want []string
	for i := range s.o.Many {
		k := fmt.Sprintf("key:%05d", i)
		create(t, st, k, "f", "x")
		want = append(want, k)
	}
	keysAre(t, st, want...)
	// Stopping early.
	count := 0
	for _, err := range st.Keys(ctx) {
		noErr(t, err, "Keys")
		if count++; count == 5 {
			break
		}
	}
	// Locks are not records.
	_, err := st.Lock(ctx, "lk", time.Minute)
	noErr(t, err, "Lock")
	if got := len(collect(t, st.Keys(ctx))); got != s.o.Many {
		t.Fatalf("Keys after a Lock: %d keys, want %d", got, s.o.Many)
	}
	// Deleting while iterating does not break the iteration.
	seen := 0
	for k, err := range st.Keys(ctx) {
		noErr(t, err, "Keys while deleting")
		if _, err := st.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
		seen++
	}
	if seen < s.o.Many/2 {
		t.Fatalf("Keys while deleting saw only %d of %d", seen, s.o.Many)
	}
	_, _ = st.DeleteMany(ctx, want)
	keysAre(t, st)
}

func (s *suite) flush(t *testing.T) {
	ns := Namespace("fl")
	st := s.openNS(t, ns)
	other := s.openNS(t, ns+"x")
	sub, err := st.Sub("child")
	noErr(t, err, "Sub")
	ctx := t.Context()
	for _, k := range []string{"a", "b"} {
		write(t, st, k, cache.Write{Create: true, Fields: sets("f", "1"), AddTags: []string{"t"}})
		write(t, other, k, cache.Write{Create: true, Fields: sets("f", "1"), AddTags: []string{"t"}})
		write(t, sub, k, cache.Write{Create: true, Fields: sets("f", "1"), AddTags: []string{"t"}})
	}
	_, err = st.Lock(ctx, "lk", time.Minute)
	noErr(t, err, "Lock")
	noErr(t, st.Flush(ctx), "Flush")
	keysAre(t, st)
	taggedAre(t, st, "t")
	missing(t, st, "a")
	// Locks went too.
	_, err = st.Lock(ctx, "lk", time.Minute)
	noErr(t, err, "Lock after Flush")
	// Other namespaces and subs are untouched.
	keysAre(t, other, "a", "b")
	taggedAre(t, other, "t", "a", "b")
	keysAre(t, sub, "a", "b")
	taggedAre(t, sub, "t", "a", "b")
	// The namespace works afterwards.
	create(t, st, "a", "f", "2")
	fieldsAre(t, read(t, st, "a"), "f", "2")
}

func (s *suite) collectGarbage(t *testing.T) {
	st := s.fresh(t)
	ctx := t.Context()
	ttl := s.o.TTL
	soon := time.Now().Add(ttl)
	for i := range 10 {
		write(t, st, fmt.Sprintf("dead%d", i), cache.Write{Create: true, Fields: sets("m", "meta"+strconv.Itoa(i), "big", "payload"),
			AddTags: []string{"t", "n" + strconv.Itoa(i)}, Expires: soon})
	}
	write(t, st, "live", cache.Write{Create: true, Fields: sets("m", "x"), AddTags: []string{"t"}, Expires: time.Now().Add(time.Hour)})
	create(t, st, "forever", "m", "y")
	// Nothing is due yet.
	n, err := st.CollectGarbage(ctx, cache.GCOptions{})
	noErr(t, err, "CollectGarbage before expiry")
	if n != 0 {
		t.Fatalf("CollectGarbage before expiry removed %d", n)
	}
	past(ttl)
	var (
		mu  sync.Mutex
		got []cache.Record
	)
	report := func(r cache.Record) {
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
	}
	// Max bounds one call.
	n, err = st.CollectGarbage(ctx, cache.GCOptions{Max: 4, Fields: []string{"m"}, Removed: report})
	noErr(t, err, "CollectGarbage(Max 4)")
	if n != 4 || len(got) != 4 {
		t.Fatalf("CollectGarbage(Max 4) = %d, reported %d", n, len(got))
	}
	n, err = st.CollectGarbage(ctx, cache.GCOptions{Fields: []string{"m"}, Removed: report})
	noErr(t, err, "CollectGarbage")
	if n != 6 || len(got) != 10 {
		t.Fatalf("second CollectGarbage = %d, reported %d in all (want 6, 10)", n, len(got))
	}
	seen := map[string]bool{}
	for _, r := range got {
		if seen[r.Key] {
			t.Fatalf("record %q reported twice", r.Key)
		}
		seen[r.Key] = true
		i, err := strconv.Atoi(r.Key[len("dead"):])
		if err != nil {
			t.Fatalf("reported record %q was not expired", r.Key)
		}
		fieldsAre(t, r, "m", "meta"+strconv.Itoa(i))
		tagsAre(t, r, "t", "n"+strconv.Itoa(i))
		if r.Expires.IsZero() {
			t.Fatalf("reported record %q has no expiry", r.Key)
		}
	}
	n, err = st.CollectGarbage(ctx, cache.GCOptions{})
	noErr(t, err, "third CollectGarbage")
	if n != 0 {
		t.Fatalf("third CollectGarbage removed %d", n)
	}
	keysAre(t, st, "live", "forever")
	taggedAre(t, st, "t", "live")
	// Before collects what will have expired by then.
	n, err = st.CollectGarbage(ctx, cache.GCOptions{Before: time.Now().Add(2 * time.Hour), Removed: report})
	noErr(t, err, "CollectGarbage(Before)")
	if n != 1 || got[len(got)-1].Key != "live" {
		t.Fatalf("CollectGarbage(Before in two hours) = %d (last reported %q), want 1 (live)", n, got[len(got)-1].Key)
	}
	keysAre(t, st, "forever")
}

func (s *suite) collectGarbageOnce(t *testing.T) {
	ns := Namespace("gc")
	a := s.openNS(t, ns)
	b := s.openNS(t, ns)
	ctx := t.Context()
	const n = 200
	soon := time.Now().Add(s.o.TTL)
	for i := range n {
		write(t, a, fmt.Sprintf("k%03d", i), cache.Write{Create: true, Fields: sets("m", strconv.Itoa(i)), Expires: soon})
	}
	past(s.o.TTL)
	// Two collectors (two handles on the store, as two processes have) run at
	// once: every record is reported exactly once.
	var (
		mu     sync.Mutex
		counts = map[string]int{}
		wg     sync.WaitGroup
		total  atomic.Int64
	)
	for _, st := range []cache.Store{a, b, a, b} {
		wg.Go(func() {
			for {
				removed, err := st.CollectGarbage(ctx, cache.GCOptions{Max: 25, Removed: func(r cache.Record) {
					mu.Lock()
					counts[r.Key]++
					mu.Unlock()
				}})
				if err != nil {
					t.Errorf("CollectGarbage: %v", err)
					return
				}
				total.Add(int64(removed))
				if removed == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	if len(counts) != n || total.Load() != n {
		t.Fatalf("collectors reported %d records and counted %d removals, want %d", len(counts), total.Load(), n)
	}
	for k, c := range counts {
		if c != 1 {
			t.Fatalf("record %q reported %d times", k, c)
		}
	}
	keysAre(t, a)
}

func (s *suite) namespaces(t *testing.T) {
	ns := Namespace("ns")
	a := s.openNS(t, ns)
	b := s.openNS(t, ns+"b")
	a2 := s.openNS(t, ns)
	ctx := t.Context()
	write(t, a, "k", cache.Write{Create: true, Fields: sets("f", "a"), AddTags: []string{"t"}})
	missing(t, b, "k")
	keysAre(t, b)
	taggedAre(t, b, "t")
	write(t, b, "k", cache.Write{Create: true, Fields: sets("f", "b"), AddTags: []string{"t"}})
	fieldsAre(t, read(t, a2, "k"), "f", "a")
	fieldsAre(t, read(t, b, "k"), "f", "b")
	// Locks are per namespace.
	_, err := a.Lock(ctx, "l", time.Minute)
	noErr(t, err, "Lock a")
	_, err = b.Lock(ctx, "l", time.Minute)
	noErr(t, err, "Lock b")
	_, err = a2.Lock(ctx, "l", time.Minute)
	isErr(t, err, cache.ErrLocked, "Lock in the same namespace")
	ok, err := b.Delete(ctx, "k")
	noErr(t, err, "Delete")
	if !ok {
		t.Fatal("Delete reported false")
	}
	read(t, a, "k")
}

func (s *suite) sub(t *testing.T) {
	ns := Namespace("sb")
	root := s.openNS(t, ns)
	child, err := root.Sub("child")
	noErr(t, err, "Sub")
	if got, want := child.Namespace(), ns+".child"; got != want {
		t.Fatalf("Sub namespace = %q, want %q", got, want)
	}
	grand, err := child.Sub("g")
	noErr(t, err, "Sub of Sub")
	if got, want := grand.Namespace(), ns+".child.g"; got != want {
		t.Fatalf("Sub of Sub namespace = %q, want %q", got, want)
	}
	create(t, root, "k", "f", "root")
	create(t, child, "k", "f", "child")
	fieldsAre(t, read(t, root, "k"), "f", "root")
	fieldsAre(t, read(t, child, "k"), "f", "child")
	// The same namespace opened directly sees the child's records.
	direct := s.openNS(t, ns+".child")
	fieldsAre(t, read(t, direct, "k"), "f", "child")
	for _, bad := range []string{"", "a b", "x{y}"} {
		if _, err := root.Sub(bad); !errors.Is(err, cache.ErrInvalidKey) {
			t.Fatalf("Sub(%q) = %v, want ErrInvalidKey", bad, err)
		}
	}
	// Closing a Sub does not close the root.
	noErr(t, child.Close(), "Close of a Sub")
	read(t, root, "k")
}

func badKeys() []string {
	long := string(bytes.Repeat([]byte("k"), cache.MaxKeyLen+1))
	return []string{"", "a b", "é", "{x}", "a\x00", "a/b", "a*", long}
}

func (s *suite) invalidKeys(t *testing.T) {
	st := s.fresh(t)
	ctx := t.Context()
	create(t, st, "ok", "f", "1")
	edge := string(bytes.Repeat([]byte("k"), cache.MaxKeyLen))
	create(t, st, edge, edge, "1")
	for _, bad := range badKeys() {
		what := fmt.Sprintf("%q", bad)
		_, err := st.Read(ctx, bad)
		isErr(t, err, cache.ErrInvalidKey, "Read "+what)
		_, err = st.Read(ctx, "ok", bad)
		isErr(t, err, cache.ErrInvalidKey, "Read field "+what)
		_, err = st.ReadMany(ctx, []string{"ok", bad})
		isErr(t, err, cache.ErrInvalidKey, "ReadMany "+what)
		_, err = st.Write(ctx, bad, cache.Write{Create: true, Fields: sets("f", "1")})
		isErr(t, err, cache.ErrInvalidKey, "Write key "+what)
		_, err = st.Write(ctx, "ok", cache.Write{Fields: sets(bad, "1")})
		isErr(t, err, cache.ErrInvalidKey, "Write field "+what)
		_, err = st.Write(ctx, "ok", cache.Write{AddTags: []string{bad}})
		isErr(t, err, cache.ErrInvalidKey, "Write tag "+what)
		_, err = st.Delete(ctx, bad)
		isErr(t, err, cache.ErrInvalidKey, "Delete "+what)
		_, err = st.DeleteMany(ctx, []string{bad})
		isErr(t, err, cache.ErrInvalidKey, "DeleteMany "+what)
		isErr(t, firstErr(st.Tagged(ctx, bad)), cache.ErrInvalidKey, "Tagged "+what)
		_, err = st.Lock(ctx, bad, time.Second)
		isErr(t, err, cache.ErrInvalidKey, "Lock "+what)
		_, err = st.CollectGarbage(ctx, cache.GCOptions{Fields: []string{bad}})
		isErr(t, err, cache.ErrInvalidKey, "CollectGarbage field "+what)
	}
	_, err := st.Write(ctx, "ok", cache.Write{Fields: sets("f", "1", "f", "2")})
	isErr(t, err, cache.ErrInvalidKey, "a field written twice")
	fieldsAre(t, read(t, st, "ok"), "f", "1")
	keysAre(t, st, "ok", edge)
}

func (s *suite) valueTooLarge(t *testing.T) {
	st := s.fresh(t)
	ctx := t.Context()
	create(t, st, "k", "f", "old")
	big := make([]byte, cache.DefaultMaxValueSize+1)
	_, err := st.Write(ctx, "k", cache.Write{Fields: []cache.FieldWrite{cache.Set("g", []byte("1")), cache.Set("f", big)}})
	isErr(t, err, cache.ErrValueTooLarge, "Write of a field above the limit")
	fieldsAre(t, read(t, st, "k"), "f", "old")
	_, err = st.Write(ctx, "n", cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("f", big)}})
	isErr(t, err, cache.ErrValueTooLarge, "Create with a field above the limit")
	missing(t, st, "n")
}

func (s *suite) context(t *testing.T) {
	st := s.fresh(t)
	create(t, st, "k", "f", "1")
	ctx := cancelled(t)
	checks := map[string]error{}
	_, checks["Read"] = st.Read(ctx, "k")
	_, checks["ReadMany"] = st.ReadMany(ctx, []string{"k"})
	_, checks["Write"] = st.Write(ctx, "k", cache.Write{Fields: sets("f", "2")})
	_, checks["Delete"] = st.Delete(ctx, "k")
	_, checks["DeleteMany"] = st.DeleteMany(ctx, []string{"k"})
	checks["Keys"] = firstErr(st.Keys(ctx))
	checks["Tagged"] = firstErr(st.Tagged(ctx, "t"))
	checks["Flush"] = st.Flush(ctx)
	_, checks["CollectGarbage"] = st.CollectGarbage(ctx, cache.GCOptions{})
	_, checks["Lock"] = st.Lock(ctx, "l", time.Second)
	_, checks["Unlock"] = st.Unlock(ctx, "l", "token")
	for op, err := range checks {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context = %v, want an error matching context.Canceled", op, err)
		}
		if errors.Is(err, cache.ErrUnavailable) {
			t.Errorf("%s with a cancelled context = %v: a cancellation is not the store's failure", op, err)
		}
	}
	// Nothing happened.
	fieldsAre(t, read(t, st, "k"), "f", "1")
}

func (s *suite) casCounter(t *testing.T) {
	ns := Namespace("cc")
	stores := []cache.Store{s.openNS(t, ns), s.openNS(t, ns)}
	ctx := t.Context()
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for w := range workers {
		st := stores[w%len(stores)]
		wg.Go(func() {
			for range each {
				if _, err := Increment(ctx, st, "counter", "n"); err != nil {
					t.Errorf("Increment: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	f, _ := read(t, stores[0], "counter").Field("n")
	if got := string(f.Value); got != strconv.Itoa(workers*each) {
		t.Fatalf("counter = %s after %d increments", got, workers*each)
	}
}

func (s *suite) concurrentFields(t *testing.T) {
	st := s.fresh(t)
	ctx := t.Context()
	create(t, st, "k")
	// Writers of different fields of one record, each with its own condition,
	// never lose each other's writes.
	const workers, each = 6, 20
	var wg sync.WaitGroup
	for w := range workers {
		field := "f" + strconv.Itoa(w)
		wg.Go(func() {
			for range each {
				if _, err := Increment(ctx, st, "k", field); err != nil {
					t.Errorf("Increment %s: %v", field, err)
					return
				}
			}
		})
	}
	wg.Wait()
	r := read(t, st, "k")
	for w := range workers {
		f, ok := r.Field("f" + strconv.Itoa(w))
		if !ok || string(f.Value) != strconv.Itoa(each) {
			t.Fatalf("field f%d = %q, want %d", w, f.Value, each)
		}
	}
}

func (s *suite) lock(t *testing.T) {
	st := s.fresh(t)
	ctx := t.Context()
	tok, err := st.Lock(ctx, "l", time.Minute)
	noErr(t, err, "Lock")
	if tok == "" {
		t.Fatal("Lock returned an empty token")
	}
	_, err = st.Lock(ctx, "l", time.Minute)
	isErr(t, err, cache.ErrLocked, "second Lock")
	ok, err := st.Unlock(ctx, "l", "not-the-token")
	noErr(t, err, "Unlock with a wrong token")
	if ok {
		t.Fatal("Unlock with a wrong token reported true")
	}
	_, err = st.Lock(ctx, "l", time.Minute)
	isErr(t, err, cache.ErrLocked, "Lock after a wrong Unlock")
	ok, err = st.Unlock(ctx, "l", tok)
	noErr(t, err, "Unlock")
	if !ok {
		t.Fatal("Unlock with the token reported false")
	}
	tok2, err := st.Lock(ctx, "l", time.Minute)
	noErr(t, err, "Lock after Unlock")
	if tok2 == tok {
		t.Fatal("two lock owners got the same token")
	}
	// A lock and a record of the same name are unrelated.
	create(t, st, "l", "f", "1")
	fieldsAre(t, read(t, st, "l"), "f", "1")
	ok, err = st.Unlock(ctx, "other", tok2)
	noErr(t, err, "Unlock of a lock never taken")
	if ok {
		t.Fatal("Unlock of a lock never taken reported true")
	}
}

func (s *suite) lockExpiry(t *testing.T) {
	st := s.fresh(t)
	ctx := t.Context()
	old, err := st.Lock(ctx, "l", s.o.TTL)
	noErr(t, err, "Lock")
	past(s.o.TTL)
	var tok string
	err = within(t, 5*time.Second, func() error {
		var err error
		tok, err = st.Lock(ctx, "l", time.Minute)
		return err
	})
	noErr(t, err, "Lock after expiry")
	ok, err := st.Unlock(ctx, "l", old)
	noErr(t, err, "Unlock by the expired owner")
	if ok {
		t.Fatal("the expired owner released the new owner's lock")
	}
	_, err = st.Lock(ctx, "l", time.Minute)
	isErr(t, err, cache.ErrLocked, "Lock while the new owner holds it")
	ok, err = st.Unlock(ctx, "l", tok)
	noErr(t, err, "Unlock by the new owner")
	if !ok {
		t.Fatal("the new owner could not release its lock")
	}
}

func (s *suite) lockExclusion(t *testing.T) {
	ns := Namespace("lx")
	stores := []cache.Store{s.openNS(t, ns), s.openNS(t, ns)}
	ctx := t.Context()
	var (
		inside, max atomic.Int32
		wg          sync.WaitGroup
	)
	for w := range 6 {
		st := stores[w%2]
		wg.Go(func() {
			for range 5 {
				tok, err := cache.WaitLock(ctx, st, "x", 10*time.Second, 20*time.Second)
				if err != nil {
					t.Errorf("WaitLock: %v", err)
					return
				}
				n := inside.Add(1)
				for {
					m := max.Load()
					if n <= m || max.CompareAndSwap(m, n) {
						break
					}
				}
				time.Sleep(time.Millisecond)
				inside.Add(-1)
				if ok, err := st.Unlock(ctx, "x", tok); err != nil || !ok {
					t.Errorf("Unlock = %v, %v", ok, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if max.Load() != 1 {
		t.Fatalf("%d owners held the lock at once", max.Load())
	}
}

func (s *suite) waitLock(t *testing.T) {
	st := s.fresh(t)
	ctx := t.Context()
	tok, err := st.Lock(ctx, "w", time.Minute)
	noErr(t, err, "Lock")
	start := time.Now()
	_, err = cache.WaitLock(ctx, st, "w", time.Minute, 100*time.Millisecond)
	isErr(t, err, cache.ErrLocked, "WaitLock on a held lock")
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Fatalf("WaitLock gave up after %v, before its wait of 100ms", d)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		_, _ = st.Unlock(context.WithoutCancel(ctx), "w", tok)
	}()
	tok2, err := cache.WaitLock(ctx, st, "w", time.Minute, 10*time.Second)
	noErr(t, err, "WaitLock on a lock released meanwhile")
	if tok2 == "" || tok2 == tok {
		t.Fatalf("WaitLock token %q", tok2)
	}
	_, err = cache.WaitLock(cancelled(t), st, "w", time.Minute, time.Second)
	if err == nil {
		t.Fatal("WaitLock with a cancelled context took a held lock")
	}
}

func (s *suite) closed(t *testing.T) {
	st := s.fresh(t)
	ctx := t.Context()
	create(t, st, "k", "f", "1")
	sub, err := st.Sub("s")
	noErr(t, err, "Sub")
	noErr(t, st.Close(), "Close")
	if err := st.Close(); err != nil && !errors.Is(err, cache.ErrClosed) {
		t.Fatalf("second Close = %v", err)
	}
	checks := map[string]error{}
	_, checks["Read"] = st.Read(ctx, "k")
	_, checks["ReadMany"] = st.ReadMany(ctx, []string{"k"})
	_, checks["Write"] = st.Write(ctx, "k", cache.Write{Fields: sets("f", "2")})
	_, checks["Delete"] = st.Delete(ctx, "k")
	_, checks["Lock"] = st.Lock(ctx, "l", time.Second)
	checks["Keys"] = firstErr(st.Keys(ctx))
	_, checks["Sub.Read"] = sub.Read(ctx, "k")
	for op, err := range checks {
		if !errors.Is(err, cache.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", op, err)
		}
	}
	if _, err := st.Sub("late"); !errors.Is(err, cache.ErrClosed) {
		t.Errorf("Sub after Close = %v, want ErrClosed", err)
	}
}
