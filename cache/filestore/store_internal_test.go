package filestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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

// recordPath is the path of the record file of key.
func recordPath(s *Store, key string) string {
	return filepath.Join(s.shardDir(fileName(key)), fileName(key))
}

func mustWrite(t *testing.T, s *Store, key string, w cache.Write) cache.Version {
	t.Helper()
	v, err := s.Write(t.Context(), key, w)
	if err != nil {
		t.Fatalf("Write(%q): %v", key, err)
	}
	return v
}

func create(key string, tags ...string) cache.Write {
	return cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("f", []byte("value of "+key))}, AddTags: tags}
}

func collectKeys(t *testing.T, seq func(func(string, error) bool)) []string {
	t.Helper()
	var out []string
	for k, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// names lists the files of dir (none when it is missing).
func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestCorruptFiles(t *testing.T) {
	ctx := t.Context()
	s, logs := openTest(t, t.TempDir(), Options{})
	keys := []string{"garbage", "truncated", "flipped", "moved", "future", "good"}
	for _, k := range keys {
		mustWrite(t, s, k, create(k, "t"))
	}
	path := func(k string) string { return recordPath(s, k) }
	mutate := func(k string, f func([]byte) []byte) {
		b, err := os.ReadFile(path(k))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path(k), f(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	good, err := os.ReadFile(path("good"))
	if err != nil {
		t.Fatal(err)
	}
	mutate("garbage", func([]byte) []byte { return []byte("not a record file at all") })
	mutate("truncated", func(b []byte) []byte { return b[:len(b)-3] })
	mutate("flipped", func(b []byte) []byte { b[len(b)-6] ^= 0x10; return b })
	mutate("moved", func([]byte) []byte { return good }) // a valid file of another key
	mutate("future", func(b []byte) []byte { b[3] = 9; return b })

	bad := keys[:5]
	for _, k := range bad {
		if _, err := s.Read(ctx, k); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("Read of corrupt %s: %v, want ErrNotFound", k, err)
		}
		if _, err := s.Write(ctx, k, cache.Write{Fields: []cache.FieldWrite{cache.Set("f", []byte("x"))}}); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("Write to corrupt %s: %v, want ErrNotFound", k, err)
		}
	}
	rs, err := s.ReadMany(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if r.Exists() != (keys[i] == "good") {
			t.Fatalf("ReadMany: %s exists = %v", keys[i], r.Exists())
		}
	}
	if got := collectKeys(t, s.Keys(ctx)); !slices.Equal(got, []string{"good"}) {
		t.Fatalf("Keys = %q, want only good", got)
	}
	if got := collectKeys(t, s.Tagged(ctx, "t")); !slices.Equal(got, []string{"good"}) {
		t.Fatalf("Tagged = %q, want only good", got)
	}
	for _, want := range []string{"corrupt record file", "format version 9", "belongs elsewhere", "checksum"} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("no warning saying %q; logs:\n%s", want, logs)
		}
	}
	// Create treats a corrupt file as absent and replaces it.
	mustWrite(t, s, "garbage", create("garbage"))
	if r, err := s.Read(ctx, "garbage"); err != nil || string(r.Fields[0].Value) != "value of garbage" {
		t.Fatalf("after Create over a corrupt file: %+v, %v", r, err)
	}
	// Delete removes a corrupt file and reports false.
	if ok, err := s.Delete(ctx, "flipped"); err != nil || ok {
		t.Fatalf("Delete of a corrupt file = %v, %v", ok, err)
	}
	if _, err := os.Stat(path("flipped")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("corrupt file still there after Delete: %v", err)
	}
	// Garbage collection moves the rest aside.
	if _, err := s.CollectGarbage(ctx, cache.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"truncated", "moved", "future"} {
		if _, err := os.Stat(path(k)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("corrupt %s still in place after garbage collection: %v", k, err)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(path(k)), corruptPrefix+fileName(k))); err != nil {
			t.Fatalf("corrupt %s not moved aside: %v", k, err)
		}
	}
	if got := collectKeys(t, s.Keys(ctx)); !slices.Equal(got, []string{"garbage", "good"}) {
		t.Fatalf("Keys after garbage collection = %q", got)
	}
}

func TestStaleTagIndex(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, t.TempDir(), Options{})
	for _, k := range []string{"a", "b", "c", "d"} {
		mustWrite(t, s, k, create(k, "t"))
	}
	marker := func(k string) string { return filepath.Join(s.tagDir("t"), fileName(k)) }
	// What a crash or a Delete leaves: entries for a missing record, for a record
	// that no longer has the tag.
	if err := os.WriteFile(marker("ghost"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s, "other", create("other", "u"))
	if err := os.WriteFile(marker("other"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker("d")); err != nil {
		t.Fatalf("Delete touched the tag index: %v", err)
	}
	if got := collectKeys(t, s.Tagged(ctx, "t")); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("Tagged = %q", got)
	}
	for _, k := range []string{"ghost", "other", "d"} {
		if _, err := os.Stat(marker(k)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("stale entry for %s not removed by Tagged: %v", k, err)
		}
	}
	if _, err := os.Stat(marker("a")); err != nil {
		t.Fatalf("live entry removed: %v", err)
	}
	// CollectGarbage removes entries of missing records, and empty tag folders.
	if _, err := s.Delete(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s, "e", create("e", "gone"))
	if _, err := s.Delete(ctx, "e"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CollectGarbage(ctx, cache.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker("c")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("entry of deleted c not collected: %v", err)
	}
	if _, err := os.Stat(s.tagDir("gone")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("empty tag folder not collected: %v", err)
	}
	if got := names(t, s.shardDir(fileName("ghost"))); len(got) != 0 && slices.Contains(got, fileName("ghost")) {
		t.Fatalf("cleaning the index left a placeholder: %q", got)
	}
}

// TestLeftovers: what dead writers leave is invisible, and CollectGarbage
// removes it; a temporary file whose writer still holds the record stays.
func TestLeftovers(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, t.TempDir(), Options{})
	mustWrite(t, s, "live", create("live"))
	live := fileName("live")
	dir := s.shardDir(live)
	ghost := fileName("ghost")
	if err := os.MkdirAll(s.shardDir(ghost), 0o700); err != nil {
		t.Fatal(err)
	}
	leftovers := []string{
		filepath.Join(dir, tempPrefix+live+"-dead1"),                                     // an interrupted write of a record
		filepath.Join(s.shardDir(ghost), tempPrefix+ghost+"-dead"),                       // an interrupted create
		filepath.Join(s.shardDir(ghost), ghost),                                          // its placeholder
		filepath.Join(s.locksDir(), tempPrefix+fileName("l")+"-x"),                       // an interrupted Lock
		filepath.Join(s.sh.dir, trashPrefix+filepath.Base(s.dir)+".abc", "records", "x"), // an interrupted Flush
	}
	for _, p := range leftovers {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	other := filepath.Join(s.sh.dir, trashPrefix+filepath.Base(s.dir)+".child.abc") // namespace default.child's
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(ctx, "ghost"); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Read of a placeholder: %v", err)
	}
	if got := collectKeys(t, s.Keys(ctx)); !slices.Equal(got, []string{"live"}) {
		t.Fatalf("Keys with leftovers = %q", got)
	}
	if _, err := s.Lock(ctx, "short", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)

	// A writer holding "live" with its temporary file: the collector waits for
	// it, so the file stays while it is held.
	h, err := s.hold(ctx, dir, live, false)
	if err != nil {
		t.Fatal(err)
	}
	inflight := filepath.Join(dir, tempPrefix+live+"-inflight")
	if err := os.WriteFile(inflight, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = s.CollectGarbage(short, cache.GCOptions{})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("CollectGarbage while a writer holds the record: %v, want DeadlineExceeded", err)
	}
	if _, err := os.Stat(inflight); err != nil {
		t.Fatalf("a live writer's temporary file was removed: %v", err)
	}
	h.release()
	if _, err := s.CollectGarbage(ctx, cache.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range append(leftovers, inflight, filepath.Join(s.locksDir(), fileName("short"))) {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s not collected: %v", p, err)
		}
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatalf("another namespace's flush leftover was removed: %v", err)
	}
	if _, err := s.Read(ctx, "live"); err != nil {
		t.Fatal(err)
	}
}

// TestWaitHonoursContext: a write waiting for a record held by this process or
// by another (a foreign flock) gives up when its context ends, as unavailable.
func TestWaitHonoursContext(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, t.TempDir(), Options{})
	mustWrite(t, s, "k", create("k"))
	name := fileName("k")
	try := func(what string) {
		t.Helper()
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, err := s.Write(short, "k", cache.Write{Fields: []cache.FieldWrite{cache.Set("f", []byte("x"))}})
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, cache.ErrUnavailable) {
			t.Fatalf("Write while %s: %v, want DeadlineExceeded and ErrUnavailable", what, err)
		}
		if _, err := s.Read(ctx, "k"); err != nil {
			t.Fatalf("Read while %s: %v", what, err)
		}
	}
	h, err := s.hold(ctx, s.shardDir(name), name, false)
	if err != nil {
		t.Fatal(err)
	}
	try("this process holds the record")
	h.release()
	f, err := os.Open(recordPath(s, "k"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if ok, err := tryFlock(f); !ok || err != nil {
		t.Fatalf("flock: %v %v", ok, err)
	}
	try("another open file holds its flock")
	f.Close()
	mustWrite(t, s, "k", cache.Write{Fields: []cache.FieldWrite{cache.Set("f", []byte("after"))}})
}

// TestCreateRace: of many creators of one key, in two stores on one folder,
// exactly one succeeds; the others conflict.
func TestCreateRace(t *testing.T) {
	dir := t.TempDir()
	a, _ := openTest(t, dir, Options{})
	b, _ := openTest(t, dir, Options{})
	for round := range 5 {
		key := fmt.Sprintf("k%d", round)
		var (
			wg        sync.WaitGroup
			mu        sync.Mutex
			ok, confl int
		)
		for i := range 12 {
			st := []*Store{a, b}[i%2]
			wg.Go(func() {
				_, err := st.Write(t.Context(), key, create(key, "t"))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, cache.ErrConflict):
					confl++
				default:
					t.Errorf("Create: %v", err)
				}
			})
		}
		wg.Wait()
		if ok != 1 || confl != 11 {
			t.Fatalf("round %d: %d creates succeeded, %d conflicted; want 1 and 11", round, ok, confl)
		}
	}
}

// TestTagIndexRaces: writers adding and removing a tag, deleting and creating
// records, race the index's cleaners (Tagged, CollectGarbage); afterwards every
// record that has the tag has its index entry.
func TestTagIndexRaces(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	a, _ := openTest(t, dir, Options{})
	b, _ := openTest(t, dir, Options{})
	const keys = 6
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		st := []*Store{a, b}[w%2]
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("k%d", (i+w)%keys)
				var err error
				switch i % 4 {
				case 0:
					_, err = st.Write(ctx, key, cache.Write{AddTags: []string{"t"}})
				case 1:
					_, err = st.Write(ctx, key, cache.Write{RemoveTags: []string{"t"}})
				case 2:
					_, err = st.Delete(ctx, key)
				case 3:
					_, err = st.Write(ctx, key, create(key, "t"))
				}
				if err != nil && !errors.Is(err, cache.ErrNotFound) && !errors.Is(err, cache.ErrConflict) {
					t.Errorf("write: %v", err)
					return
				}
			}
		})
	}
	for _, st := range []*Store{a, b} {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, err := range st.Tagged(ctx, "t") {
					if err != nil {
						t.Errorf("Tagged: %v", err)
						return
					}
				}
				if _, err := st.CollectGarbage(ctx, cache.GCOptions{}); err != nil {
					t.Errorf("CollectGarbage: %v", err)
					return
				}
			}
		})
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	for i := range keys {
		key := fmt.Sprintf("k%d", i)
		r, err := a.Read(ctx, key)
		if errors.Is(err, cache.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(r.Tags, "t") {
			if _, err := os.Stat(filepath.Join(a.tagDir("t"), fileName(key))); err != nil {
				t.Fatalf("%s has tag t but the index misses it: %v", key, err)
			}
		}
	}
}

// TestSmallBatches: iteration and garbage collection cross many batch
// boundaries.
func TestSmallBatches(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, t.TempDir(), Options{BatchSize: 3})
	var want []string
	for i := range 40 {
		k := fmt.Sprintf("k%02d", i)
		w := create(k, "t")
		if i%4 == 0 {
			w.Expires = time.Now().Add(-time.Second)
		} else {
			want = append(want, k)
		}
		mustWrite(t, s, k, w)
	}
	if got := collectKeys(t, s.Keys(ctx)); !slices.Equal(got, want) {
		t.Fatalf("Keys = %q", got)
	}
	if got := collectKeys(t, s.Tagged(ctx, "t")); !slices.Equal(got, want) {
		t.Fatalf("Tagged = %q", got)
	}
	total := 0
	for {
		n, err := s.CollectGarbage(ctx, cache.GCOptions{Max: 3})
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		total += n
	}
	if total != 10 {
		t.Fatalf("collected %d in batches of 3, want 10", total)
	}
}

// TestFailedWriteKeepsOldRecord: when fsync fails (a full disk), the write
// fails as unavailable, the old record stays whole and no temporary file is
// left.
func TestFailedWriteKeepsOldRecord(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, t.TempDir(), Options{})
	v := mustWrite(t, s, "k", create("k", "t"))
	s.sh.syncFile = func(*os.File) error { return &os.PathError{Op: "fsync", Path: "x", Err: syscall.ENOSPC} }
	for _, w := range []cache.Write{
		{Fields: []cache.FieldWrite{cache.Set("f", []byte("new"))}},
		{Fields: []cache.FieldWrite{cache.SetIf("f", []byte("new"), v)}, AddTags: []string{"u"}},
		create("n"),
	} {
		key := "k"
		if w.Create {
			key = "n"
		}
		_, err := s.Write(ctx, key, w)
		if !errors.Is(err, cache.ErrUnavailable) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("write on a full disk: %v, want ErrUnavailable and ENOSPC", err)
		}
	}
	s.sh.syncFile = (*os.File).Sync
	r, err := s.Read(ctx, "k")
	if err != nil || string(r.Fields[0].Value) != "value of k" || r.Version != v {
		t.Fatalf("after failed writes: %+v, %v; want the old record", r, err)
	}
	if _, err := s.Read(ctx, "n"); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("a failed create left a record: %v", err)
	}
	for _, n := range append(names(t, s.shardDir(fileName("k"))), names(t, s.shardDir(fileName("n")))...) {
		if strings.HasPrefix(n, tempPrefix) || n == fileName("n") {
			t.Fatalf("left behind: %s", n)
		}
	}
}

// TestFullDisk: on a real full file system (a 1 MiB tmpfs filled by a ballast
// file) writes fail saying so, stored records stay readable and unchanged,
// nothing half-written is left, and once space is free the same store writes.
func TestFullDisk(t *testing.T) {
	dir := mountTmpfs(t, "1m")
	ctx := t.Context()
	s, _ := openTest(t, dir, Options{})
	v := mustWrite(t, s, "k", create("k", "t"))
	ballast, err := os.Create(filepath.Join(dir, "ballast"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := ballast.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			break
		}
	}
	ballast.Close()
	big := make([]byte, 64<<10)
	_, err = s.Write(ctx, "k", cache.Write{Fields: []cache.FieldWrite{cache.Set("f", big)}})
	if !errors.Is(err, cache.ErrUnavailable) || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("a write on a full disk: %v", err)
	}
	if _, err := s.Write(ctx, "n", cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("f", big)}}); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("a create on a full disk: %v", err)
	}
	r, err := s.Read(ctx, "k")
	if err != nil || r.Version != v || string(r.Fields[0].Value) != "value of k" {
		t.Fatalf("the record on a full disk: %+v, %v", r, err)
	}
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), tempPrefix) {
			t.Errorf("left on the full disk: %s", p)
		}
		return nil
	})
	if err := os.Remove(filepath.Join(dir, "ballast")); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s, "k", cache.Write{Fields: []cache.FieldWrite{cache.Set("f", big)}})
	mustWrite(t, s, "n", create("n"))
}

// TestReadOnlyFolder: a folder the process may only read (a read-only tmpfs
// as root, file modes otherwise) opens; reads and iteration work; every write
// fails as unavailable, saying why.
func TestReadOnlyFolder(t *testing.T) {
	var dir string
	var lock func()
	if os.Geteuid() == 0 {
		dir = mountTmpfs(t, "16m")
		lock = func() {
			remountReadOnly(t, dir)
		}
	} else {
		dir = t.TempDir()
		lock = func() {
			_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					err = os.Chmod(p, 0o500)
				}
				return err
			})
		}
		t.Cleanup(func() {
			_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					err = os.Chmod(p, 0o700)
				}
				return err
			})
		})
	}
	ctx := t.Context()
	w, _ := openTest(t, dir, Options{})
	for _, k := range []string{"a", "b"} {
		mustWrite(t, w, k, create(k, "user"))
	}
	w.Close()
	lock()

	s, logs := openTest(t, dir, Options{})
	if !strings.Contains(logs.String(), "not writable") {
		t.Fatalf("Open did not warn about the read-only folder; logs:\n%s", logs)
	}
	if r, err := s.Read(ctx, "a"); err != nil || string(r.Fields[0].Value) != "value of a" {
		t.Fatalf("Read: %+v, %v", r, err)
	}
	if got := collectKeys(t, s.Keys(ctx)); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("Keys = %q", got)
	}
	if got := collectKeys(t, s.Tagged(ctx, "user")); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("Tagged = %q", got)
	}
	sub, err := s.Sub("never-written")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Read(ctx, "a"); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Read in an empty namespace: %v", err)
	}
	checks := map[string]error{}
	_, checks["Write"] = s.Write(ctx, "a", cache.Write{Fields: []cache.FieldWrite{cache.Set("f", []byte("x"))}})
	_, checks["Create"] = s.Write(ctx, "c", create("c"))
	_, checks["Delete"] = s.Delete(ctx, "a")
	_, checks["Lock"] = s.Lock(ctx, "l", time.Minute)
	_, checks["Sub.Create"] = sub.Write(ctx, "c", create("c"))
	for op, err := range checks {
		if !errors.Is(err, cache.ErrUnavailable) || !strings.Contains(err.Error(), dir) {
			t.Errorf("%s on a read-only folder: %v, want ErrUnavailable naming the folder", op, err)
		}
	}
	if r, err := s.Read(ctx, "a"); err != nil || string(r.Fields[0].Value) != "value of a" {
		t.Fatalf("Read after refused writes: %+v, %v", r, err)
	}
}

// TestHostileFiles: what no writer makes (a dangling symbolic link or a folder
// in place of a record) reads as absent and fails a write at once; it never
// hangs, panics or stops Keys or the collector. An unreadable file is the store
// being unavailable.
func TestHostileFiles(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, t.TempDir(), Options{})
	mustWrite(t, s, "good", create("good"))
	plant := func(key string, f func(p string) error) {
		if err := os.MkdirAll(filepath.Dir(recordPath(s, key)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := f(recordPath(s, key)); err != nil {
			t.Fatal(err)
		}
	}
	write := func(key string) error {
		short, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := s.Write(short, key, create(key))
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Create over a %s: %v, want an error at once", key, err)
		}
		return err
	}
	plant("dangling", func(p string) error { return os.Symlink("nowhere", p) })
	plant("folder", func(p string) error { return os.Mkdir(p, 0o700) })
	for _, key := range []string{"dangling", "folder"} {
		write(key)
		if _, err := s.Read(ctx, key); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("Read of a %s: %v, want ErrNotFound", key, err)
		}
	}
	if os.Geteuid() != 0 { // root reads it anyway
		plant("unreadable", func(p string) error { return os.WriteFile(p, []byte("x"), 0o000) })
		if err := write("unreadable"); !errors.Is(err, cache.ErrUnavailable) || !errors.Is(err, os.ErrPermission) {
			t.Fatalf("Create over an unreadable file: %v, want ErrUnavailable and a permission error", err)
		}
		if _, err := s.Read(ctx, "unreadable"); !errors.Is(err, cache.ErrUnavailable) {
			t.Fatalf("Read of an unreadable file: %v, want ErrUnavailable", err)
		}
		if err := os.Remove(recordPath(s, "unreadable")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Read(ctx, "good"); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s, "good", cache.Write{Fields: []cache.FieldWrite{cache.Set("f", []byte("again"))}})
	if got := collectKeys(t, s.Keys(ctx)); !slices.Equal(got, []string{"good"}) {
		t.Fatalf("Keys beside hostile files = %q", got)
	}
	mustWrite(t, s, "dead", cache.Write{Create: true, Expires: time.Now().Add(-time.Second)})
	if n, err := s.CollectGarbage(ctx, cache.GCOptions{}); err != nil || n != 1 {
		t.Fatalf("CollectGarbage beside hostile files = %d, %v", n, err)
	}
}

func TestOpen(t *testing.T) {
	// A missing folder is created.
	dir := filepath.Join(t.TempDir(), "var", "sessions")
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || s.Namespace() != DefaultNamespace {
		t.Fatalf("Open did not create %s: %v (namespace %q)", dir, err, s.Namespace())
	}
	file := filepath.Join(t.TempDir(), "plain-file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{file, filepath.Join(file, "sessions")} {
		if _, err := Open(Options{Dir: d}); !errors.Is(err, cache.ErrUnavailable) || !strings.Contains(err.Error(), file) {
			t.Fatalf("Open(%s): %v, want ErrUnavailable naming the path", d, err)
		}
	}
	for _, o := range []Options{{}, {Dir: dir, Namespace: "../x"}, {Dir: dir, MaxValueSize: -1}, {Dir: dir, BatchSize: -1}} {
		if _, err := Open(o); err == nil {
			t.Fatalf("Open(%+v) succeeded", o)
		}
	}
}

func TestFolderNames(t *testing.T) {
	seen := map[string]string{}
	for _, ns := range []string{"default", "a.b", "A.b", "a:b", "user@example.com", ".", "..", "...", ".hidden",
		strings.Repeat("x", 250), strings.Repeat("x", 100), strings.Repeat("x", 101)} {
		f := folderName(ns)
		if f == "." || f == ".." || strings.ContainsAny(f, "/\\") || len(f) > 120 || f[0] == '.' {
			t.Fatalf("folderName(%q) = %q is unsafe", ns, f)
		}
		if prev, dup := seen[f]; dup {
			t.Fatalf("folderName(%q) = folderName(%q) = %q", ns, prev, f)
		}
		seen[f] = ns
	}
}
