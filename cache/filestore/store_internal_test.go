package filestore

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// logBuffer collects log output safely.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func openTest(t *testing.T, dir string, opts Options) (*Store, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	opts.Dir = dir
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, logs
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, r := range []record{
		{key: "k", version: 1},
		{key: strings.Repeat("K", cache.MaxKeyLen), version: ^uint64(0), expires: time.Now().UnixNano(),
			tags: []string{"a", strings.Repeat("t", cache.MaxKeyLen)}, value: bytes.Repeat([]byte{0, 1, 0xff}, 1000)},
	} {
		b, err := encodeEntry(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeEntry(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.key != r.key || got.version != r.version || got.expires != r.expires ||
			!bytes.Equal(got.value, r.value) || strings.Join(got.tags, ",") != strings.Join(r.tags, ",") {
			t.Fatalf("round trip: got %+v, want %+v", got, r)
		}
		// Every truncation and every single flipped bit is detected.
		for n := range len(b) {
			if _, err := decodeEntry(b[:n]); !errors.Is(err, errCorrupt) {
				t.Fatalf("truncated to %d of %d bytes: error %v, want errCorrupt", n, len(b), err)
			}
		}
		for i := 0; i < len(b); i += 1 + len(b)/500 {
			for bit := range 8 {
				c := bytes.Clone(b)
				c[i] ^= 1 << bit
				if _, err := decodeEntry(c); !errors.Is(err, errCorrupt) {
					t.Fatalf("bit %d of byte %d flipped: error %v, want errCorrupt", bit, i, err)
				}
			}
		}
	}
	if _, err := encodeEntry(record{key: "k", version: 1, tags: make([]string, maxTags+1)}); err == nil {
		t.Fatal("encodeEntry accepted more than maxTags tags")
	}
}

// FuzzDecodeEntry feeds arbitrary bytes to the entry file decoder: it must
// never panic, and whatever it accepts must encode back to the same bytes.
func FuzzDecodeEntry(f *testing.F) {
	for _, r := range []record{
		{key: "k", version: 1},
		{key: "session:abc", version: 42, expires: 1700000000000000000, tags: []string{"user@example.com", "t2"}, value: []byte("hello")},
	} {
		b, _ := encodeEntry(r)
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	f.Add([]byte(magic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeEntry(data)
		if h, herr := decodeHeader(data); herr == nil && err == nil && h.key != r.key {
			t.Fatalf("header and entry decoders disagree: %q vs %q", h.key, r.key)
		}
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("decode error %v does not wrap errCorrupt", err)
			}
			return
		}
		b, err := encodeEntry(r)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(b, data) {
			t.Fatalf("decode/encode is not the identity:\n in %x\nout %x", data, b)
		}
	})
}

func TestCorruptFiles(t *testing.T) {
	ctx := t.Context()
	s, logs := openTest(t, t.TempDir(), Options{})
	for _, k := range []string{"garbage", "truncated", "flipped", "empty", "moved", "good"} {
		if _, err := s.Set(ctx, cache.Item{Key: k, Value: []byte("value of " + k), Tags: []string{"t"}}); err != nil {
			t.Fatal(err)
		}
	}
	path := func(k string) string { return s.entryPath(fileName(k)) }
	mutate := func(k string, f func([]byte) []byte) {
		b, err := os.ReadFile(path(k))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path(k), f(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mutate("garbage", func([]byte) []byte { return []byte("not an entry file at all") })
	mutate("truncated", func(b []byte) []byte { return b[:len(b)-3] })
	mutate("flipped", func(b []byte) []byte { b[len(b)-6] ^= 0x10; return b })
	mutate("empty", func([]byte) []byte { return nil })
	// A valid file of another key under this key's name.
	good, err := os.ReadFile(path("good"))
	if err != nil {
		t.Fatal(err)
	}
	mutate("moved", func([]byte) []byte { return good })

	bad := []string{"garbage", "truncated", "flipped", "empty", "moved"}
	for _, k := range bad {
		if _, err := s.Get(ctx, k); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("Get of corrupt %s: %v, want ErrNotFound", k, err)
		}
	}
	es, err := s.GetMany(ctx, append(bad, "good"))
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range es[:len(bad)] {
		if e.Exists() {
			t.Fatalf("GetMany: corrupt %s exists", bad[i])
		}
	}
	if !es[len(bad)].Exists() {
		t.Fatal("GetMany: good entry missing")
	}
	var all []string
	for e, err := range s.All(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, e.Key)
	}
	if len(all) != 1 || all[0] != "good" {
		t.Fatalf("All = %q, want only good", all)
	}
	if !strings.Contains(logs.String(), "corrupt entry file") {
		t.Fatalf("no warning logged; logs:\n%s", logs)
	}
	// Has and Tagged read only the header: the header-corrupt ones are absent.
	for _, k := range []string{"garbage", "empty", "moved"} {
		if ok, err := s.Has(ctx, k); err != nil || ok {
			t.Fatalf("Has(%s) = %v, %v", k, ok, err)
		}
	}
	// CompareAndSet treats a corrupt entry as absent and replaces it.
	if _, err := s.CompareAndSet(ctx, cache.Item{Key: "garbage", Value: []byte("fixed")}, 0); err != nil {
		t.Fatal(err)
	}
	if e, err := s.Get(ctx, "garbage"); err != nil || string(e.Value) != "fixed" {
		t.Fatalf("after CompareAndSet over a corrupt file: %q, %v", e.Value, err)
	}
	// Garbage collection moves header-corrupt files aside.
	if _, err := s.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"empty", "moved"} {
		if _, err := os.Stat(path(k)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("corrupt %s still in place after garbage collection: %v", k, err)
		}
	}
	matches, _ := filepath.Glob(filepath.Join(s.entriesDir(), "*", badPrefix+"*"))
	if len(matches) < 2 {
		t.Fatalf("quarantined files: %q", matches)
	}
	// Delete of a corrupt entry removes the file and reports false.
	if ok, err := s.Delete(ctx, "flipped"); err != nil || ok {
		t.Fatalf("Delete of a corrupt entry = %v, %v", ok, err)
	}
	if _, err := os.Stat(path("flipped")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("corrupt file still there after Delete: %v", err)
	}
}

func TestStaleTagIndex(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, t.TempDir(), Options{})
	for _, k := range []string{"a", "b"} {
		if _, err := s.Set(ctx, cache.Item{Key: k, Value: []byte(k), Tags: []string{"t"}}); err != nil {
			t.Fatal(err)
		}
	}
	// What a crash can leave: markers for a missing entry and for an entry
	// that no longer carries the tag.
	if err := os.WriteFile(filepath.Join(s.tagDir("t"), fileName("ghost")), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(ctx, cache.Item{Key: "c", Value: []byte("c"), Tags: []string{"other"}}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.tagDir("t"), fileName("c")), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var got []string
	for k, err := range s.Tagged(ctx, "t") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, k)
	}
	if len(got) != 2 {
		t.Fatalf("Tagged = %q, want a and b", got)
	}
	for _, k := range []string{"ghost", "c"} {
		if _, err := os.Stat(filepath.Join(s.tagDir("t"), fileName(k))); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("stale marker for %s not cleaned: %v", k, err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.tagDir("t"), fileName("c")), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := s.FlushByTag(ctx, "t")
	if err != nil || n != 2 {
		t.Fatalf("FlushByTag = %d, %v; want 2", n, err)
	}
	if e, err := s.Get(ctx, "c"); err != nil || string(e.Value) != "c" {
		t.Fatalf("FlushByTag removed c through a stale marker: %v", err)
	}
}

func TestFailedWriteKeepsOldEntry(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, t.TempDir(), Options{})
	v, err := s.Set(ctx, cache.Item{Key: "k", Value: []byte("old"), Tags: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	s.sh.syncFile = func(*os.File) error { return &os.PathError{Op: "fsync", Path: "x", Err: syscall.ENOSPC} }
	for _, write := range []func() error{
		func() error { _, err := s.Set(ctx, cache.Item{Key: "k", Value: []byte("new")}); return err },
		func() error {
			_, err := s.CompareAndSet(ctx, cache.Item{Key: "k", Value: []byte("new")}, v)
			return err
		},
		func() error { return s.SetMany(ctx, []cache.Item{{Key: "k", Value: []byte("new")}}) },
	} {
		err := write()
		if !errors.Is(err, cache.ErrUnavailable) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("write on a full disk: %v, want ErrUnavailable and ENOSPC", err)
		}
	}
	s.sh.syncFile = (*os.File).Sync
	e, err := s.Get(ctx, "k")
	if err != nil || string(e.Value) != "old" || e.Version != v {
		t.Fatalf("after failed writes: %q v%d, %v; want the old entry", e.Value, e.Version, err)
	}
	tmps, _ := filepath.Glob(filepath.Join(s.entriesDir(), "*", tmpPrefix+"*"))
	if len(tmps) != 0 {
		t.Fatalf("temporary files left behind: %q", tmps)
	}
}

func TestUnwritableFolder(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plain-file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(Options{Dir: filepath.Join(file, "sessions")})
	if !errors.Is(err, cache.ErrUnavailable) || !strings.Contains(err.Error(), file) {
		t.Fatalf("Open under a plain file: %v, want ErrUnavailable naming the path", err)
	}
	if _, err := Open(Options{}); err == nil {
		t.Fatal("Open without Dir succeeded")
	}
	if _, err := Open(Options{Dir: t.TempDir(), Namespace: "../x"}); !errors.Is(err, cache.ErrInvalidKey) {
		t.Fatalf("Open with namespace ../x: %v", err)
	}

	// A store whose folder turns unwritable under it (its entries folder is
	// replaced by a plain file): errors are ErrUnavailable with the path.
	ctx := t.Context()
	s, _ := openTest(t, t.TempDir(), Options{})
	if err := os.WriteFile(s.entriesDir(), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = s.Set(ctx, cache.Item{Key: "k", Value: []byte("v")})
	if !errors.Is(err, cache.ErrUnavailable) || !strings.Contains(err.Error(), s.entriesDir()) {
		t.Fatalf("Set into an unusable folder: %v", err)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("Get from an unusable folder: %v", err)
	}
}

func TestGCBatches(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, t.TempDir(), Options{GCBatch: 10})
	var items []cache.Item
	for i := range 25 {
		items = append(items, cache.Item{Key: "e" + string(rune('a'+i)), Value: []byte("x"), Tags: []string{"t"}, TTL: 20 * time.Millisecond})
	}
	items = append(items, cache.Item{Key: "keep", Value: []byte("x"), Tags: []string{"t"}})
	if err := s.SetMany(ctx, items); err != nil {
		t.Fatal(err)
	}
	tok, err := s.Lock(ctx, "short", 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	var got []int
	for range 5 {
		n, err := s.CollectGarbage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
		if n == 0 {
			break
		}
	}
	if len(got) != 4 || got[0] != 10 || got[1] != 10 || got[2] != 5 || got[3] != 0 {
		t.Fatalf("CollectGarbage counts %v, want [10 10 5 0]", got)
	}
	names, _ := readNames(filepath.Join(s.dir, "mutex"))
	if len(names) != 0 {
		t.Fatalf("expired lock file not collected: %q", names)
	}
	if ok, _ := s.Unlock(ctx, "short", tok); ok {
		t.Fatal("Unlock of a collected lock reported true")
	}
	names, _ = readNames(s.tagDir("t"))
	if len(names) != 1 {
		t.Fatalf("tag markers after GC: %d, want 1", len(names))
	}
}

func TestFolderNames(t *testing.T) {
	seen := map[string]string{}
	for _, ns := range []string{"default", "a.b", "A.b", "a:b", ".", "..", "...", ".hidden", "user@example.com",
		strings.Repeat("x", 250), strings.Repeat("x", 100), strings.Repeat("x", 101)} {
		f := folderName(ns)
		if f == "." || f == ".." || strings.ContainsAny(f, "/\\:") || len(f) > 120 || f[0] == '.' {
			t.Fatalf("folderName(%q) = %q is unsafe", ns, f)
		}
		if prev, dup := seen[f]; dup {
			t.Fatalf("folderName(%q) = folderName(%q) = %q", ns, prev, f)
		}
		seen[f] = ns
	}
}

func TestContextWhileWaitingForShard(t *testing.T) {
	s, _ := openTest(t, t.TempDir(), Options{})
	unlock, err := s.lockShard(t.Context(), shardOf(fileName("k")))
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	_, err = s.Set(ctx, cache.Item{Key: "k", Value: []byte("v")})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Set while the shard is held: %v, want DeadlineExceeded", err)
	}
}
