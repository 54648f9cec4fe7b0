package cachetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache"
)

func (s *suite) basic(t *testing.T) {
	b := s.fresh(t)
	ctx := t.Context()

	mustMissing(t, b, "k1")
	ok, err := b.Delete(ctx, "k1")
	noErr(t, err, "Delete missing")
	if ok {
		t.Fatal("Delete of a missing entry reported true")
	}

	val := []byte("hello\x00world\xff")
	v1 := mustSet(t, b, cache.Item{Key: "k1", Value: val, Tags: []string{"t1", "t2"}})
	val[0] = 'X' // the caller's slice is the caller's: the stored value must not change
	e := mustValue(t, b, "k1", "hello\x00world\xff")
	mustTags(t, e, "t1", "t2")
	if e.Version != v1 {
		t.Fatalf("Get version %d, Set returned %d", e.Version, v1)
	}
	if !e.Expires.IsZero() {
		t.Fatalf("entry without TTL has Expires %v", e.Expires)
	}
	e.Value[0] = 'Y' // nor may the reader's copy change it
	mustValue(t, b, "k1", "hello\x00world\xff")
	mustHas(t, b, "k1", true)

	// Set replaces value, tags and lifetime.
	before := time.Now()
	v2 := mustSet(t, b, cache.Item{Key: "k1", Value: []byte("second"), Tags: []string{"t3"}, TTL: time.Hour})
	after := time.Now()
	if v2 == v1 {
		t.Fatalf("overwrite kept version %d", v1)
	}
	e = mustValue(t, b, "k1", "second")
	mustTags(t, e, "t3")
	if e.Version != v2 {
		t.Fatalf("Get version %d, Set returned %d", e.Version, v2)
	}
	mustExpires(t, e, before.Add(time.Hour), after.Add(time.Hour))
	mustSet(t, b, cache.Item{Key: "k1", Value: []byte("third")})
	e = mustValue(t, b, "k1", "third")
	mustTags(t, e)
	if !e.Expires.IsZero() {
		t.Fatalf("overwrite without TTL kept Expires %v", e.Expires)
	}

	// Empty values, the longest key and every allowed character.
	mustSet(t, b, cache.Item{Key: "empty"})
	if e := mustGet(t, b, "empty"); len(e.Value) != 0 {
		t.Fatalf("empty value read back as %q", e.Value)
	}
	long := strings.Repeat("L", cache.MaxKeyLen)
	mustSet(t, b, cache.Item{Key: long, Value: []byte("long"), Tags: []string{long}})
	mustValue(t, b, long, "long")
	mustTagged(t, b, long, long)
	odd := "AZaz09-_.:@"
	mustSet(t, b, cache.Item{Key: odd, Value: []byte("odd"), Tags: []string{odd}})
	mustValue(t, b, odd, "odd")
	mustTagged(t, b, odd, odd)
	// A tag named twice in one item is still one tag.
	mustSet(t, b, cache.Item{Key: "dup", Value: []byte("d"), Tags: []string{"d", "d", "e"}})
	mustTagged(t, b, "d", "dup")
	if n, err := b.FlushByTag(ctx, "d"); err != nil || n != 1 {
		t.Fatalf("FlushByTag of a tag named twice = %d, %v; want 1", n, err)
	}
	mustMissing(t, b, "dup")
	mustTagged(t, b, "e")
	// Keys differing only in case are different keys.
	mustSet(t, b, cache.Item{Key: "Case", Value: []byte("upper")})
	mustSet(t, b, cache.Item{Key: "case", Value: []byte("lower")})
	mustValue(t, b, "Case", "upper")
	mustValue(t, b, "case", "lower")

	ok, err = b.Delete(ctx, "k1")
	noErr(t, err, "Delete")
	if !ok {
		t.Fatal("Delete of a present entry reported false")
	}
	mustMissing(t, b, "k1")
	mustTagged(t, b, "t3")
	ok, err = b.Delete(ctx, "k1")
	noErr(t, err, "Delete again")
	if ok {
		t.Fatal("second Delete reported true")
	}

	if _, err := b.Set(ctx, cache.Item{Key: "neg", Value: []byte("x"), TTL: -time.Second}); err == nil {
		t.Fatal("Set with a negative TTL succeeded")
	}
	mustHas(t, b, "neg", false)
}

func (s *suite) getManySetMany(t *testing.T) {
	b := s.fresh(t)
	ctx := t.Context()
	va := mustSet(t, b, cache.Item{Key: "a", Value: []byte("A")})
	vb := mustSet(t, b, cache.Item{Key: "b", Value: []byte("B"), Tags: []string{"tb"}, TTL: time.Hour})

	es, err := b.GetMany(ctx, []string{"a", "missing", "b", "a"})
	noErr(t, err, "GetMany")
	if len(es) != 4 {
		t.Fatalf("GetMany of 4 keys returned %d entries", len(es))
	}
	for i, want := range []struct {
		key, val string
		ver      cache.Version
	}{{"a", "A", va}, {"missing", "", 0}, {"b", "B", vb}, {"a", "A", va}} {
		e := es[i]
		if e.Key != want.key || string(e.Value) != want.val || e.Version != want.ver || e.Exists() != (want.ver != 0) {
			t.Fatalf("GetMany[%d] = {Key %q Value %q Version %d}, want {%q %q %d}", i, e.Key, e.Value, e.Version, want.key, want.val, want.ver)
		}
	}
	if len(es[1].Tags) != 0 || !es[1].Expires.IsZero() {
		t.Fatalf("GetMany: missing entry carries tags %q / expiry %v", es[1].Tags, es[1].Expires)
	}
	mustTags(t, es[2], "tb")
	if es[2].Expires.IsZero() {
		t.Fatal("GetMany: entry with TTL has no Expires")
	}
	es, err = b.GetMany(ctx, nil)
	noErr(t, err, "GetMany(nil)")
	if len(es) != 0 {
		t.Fatalf("GetMany(nil) returned %d entries", len(es))
	}

	noErr(t, b.SetMany(ctx, nil), "SetMany(nil)")
	items := []cache.Item{
		{Key: "a", Value: []byte("A2"), Tags: []string{"many"}},
		{Key: "c", Value: []byte("C"), Tags: []string{"many", "tc"}, TTL: time.Hour},
		{Key: "d", Value: []byte{}},
	}
	noErr(t, b.SetMany(ctx, items), "SetMany")
	es, err = b.GetMany(ctx, []string{"a", "b", "c", "d"})
	noErr(t, err, "GetMany after SetMany")
	for i, want := range []string{"A2", "B", "C", ""} {
		if !es[i].Exists() || string(es[i].Value) != want {
			t.Fatalf("GetMany[%d] after SetMany = %q (version %d), want %q", i, es[i].Value, es[i].Version, want)
		}
	}
	if es[0].Version == va {
		t.Fatal("SetMany kept the old version of an overwritten entry")
	}
	mustTags(t, es[0], "many")
	mustTags(t, es[2], "many", "tc")
	if es[2].Expires.IsZero() || !es[0].Expires.IsZero() {
		t.Fatalf("SetMany lifetimes: a expires %v (want never), c expires %v (want in an hour)", es[0].Expires, es[2].Expires)
	}
	mustTagged(t, b, "many", "a", "c")

	// A batch of 300 in one call, then read back in one call.
	var batch []cache.Item
	var ks []string
	for i := range 300 {
		k := fmt.Sprintf("bulk%03d", i)
		batch = append(batch, cache.Item{Key: k, Value: []byte("v" + k)})
		ks = append(ks, k)
	}
	noErr(t, b.SetMany(ctx, batch), "SetMany 300")
	es, err = b.GetMany(ctx, ks)
	noErr(t, err, "GetMany 300")
	for i, e := range es {
		if e.Key != ks[i] || string(e.Value) != "v"+ks[i] {
			t.Fatalf("GetMany 300 [%d] = %q=%q", i, e.Key, e.Value)
		}
	}
}

func (s *suite) expiry(t *testing.T) {
	b := s.fresh(t)
	ctx := t.Context()
	ttl := s.o.TTL

	start := time.Now()
	mustSet(t, b, cache.Item{Key: "short", Value: []byte("s"), Tags: []string{"tx"}, TTL: ttl})
	noErr(t, b.SetMany(ctx, []cache.Item{
		{Key: "shortmany", Value: []byte("sm"), Tags: []string{"tx"}, TTL: ttl},
		{Key: "long", Value: []byte("l"), Tags: []string{"tx"}, TTL: time.Hour},
	}), "SetMany")
	mustSet(t, b, cache.Item{Key: "forever", Value: []byte("f"), Tags: []string{"tx"}})
	written := time.Now()

	// Still alive while the lifetime has not run out (checked only when the
	// machine was quick enough for the answer to be meaningful).
	e, err := b.Get(ctx, "short")
	if time.Since(start) < ttl {
		noErr(t, err, "Get before expiry")
		mustExpires(t, e, start.Add(ttl), written.Add(ttl))
	}

	time.Sleep(time.Until(written.Add(ttl + 60*time.Millisecond)))
	mustMissing(t, b, "short")
	mustMissing(t, b, "shortmany")
	mustValue(t, b, "long", "l")
	mustValue(t, b, "forever", "f")
	es, err := b.GetMany(ctx, []string{"short", "long", "shortmany", "forever"})
	noErr(t, err, "GetMany")
	if es[0].Exists() || !es[1].Exists() || es[2].Exists() || !es[3].Exists() {
		t.Fatalf("GetMany after expiry: exists = %v %v %v %v, want false true false true",
			es[0].Exists(), es[1].Exists(), es[2].Exists(), es[3].Exists())
	}
	if es[0].Key != "short" || len(es[0].Value) != 0 {
		t.Fatalf("GetMany: expired entry yielded as {%q %q}", es[0].Key, es[0].Value)
	}
	mustAll(t, b, "long", "forever")
	mustTagged(t, b, "tx", "long", "forever")

	// An expired entry counts as absent for CompareAndSet.
	v, err := b.CompareAndSet(ctx, cache.Item{Key: "short", Value: []byte("again")}, 0)
	noErr(t, err, "CompareAndSet(expected 0) on an expired entry")
	e = mustValue(t, b, "short", "again")
	if e.Version != v || !e.Expires.IsZero() || len(e.Tags) != 0 {
		t.Fatalf("re-created entry: version %d (CAS said %d), expires %v, tags %q", e.Version, v, e.Expires, e.Tags)
	}
	mustTagged(t, b, "tx", "long", "forever")
	// And Set over an expired entry starts afresh.
	mustSet(t, b, cache.Item{Key: "shortmany", Value: []byte("new")})
	mustValue(t, b, "shortmany", "new")
}

func (s *suite) tags(t *testing.T) {
	b := s.fresh(t)
	ctx := t.Context()
	mustSet(t, b, cache.Item{Key: "a", Value: []byte("a"), Tags: []string{"t1", "t2"}})
	mustSet(t, b, cache.Item{Key: "b", Value: []byte("b"), Tags: []string{"t1"}})
	mustSet(t, b, cache.Item{Key: "c", Value: []byte("c"), Tags: []string{"t2"}})
	mustSet(t, b, cache.Item{Key: "d", Value: []byte("d")})
	mustSet(t, b, cache.Item{Key: "e", Value: []byte("e"), Tags: []string{"t1"}})
	mustSet(t, b, cache.Item{Key: "e", Value: []byte("e2"), Tags: []string{"t3"}}) // retagged
	mustSet(t, b, cache.Item{Key: "f", Value: []byte("f"), Tags: []string{"t1"}})
	if _, err := b.Delete(ctx, "f"); err != nil {
		t.Fatal(err)
	}

	mustTagged(t, b, "t1", "a", "b")
	mustTagged(t, b, "t2", "a", "c")
	mustTagged(t, b, "t3", "e")
	mustTagged(t, b, "nobody")

	n, err := b.FlushByTag(ctx, "t1")
	noErr(t, err, "FlushByTag")
	if n != 2 {
		t.Fatalf("FlushByTag t1 = %d, want 2 (a, b; e was retagged, f deleted)", n)
	}
	mustMissing(t, b, "a")
	mustMissing(t, b, "b")
	mustValue(t, b, "c", "c")
	mustValue(t, b, "d", "d")
	mustValue(t, b, "e", "e2")
	mustTagged(t, b, "t1")
	mustTagged(t, b, "t2", "c")
	for _, tag := range []string{"t1", "nobody"} {
		n, err = b.FlushByTag(ctx, tag)
		noErr(t, err, "FlushByTag "+tag)
		if n != 0 {
			t.Fatalf("FlushByTag %s = %d, want 0", tag, n)
		}
	}

	// A tag can be used again after its flush.
	mustSet(t, b, cache.Item{Key: "g", Value: []byte("g"), Tags: []string{"t1"}})
	mustTagged(t, b, "t1", "g")

	// Many entries under one tag; an early break stops the iteration cleanly.
	var items []cache.Item
	var want []string
	for i := range 120 {
		k := fmt.Sprintf("bulk%03d", i)
		items = append(items, cache.Item{Key: k, Value: []byte(k), Tags: []string{"bulk", "x" + strconv.Itoa(i%2)}})
		want = append(want, k)
	}
	noErr(t, b.SetMany(ctx, items), "SetMany")
	mustTagged(t, b, "bulk", want...)
	count := 0
	for _, err := range b.Tagged(ctx, "bulk") {
		noErr(t, err, "Tagged")
		count++
		if count == 5 {
			break
		}
	}
	if count != 5 {
		t.Fatalf("Tagged: broke after 5, counted %d", count)
	}
	n, err = b.FlushByTag(ctx, "x0")
	noErr(t, err, "FlushByTag x0")
	if n != 60 {
		t.Fatalf("FlushByTag x0 = %d, want 60", n)
	}
	if got := keys(t, b.Tagged(ctx, "bulk")); len(got) != 60 {
		t.Fatalf("Tagged bulk after flushing half: %d keys, want 60", len(got))
	}
	mustValue(t, b, "g", "g")
}

func (s *suite) flush(t *testing.T) {
	ctx := t.Context()
	b := s.fresh(t)
	child, err := b.Sub("child")
	noErr(t, err, "Sub")
	other := s.fresh(t)

	vx := mustSet(t, b, cache.Item{Key: "x", Value: []byte("bx"), Tags: []string{"t"}})
	mustSet(t, b, cache.Item{Key: "y", Value: []byte("by"), TTL: time.Hour})
	mustSet(t, child, cache.Item{Key: "x", Value: []byte("cx"), Tags: []string{"t"}})
	mustSet(t, other, cache.Item{Key: "x", Value: []byte("ox"), Tags: []string{"t"}})

	noErr(t, b.Flush(ctx), "Flush")
	mustMissing(t, b, "x")
	mustMissing(t, b, "y")
	mustAll(t, b)
	mustTagged(t, b, "t")
	n, err := b.FlushByTag(ctx, "t")
	noErr(t, err, "FlushByTag after Flush")
	if n != 0 {
		t.Fatalf("FlushByTag after Flush = %d, want 0", n)
	}

	mustValue(t, child, "x", "cx")
	mustTagged(t, child, "t", "x")
	mustValue(t, other, "x", "ox")
	mustTagged(t, other, "t", "x")

	noErr(t, b.Flush(ctx), "Flush of an empty namespace")
	v := mustSet(t, b, cache.Item{Key: "x", Value: []byte("again"), Tags: []string{"t"}})
	if v == vx {
		t.Fatalf("entry re-created after Flush got its old version %d back", v)
	}
	mustTagged(t, b, "t", "x")
	mustValue(t, child, "x", "cx")
}

func (s *suite) all(t *testing.T) {
	const n = 10000
	ctx := t.Context()
	b := s.fresh(t)

	var batch []cache.Item
	for i := range n {
		k := fmt.Sprintf("e%05d", i)
		it := cache.Item{Key: k, Value: []byte("v" + k)}
		if i%10 == 0 {
			it.Tags = []string{"tenth"}
		}
		batch = append(batch, it)
		if len(batch) == 500 {
			noErr(t, b.SetMany(ctx, batch), "SetMany")
			batch = batch[:0]
		}
	}
	tok, err := b.Lock(ctx, "e00000-lock", time.Minute)
	noErr(t, err, "Lock")

	seen := make(map[string]bool, n)
	for e, err := range b.All(ctx) {
		noErr(t, err, "All")
		if seen[e.Key] {
			t.Fatalf("All yielded %q twice", e.Key)
		}
		seen[e.Key] = true
		if string(e.Value) != "v"+e.Key || e.Version == 0 {
			t.Fatalf("All yielded %q = %q version %d", e.Key, e.Value, e.Version)
		}
		if i, _ := strconv.Atoi(e.Key[1:]); (i%10 == 0) != (len(e.Tags) == 1) {
			t.Fatalf("All yielded %q with tags %q", e.Key, e.Tags)
		}
	}
	if len(seen) != n {
		t.Fatalf("All yielded %d entries, want %d (locks are not entries)", len(seen), n)
	}

	// An early break ends the iteration and leaves the backend usable.
	count := 0
	for _, err := range b.All(ctx) {
		noErr(t, err, "All")
		count++
		if count == 10 {
			break
		}
	}
	if count != 10 {
		t.Fatalf("All: broke after 10, counted %d", count)
	}
	mustSet(t, b, cache.Item{Key: "after-break", Value: []byte("ok")})
	mustValue(t, b, "after-break", "ok")
	if _, err := b.Delete(ctx, "after-break"); err != nil {
		t.Fatal(err)
	}

	// Deleting each entry as it is seen: still every entry exactly once.
	clear(seen)
	for e, err := range b.All(ctx) {
		noErr(t, err, "All while deleting")
		if seen[e.Key] {
			t.Fatalf("All (deleting) yielded %q twice", e.Key)
		}
		seen[e.Key] = true
		ok, err := b.Delete(ctx, e.Key)
		noErr(t, err, "Delete during All")
		if !ok {
			t.Fatalf("Delete %q during All reported false", e.Key)
		}
	}
	if len(seen) != n {
		t.Fatalf("All while deleting yielded %d entries, want %d", len(seen), n)
	}
	mustAll(t, b)
	mustTagged(t, b, "tenth")
	ok, err := b.Unlock(ctx, "e00000-lock", tok)
	noErr(t, err, "Unlock")
	if !ok {
		t.Fatal("Unlock after iterating reported false")
	}
}

func (s *suite) collectGarbage(t *testing.T) {
	ctx := t.Context()
	b := s.fresh(t)
	for i := range 5 {
		mustSet(t, b, cache.Item{Key: fmt.Sprintf("gone%d", i), Value: []byte("x"), Tags: []string{"gt"}, TTL: s.o.TTL})
	}
	for i := range 3 {
		mustSet(t, b, cache.Item{Key: fmt.Sprintf("kept%d", i), Value: []byte("x"), Tags: []string{"gt"}})
	}
	mustSet(t, b, cache.Item{Key: "later", Value: []byte("x"), TTL: time.Hour})
	past(s.o.TTL)

	total := 0
	for range 100 {
		n, err := b.CollectGarbage(ctx)
		noErr(t, err, "CollectGarbage")
		if n < 0 {
			t.Fatalf("CollectGarbage returned %d", n)
		}
		total += n
		if n == 0 {
			break
		}
	}
	if s.o.NativeExpiry && total != 0 {
		t.Fatalf("CollectGarbage on a native-expiry backend returned %d, want 0", total)
	}
	if !s.o.NativeExpiry && total != 5 {
		t.Fatalf("CollectGarbage removed %d entries, want 5", total)
	}
	mustAll(t, b, "kept0", "kept1", "kept2", "later")
	mustTagged(t, b, "gt", "kept0", "kept1", "kept2")
	n, err := b.CollectGarbage(ctx)
	noErr(t, err, "CollectGarbage again")
	if n != 0 {
		t.Fatalf("second CollectGarbage = %d, want 0", n)
	}
}

func (s *suite) namespaces(t *testing.T) {
	ctx := t.Context()
	base := Namespace("ns")
	a := s.openNS(t, base)
	b := s.openNS(t, base+"2")

	mustSet(t, a, cache.Item{Key: "k", Value: []byte("A"), Tags: []string{"t"}})
	mustSet(t, b, cache.Item{Key: "k", Value: []byte("B"), Tags: []string{"t"}})
	mustSet(t, a, cache.Item{Key: "only-a", Value: []byte("A")})
	mustValue(t, a, "k", "A")
	mustValue(t, b, "k", "B")
	mustMissing(t, b, "only-a")
	mustAll(t, a, "k", "only-a")
	mustAll(t, b, "k")
	mustTagged(t, a, "t", "k")
	mustTagged(t, b, "t", "k")

	// Locks are per namespace too.
	ta, err := a.Lock(ctx, "L", time.Minute)
	noErr(t, err, "Lock in a")
	tb, err := b.Lock(ctx, "L", time.Minute)
	noErr(t, err, "Lock of the same name in another namespace")
	if ok, err := b.Unlock(ctx, "L", ta); err != nil || ok {
		t.Fatalf("Unlock in b with a's token = %v, %v; want false", ok, err)
	}
	for _, c := range []struct {
		be  cache.Backend
		tok string
	}{{a, ta}, {b, tb}} {
		if ok, err := c.be.Unlock(ctx, "L", c.tok); err != nil || !ok {
			t.Fatalf("Unlock = %v, %v; want true", ok, err)
		}
	}

	n, err := a.FlushByTag(ctx, "t")
	noErr(t, err, "FlushByTag")
	if n != 1 {
		t.Fatalf("FlushByTag in a = %d, want 1", n)
	}
	mustValue(t, b, "k", "B")
	noErr(t, a.Flush(ctx), "Flush a")
	mustValue(t, b, "k", "B")
	mustTagged(t, b, "t", "k")

	// Namespace and key must not run into each other however a backend joins
	// them: namespace "X<sep>p" + key "q" against namespace "X" + key "p<sep>q".
	for _, sep := range []string{".", ":", "-", "_", "@", ""} {
		root := Namespace("nj")
		outer := s.openNS(t, root)
		inner := s.openNS(t, root+sep+"p")
		mustSet(t, outer, cache.Item{Key: "p" + sep + "q", Value: []byte("outer"), Tags: []string{"p" + sep + "t"}})
		mustSet(t, inner, cache.Item{Key: "q", Value: []byte("inner"), Tags: []string{"t"}})
		mustValue(t, outer, "p"+sep+"q", "outer")
		mustValue(t, inner, "q", "inner")
		mustMissing(t, outer, "q")
		mustMissing(t, inner, "p"+sep+"q")
		mustAll(t, outer, "p"+sep+"q")
		mustAll(t, inner, "q")
		mustTagged(t, outer, "t")
		mustTagged(t, inner, "t", "q")
		noErr(t, outer.Flush(ctx), "Flush outer")
		mustValue(t, inner, "q", "inner")
		mustSet(t, outer, cache.Item{Key: "p" + sep + "q", Value: []byte("outer")})
		noErr(t, inner.Flush(ctx), "Flush inner")
		mustValue(t, outer, "p"+sep+"q", "outer")
	}
}

func (s *suite) sub(t *testing.T) {
	ctx := t.Context()
	ns := Namespace("sb")
	root := s.openNS(t, ns)
	child, err := root.Sub("child")
	noErr(t, err, "Sub")
	if got, want := child.Namespace(), ns+".child"; got != want {
		t.Fatalf("Sub namespace %q, want %q", got, want)
	}
	grand, err := child.Sub("g")
	noErr(t, err, "Sub of Sub")
	if got, want := grand.Namespace(), ns+".child.g"; got != want {
		t.Fatalf("Sub of Sub namespace %q, want %q", got, want)
	}
	for _, bad := range []string{"", "a/b", "a b", strings.Repeat("x", cache.MaxKeyLen)} {
		if _, err := root.Sub(bad); !errors.Is(err, cache.ErrInvalidKey) {
			t.Fatalf("Sub(%q): error %v, want ErrInvalidKey", bad, err)
		}
	}

	mustSet(t, root, cache.Item{Key: "k", Value: []byte("root"), Tags: []string{"t"}})
	mustSet(t, root, cache.Item{Key: "child.k", Value: []byte("dotted"), Tags: []string{"t"}})
	mustSet(t, child, cache.Item{Key: "k", Value: []byte("child"), Tags: []string{"t"}})
	mustSet(t, grand, cache.Item{Key: "k", Value: []byte("grand"), Tags: []string{"t"}})
	mustValue(t, root, "k", "root")
	mustValue(t, child, "k", "child")
	mustValue(t, grand, "k", "grand")
	mustAll(t, root, "k", "child.k")
	mustAll(t, child, "k")
	mustTagged(t, child, "t", "k")

	// A second Sub of the same name is the same namespace.
	again, err := root.Sub("child")
	noErr(t, err, "Sub again")
	mustValue(t, again, "k", "child")

	// A Sub and a backend opened on the full namespace share the entries.
	direct := s.openNS(t, ns+".child")
	mustSet(t, direct, cache.Item{Key: "direct", Value: []byte("d")})
	if e, err := child.Get(ctx, "direct"); err == nil {
		if string(e.Value) != "d" {
			t.Fatalf("Sub sees %q written through a backend opened on its namespace, want d", e.Value)
		}
	} else if !errors.Is(err, cache.ErrNotFound) {
		t.Fatal(err)
	}

	n, err := child.FlushByTag(ctx, "t")
	noErr(t, err, "FlushByTag child")
	if n != 1 {
		t.Fatalf("FlushByTag in child = %d, want 1", n)
	}
	mustValue(t, root, "k", "root")
	mustValue(t, grand, "k", "grand")
	noErr(t, root.Flush(ctx), "Flush root")
	mustValue(t, grand, "k", "grand")
	mustSet(t, child, cache.Item{Key: "k", Value: []byte("child")})
	noErr(t, child.Flush(ctx), "Flush child")
	mustValue(t, grand, "k", "grand")
}

func badKeys() []string {
	return []string{
		"",
		strings.Repeat("k", cache.MaxKeyLen+1),
		"a b", "a/b", "../etc", `a\b`, "ä", "a\x00b", "a\nb", "*", "a?", "{x}", "a%2F", "a#b", "a,b",
	}
}

func (s *suite) invalidKeys(t *testing.T) {
	ctx := t.Context()
	b := s.fresh(t)
	mustSet(t, b, cache.Item{Key: "good", Value: []byte("g"), Tags: []string{"t"}})
	tok, err := b.Lock(ctx, "good", time.Minute)
	noErr(t, err, "Lock")
	for _, bad := range badKeys() {
		chk := func(what string, err error) {
			t.Helper()
			if !errors.Is(err, cache.ErrInvalidKey) {
				t.Fatalf("%s with %q: error %v, want ErrInvalidKey", what, bad, err)
			}
		}
		_, err := b.Get(ctx, bad)
		chk("Get", err)
		_, err = b.GetMany(ctx, []string{"good", bad})
		chk("GetMany", err)
		_, err = b.Set(ctx, cache.Item{Key: bad, Value: []byte("x")})
		chk("Set", err)
		_, err = b.Set(ctx, cache.Item{Key: "new", Value: []byte("x"), Tags: []string{"ok", bad}})
		chk("Set with tag", err)
		err = b.SetMany(ctx, []cache.Item{{Key: "new", Value: []byte("x")}, {Key: bad}})
		chk("SetMany", err)
		err = b.SetMany(ctx, []cache.Item{{Key: "new", Value: []byte("x")}, {Key: "new2", Tags: []string{bad}}})
		chk("SetMany with tag", err)
		_, err = b.CompareAndSet(ctx, cache.Item{Key: bad, Value: []byte("x")}, 0)
		chk("CompareAndSet", err)
		_, err = b.CompareAndSet(ctx, cache.Item{Key: "new", Value: []byte("x"), Tags: []string{bad}}, 0)
		chk("CompareAndSet with tag", err)
		_, err = b.Delete(ctx, bad)
		chk("Delete", err)
		_, err = b.Has(ctx, bad)
		chk("Has", err)
		_, err = b.FlushByTag(ctx, bad)
		chk("FlushByTag", err)
		chk("Tagged", firstErr(b.Tagged(ctx, bad)))
		_, err = b.Lock(ctx, bad, time.Minute)
		chk("Lock", err)
		_, err = b.Unlock(ctx, bad, tok)
		chk("Unlock", err)
		_, err = b.Sub(bad)
		chk("Sub", err)
	}
	// Nothing was written by the refused calls.
	mustAll(t, b, "good")
	mustTagged(t, b, "t", "good")
	mustHas(t, b, "new", false)
	ok, err := b.Unlock(ctx, "good", tok)
	if err != nil || !ok {
		t.Fatalf("Unlock = %v, %v", ok, err)
	}
}

func (s *suite) valueTooLarge(t *testing.T) {
	ctx := t.Context()
	b := s.fresh(t)
	limit := cache.DefaultMaxValueSize
	full := pattern(limit, 7)
	v := mustSet(t, b, cache.Item{Key: "big", Value: full, Tags: []string{"t"}})
	if e := mustGet(t, b, "big"); !bytes.Equal(e.Value, full) {
		t.Fatalf("value of exactly the limit read back as %d bytes (differs)", len(e.Value))
	}
	over := pattern(limit+1, 9)
	_, err := b.Set(ctx, cache.Item{Key: "big", Value: over})
	isErr(t, err, cache.ErrValueTooLarge, "Set limit+1")
	_, err = b.CompareAndSet(ctx, cache.Item{Key: "big", Value: over}, v)
	isErr(t, err, cache.ErrValueTooLarge, "CompareAndSet limit+1")
	err = b.SetMany(ctx, []cache.Item{{Key: "small", Value: []byte("s")}, {Key: "big2", Value: over}})
	isErr(t, err, cache.ErrValueTooLarge, "SetMany limit+1")
	e := mustGet(t, b, "big")
	if e.Version != v || !bytes.Equal(e.Value, full) {
		t.Fatal("a refused oversized write changed the entry")
	}
	mustHas(t, b, "small", false)
	mustHas(t, b, "big2", false)
}

func (s *suite) context(t *testing.T) {
	b := s.fresh(t)
	ctx := t.Context()
	v := mustSet(t, b, cache.Item{Key: "k", Value: []byte("orig"), Tags: []string{"t"}})
	tok, err := b.Lock(ctx, "held", time.Minute)
	noErr(t, err, "Lock")

	c := cancelled(t)
	item := cache.Item{Key: "k", Value: []byte("changed"), Tags: []string{"t"}}
	calls := []struct {
		name string
		f    func() error
	}{
		{"Get", func() error { _, err := b.Get(c, "k"); return err }},
		{"GetMany", func() error { _, err := b.GetMany(c, []string{"k"}); return err }},
		{"Set", func() error { _, err := b.Set(c, item); return err }},
		{"SetMany", func() error { return b.SetMany(c, []cache.Item{item}) }},
		{"CompareAndSet", func() error { _, err := b.CompareAndSet(c, item, v); return err }},
		{"Delete", func() error { _, err := b.Delete(c, "k"); return err }},
		{"Has", func() error { _, err := b.Has(c, "k"); return err }},
		{"Flush", func() error { return b.Flush(c) }},
		{"FlushByTag", func() error { _, err := b.FlushByTag(c, "t"); return err }},
		{"Tagged", func() error { return firstErr(b.Tagged(c, "t")) }},
		{"All", func() error { return firstErr(b.All(c)) }},
		{"CollectGarbage", func() error { _, err := b.CollectGarbage(c); return err }},
		{"Lock", func() error { _, err := b.Lock(c, "other", time.Minute); return err }},
		{"Unlock", func() error { _, err := b.Unlock(c, "held", tok); return err }},
		{"WaitLock", func() error { _, err := cache.WaitLock(c, b, "held", time.Minute, time.Minute); return err }},
	}
	for _, call := range calls {
		err := within(t, 5*time.Second, call.name+" with a cancelled context", call.f)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%s with a cancelled context: error %v, want one matching context.Canceled", call.name, err)
		}
		if errors.Is(err, cache.ErrUnavailable) {
			t.Fatalf("%s with a cancelled context: %v matches ErrUnavailable (the caller cancelled, the store is fine)", call.name, err)
		}
	}
	dl, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	_, err = b.Get(dl, "k")
	isErr(t, err, context.DeadlineExceeded, "Get with a past deadline")
	_, err = b.Set(dl, item)
	isErr(t, err, context.DeadlineExceeded, "Set with a past deadline")

	// Nothing was changed by the cancelled calls.
	e := mustValue(t, b, "k", "orig")
	if e.Version != v {
		t.Fatal("a cancelled call changed the entry's version")
	}
	mustTagged(t, b, "t", "k")
	if _, err := b.Lock(ctx, "held", time.Minute); !errors.Is(err, cache.ErrLocked) {
		t.Fatalf("a cancelled Unlock released the lock (Lock: %v)", err)
	}

	// Cancelling during an iteration ends it with the context's error.
	var items []cache.Item
	for i := range 500 {
		items = append(items, cache.Item{Key: fmt.Sprintf("it%03d", i), Value: []byte("x"), Tags: []string{"it"}})
	}
	noErr(t, b.SetMany(ctx, items), "SetMany")
	for _, name := range []string{"All", "Tagged"} {
		ictx, icancel := context.WithCancel(ctx)
		var got error
		n := 0
		if name == "All" {
			for _, err := range b.All(ictx) {
				if err != nil {
					got = err
					break
				}
				n++
				icancel()
			}
		} else {
			for _, err := range b.Tagged(ictx, "it") {
				if err != nil {
					got = err
					break
				}
				n++
				icancel()
			}
		}
		icancel()
		if !errors.Is(got, context.Canceled) {
			t.Fatalf("%s cancelled after the first of 500+ entries: ended after %d with error %v, want context.Canceled", name, n, got)
		}
	}
}

func (s *suite) versions(t *testing.T) {
	ctx := t.Context()
	b := s.fresh(t)
	seen := map[cache.Version]string{}
	note := func(v cache.Version, what string) {
		t.Helper()
		if v == 0 {
			t.Fatalf("%s: version 0", what)
		}
		if prev, dup := seen[v]; dup {
			t.Fatalf("%s: version %d was already given to %s", what, v, prev)
		}
		seen[v] = what
	}
	for i := range 20 {
		v := mustSet(t, b, cache.Item{Key: "k", Value: []byte(strconv.Itoa(i))})
		note(v, fmt.Sprintf("Set #%d", i))
		if e := mustGet(t, b, "k"); e.Version != v {
			t.Fatalf("Get version %d, Set returned %d", e.Version, v)
		}
		v2 := mustSet(t, b, cache.Item{Key: "k", Value: []byte(strconv.Itoa(i))})
		note(v2, fmt.Sprintf("Set again #%d (same value)", i))
		if _, err := b.Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		noErr(t, b.SetMany(ctx, []cache.Item{{Key: "k", Value: []byte("m")}}), "SetMany")
		e := mustGet(t, b, "k")
		note(e.Version, fmt.Sprintf("SetMany #%d", i))
		if _, err := b.Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		v3, err := b.CompareAndSet(ctx, cache.Item{Key: "k", Value: []byte("c")}, 0)
		noErr(t, err, "CompareAndSet create")
		note(v3, fmt.Sprintf("CompareAndSet #%d", i))
		if e := mustGet(t, b, "k"); e.Version != v3 {
			t.Fatalf("Get version %d, CompareAndSet returned %d", e.Version, v3)
		}
		if _, err := b.Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
	}
	// The same version from All, GetMany and Get.
	v := mustSet(t, b, cache.Item{Key: "k", Value: []byte("x")})
	es, err := b.GetMany(ctx, []string{"k"})
	noErr(t, err, "GetMany")
	all := entries(t, b)
	if es[0].Version != v || all["k"].Version != v {
		t.Fatalf("versions differ: Set %d, GetMany %d, All %d", v, es[0].Version, all["k"].Version)
	}
}

func (s *suite) compareAndSet(t *testing.T) {
	ctx := t.Context()
	b := s.fresh(t)
	before := time.Now()
	v1, err := b.CompareAndSet(ctx, cache.Item{Key: "k", Value: []byte("1"), Tags: []string{"ct"}, TTL: time.Hour}, 0)
	noErr(t, err, "CompareAndSet create")
	after := time.Now()
	if v1 == 0 {
		t.Fatal("CompareAndSet returned version 0")
	}
	e := mustValue(t, b, "k", "1")
	mustTags(t, e, "ct")
	mustExpires(t, e, before.Add(time.Hour), after.Add(time.Hour))
	if e.Version != v1 {
		t.Fatalf("Get version %d, CompareAndSet returned %d", e.Version, v1)
	}
	mustTagged(t, b, "ct", "k")

	wrong := v1 ^ 1
	if wrong == 0 {
		wrong = 2
	}
	for _, exp := range []cache.Version{0, wrong} {
		_, err = b.CompareAndSet(ctx, cache.Item{Key: "k", Value: []byte("bad")}, exp)
		isErr(t, err, cache.ErrConflict, fmt.Sprintf("CompareAndSet expecting %d over %d", exp, v1))
	}
	mustValue(t, b, "k", "1")
	v2, err := b.CompareAndSet(ctx, cache.Item{Key: "k", Value: []byte("2")}, v1)
	noErr(t, err, "CompareAndSet update")
	if v2 == v1 || v2 == 0 {
		t.Fatalf("CompareAndSet update returned %d (old %d)", v2, v1)
	}
	e = mustValue(t, b, "k", "2")
	mustTags(t, e)
	if !e.Expires.IsZero() {
		t.Fatal("CompareAndSet without TTL kept the old lifetime")
	}
	mustTagged(t, b, "ct")
	_, err = b.CompareAndSet(ctx, cache.Item{Key: "k", Value: []byte("stale")}, v1)
	isErr(t, err, cache.ErrConflict, "CompareAndSet with a stale version")

	_, err = b.CompareAndSet(ctx, cache.Item{Key: "missing", Value: []byte("x")}, v2)
	isErr(t, err, cache.ErrConflict, "CompareAndSet expecting a version of a missing entry")
	mustHas(t, b, "missing", false)

	// A deleted entry's version is dead.
	if _, err := b.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	_, err = b.CompareAndSet(ctx, cache.Item{Key: "k", Value: []byte("x")}, v2)
	isErr(t, err, cache.ErrConflict, "CompareAndSet with the version of a deleted entry")
	v3, err := b.CompareAndSet(ctx, cache.Item{Key: "k", Value: []byte("3")}, 0)
	noErr(t, err, "CompareAndSet re-create")
	if v3 == v1 || v3 == v2 {
		t.Fatalf("re-created entry got an old version %d back", v3)
	}
	// A plain Set in between makes the version read before it stale.
	mustSet(t, b, cache.Item{Key: "k", Value: []byte("4")})
	_, err = b.CompareAndSet(ctx, cache.Item{Key: "k", Value: []byte("x")}, v3)
	isErr(t, err, cache.ErrConflict, "CompareAndSet after an intervening Set")
	mustValue(t, b, "k", "4")
}

func (s *suite) casCounter(t *testing.T) {
	const workers, each = 32, 50
	ctx := t.Context()
	b := s.fresh(t)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range each {
				if _, err := Increment(ctx, b, "counter"); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Increment: %v", err)
	}
	mustValue(t, b, "counter", strconv.Itoa(workers*each))
}

func (s *suite) lock(t *testing.T) {
	ctx := t.Context()
	b := s.fresh(t)
	tok, err := b.Lock(ctx, "L", time.Minute)
	noErr(t, err, "Lock")
	if tok == "" {
		t.Fatal("Lock returned an empty token")
	}
	_, err = b.Lock(ctx, "L", time.Minute)
	isErr(t, err, cache.ErrLocked, "second Lock")
	for _, other := range []string{"", "not-the-token", tok + "x"} {
		ok, err := b.Unlock(ctx, "L", other)
		if err != nil && !errors.Is(err, cache.ErrInvalidKey) {
			t.Fatalf("Unlock with token %q: %v", other, err)
		}
		if ok {
			t.Fatalf("Unlock with token %q released the lock", other)
		}
	}
	_, err = b.Lock(ctx, "L", time.Minute)
	isErr(t, err, cache.ErrLocked, "Lock after a stranger's Unlock")

	// Locks are not entries.
	mustMissing(t, b, "L")
	mustAll(t, b)
	mustSet(t, b, cache.Item{Key: "L", Value: []byte("entry")})
	if ok, err := b.Delete(ctx, "L"); err != nil || !ok {
		t.Fatalf("Delete entry L = %v, %v", ok, err)
	}
	_, err = b.Lock(ctx, "L", time.Minute)
	isErr(t, err, cache.ErrLocked, "Lock after deleting the entry of the same name")

	// Another lock name is independent.
	tok2, err := b.Lock(ctx, "M", time.Minute)
	noErr(t, err, "Lock M")

	ok, err := b.Unlock(ctx, "L", tok)
	noErr(t, err, "Unlock")
	if !ok {
		t.Fatal("owner's Unlock reported false")
	}
	ok, err = b.Unlock(ctx, "L", tok)
	noErr(t, err, "second Unlock")
	if ok {
		t.Fatal("second Unlock reported true")
	}
	tok3, err := b.Lock(ctx, "L", time.Minute)
	noErr(t, err, "Lock after Unlock")
	if tok3 == tok {
		t.Fatal("a new lock got the old owner's token")
	}
	if ok, err := b.Unlock(ctx, "M", tok2); err != nil || !ok {
		t.Fatalf("Unlock M = %v, %v", ok, err)
	}
	if ok, err := b.Unlock(ctx, "L", tok3); err != nil || !ok {
		t.Fatalf("Unlock L = %v, %v", ok, err)
	}
}

func (s *suite) lockExpiry(t *testing.T) {
	ctx := t.Context()
	b := s.fresh(t)
	ttl := s.o.TTL
	start := time.Now()
	old, err := b.Lock(ctx, "L", ttl)
	noErr(t, err, "Lock")
	taken := time.Now()
	_, err = b.Lock(ctx, "L", time.Minute)
	if time.Since(start) < ttl {
		isErr(t, err, cache.ErrLocked, "Lock while held")
	}
	time.Sleep(time.Until(taken.Add(ttl + 60*time.Millisecond)))

	nw, err := b.Lock(ctx, "L", time.Minute)
	noErr(t, err, "Lock after expiry")
	if nw == old {
		t.Fatal("the new owner got the expired owner's token")
	}
	ok, err := b.Unlock(ctx, "L", old)
	noErr(t, err, "old owner's Unlock")
	if ok {
		t.Fatal("the expired owner's Unlock reported true")
	}
	_, err = b.Lock(ctx, "L", time.Minute)
	isErr(t, err, cache.ErrLocked, "Lock after the old owner's Unlock (the new lock must remain)")
	ok, err = b.Unlock(ctx, "L", nw)
	noErr(t, err, "new owner's Unlock")
	if !ok {
		t.Fatal("the new owner's Unlock reported false")
	}
}

func (s *suite) lockExclusion(t *testing.T) {
	const workers, rounds = 8, 10
	ctx := t.Context()
	b := s.fresh(t)
	var inside, overlaps, total atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range rounds {
				tok, err := cache.WaitLock(ctx, b, "crit", 10*time.Second, 20*time.Second)
				if err != nil {
					errs <- fmt.Errorf("wait lock: %w", err)
					return
				}
				if inside.Add(1) > 1 {
					overlaps.Add(1)
				}
				total.Add(1)
				time.Sleep(200 * time.Microsecond)
				inside.Add(-1)
				ok, err := b.Unlock(ctx, "crit", tok)
				if err != nil || !ok {
					errs <- fmt.Errorf("unlock = %v, %v", ok, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if m := overlaps.Load(); m != 0 {
		t.Fatalf("%d times a second owner entered while the lock was held", m)
	}
	if n := total.Load(); n != workers*rounds {
		t.Fatalf("%d critical sections ran, want %d", n, workers*rounds)
	}
}

func (s *suite) waitLock(t *testing.T) {
	ctx := t.Context()
	b := s.fresh(t)
	ttl := s.o.TTL

	// Held for long: WaitLock gives up after its wait with ErrLocked.
	tok, err := b.Lock(ctx, "long", time.Minute)
	noErr(t, err, "Lock")
	_, err = cache.WaitLock(ctx, b, "long", time.Minute, 50*time.Millisecond)
	isErr(t, err, cache.ErrLocked, "WaitLock on a held lock")

	// Released meanwhile: WaitLock gets it.
	go func() {
		time.Sleep(50 * time.Millisecond)
		_, _ = b.Unlock(context.Background(), "long", tok)
	}()
	tok2, err := cache.WaitLock(ctx, b, "long", time.Minute, 10*time.Second)
	noErr(t, err, "WaitLock while the owner releases")
	if ok, err := b.Unlock(ctx, "long", tok2); err != nil || !ok {
		t.Fatalf("Unlock = %v, %v", ok, err)
	}

	// Never released but expiring: WaitLock gets it after the lifetime.
	_, err = b.Lock(ctx, "short", ttl)
	noErr(t, err, "Lock short")
	tok3, err := cache.WaitLock(ctx, b, "short", time.Minute, 10*time.Second)
	noErr(t, err, "WaitLock on an expiring lock")
	if ok, err := b.Unlock(ctx, "short", tok3); err != nil || !ok {
		t.Fatalf("Unlock = %v, %v", ok, err)
	}

	// A context ending while waiting.
	_, err = b.Lock(ctx, "long", time.Minute)
	noErr(t, err, "Lock")
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = cache.WaitLock(wctx, b, "long", time.Minute, time.Minute)
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, cache.ErrLocked) {
		t.Fatalf("WaitLock with an ending context: %v", err)
	}
}

func (s *suite) closed(t *testing.T) {
	ctx := t.Context()
	b := s.fresh(t)
	mustSet(t, b, cache.Item{Key: "k", Value: []byte("v")})
	sub, err := b.Sub("s")
	noErr(t, err, "Sub")
	noErr(t, sub.Close(), "Close of a Sub")
	mustSet(t, sub, cache.Item{Key: "k", Value: []byte("still open")})
	mustValue(t, b, "k", "v")

	noErr(t, b.Close(), "Close")
	item := cache.Item{Key: "k", Value: []byte("x")}
	for _, be := range []cache.Backend{b, sub} {
		calls := []struct {
			name string
			f    func() error
		}{
			{"Get", func() error { _, err := be.Get(ctx, "k"); return err }},
			{"GetMany", func() error { _, err := be.GetMany(ctx, []string{"k"}); return err }},
			{"Set", func() error { _, err := be.Set(ctx, item); return err }},
			{"SetMany", func() error { return be.SetMany(ctx, []cache.Item{item}) }},
			{"CompareAndSet", func() error { _, err := be.CompareAndSet(ctx, item, 0); return err }},
			{"Delete", func() error { _, err := be.Delete(ctx, "k"); return err }},
			{"Has", func() error { _, err := be.Has(ctx, "k"); return err }},
			{"Flush", func() error { return be.Flush(ctx) }},
			{"FlushByTag", func() error { _, err := be.FlushByTag(ctx, "t"); return err }},
			{"Tagged", func() error { return firstErr(be.Tagged(ctx, "t")) }},
			{"All", func() error { return firstErr(be.All(ctx)) }},
			{"CollectGarbage", func() error { _, err := be.CollectGarbage(ctx); return err }},
			{"Lock", func() error { _, err := be.Lock(ctx, "l", time.Minute); return err }},
			{"Unlock", func() error { _, err := be.Unlock(ctx, "l", "tok"); return err }},
		}
		for _, c := range calls {
			err := within(t, 5*time.Second, c.name+" after Close", c.f)
			if !errors.Is(err, cache.ErrClosed) {
				t.Fatalf("%s on %s after Close: error %v, want ErrClosed", c.name, be.Namespace(), err)
			}
		}
		if s2, err := be.Sub("x"); err == nil {
			if _, err := s2.Get(ctx, "k"); !errors.Is(err, cache.ErrClosed) {
				t.Fatalf("Get on a Sub made after Close: %v, want ErrClosed", err)
			}
		} else if !errors.Is(err, cache.ErrClosed) {
			t.Fatalf("Sub after Close: %v, want nil or ErrClosed", err)
		}
	}
	if err := b.Close(); err != nil && !errors.Is(err, cache.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}
