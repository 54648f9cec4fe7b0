package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/filestore"
	"github.com/fxsession/fxsession/session"
)

// mountTmpfs mounts a tmpfs of the given size ("1m") on a fresh folder and
// unmounts it when the test ends. It needs root (CAP_SYS_ADMIN).
func mountTmpfs(t testing.TB, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mount -t tmpfs -o size=%s %s: %v (this check needs root: it mounts a small tmpfs to make the folder read-only or full for real)", size, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("umount %s: %v", dir, err)
		}
	})
	return dir
}

// remount switches a tmpfs mounted by mountTmpfs to read-only or back.
func remount(t testing.TB, dir string, readOnly bool) {
	t.Helper()
	flags := uintptr(syscall.MS_REMOUNT)
	if readOnly {
		flags |= syscall.MS_RDONLY
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", flags, ""); err != nil {
		t.Fatalf("remount %s (read-only %v): %v", dir, readOnly, err)
	}
}

// unwritableFolder returns a folder and two functions that make it unwritable
// and writable again: a read-only remount of a tmpfs as root (root ignores file
// modes), chmod otherwise. how says which.
func unwritableFolder(t testing.TB) (dir string, lock, unlock func(), how string) {
	t.Helper()
	if os.Geteuid() == 0 {
		dir = mountTmpfs(t, "64m")
		return dir, func() { remount(t, dir, true) }, func() { remount(t, dir, false) }, "read-only remount of a tmpfs (EROFS)"
	}
	dir = t.TempDir()
	chmodAll := func(mode os.FileMode) {
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return err
			}
			return os.Chmod(p, mode)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir, func() { chmodAll(0o500) }, func() { chmodAll(0o700) }, "folders chmod 0500 (EACCES)"
}

// TestFileUnwritable: when the session folder becomes unwritable, requests that
// write answer 503 with an error that says why (and matches
// cache.ErrUnavailable), requests that only read still see the previous data, a
// store opened on the folder meanwhile (another process starting) reads the
// session and fails its writes the same way, and once the folder is writable
// again the same process writes again.
func TestFileUnwritable(t *testing.T) {
	dir, lock, unlock, how := unwritableFolder(t)
	backend := fileStore(t, dir)
	sh := newShop(t, shopConfig{Store: backend})
	v := &visitor{}
	for range 3 {
		mustStatus(t, v.serve(sh.Handler, "POST", "/basket/update?sku=tea"), 200, "add")
	}
	mustStatus(t, v.serve(sh.Handler, "POST", "/bag/prefs?k=lang&v=de"), 200, "bag")

	lock()
	relocked := true
	defer func() {
		if relocked {
			unlock()
		}
	}()
	want := "read-only file system"
	if os.Geteuid() != 0 {
		want = "permission denied"
	}
	r := v.serve(sh.Handler, "POST", "/basket/update?sku=tea")
	if r.Status != 503 || !strings.Contains(string(r.Body), want) {
		t.Fatalf("an add to an unwritable folder: %v; want 503 saying %q", r, want)
	}
	addErr := tidy(strings.TrimSpace(string(r.Body)), dir)
	mustStatus(t, v.serve(sh.Handler, "GET", "/plain"), 200, "a route without session use")
	fresh := &visitor{}
	if r := fresh.serve(sh.Handler, "POST", "/basket/update?sku=tea"); r.Status != 503 {
		t.Fatalf("a new session in an unwritable folder: %v; want 503", r)
	}
	if fresh.Cookie() != "" {
		t.Fatal("a session that could not be saved sent a cookie")
	}
	r = v.serve(sh.Handler, "GET", "/basket")
	mustStatus(t, r, 200, "reading the basket from an unwritable folder")
	if n := r.Int(t, "count"); n != 3 {
		t.Fatalf("basket read from an unwritable folder holds %d, want the previous 3", n)
	}
	r = v.serve(sh.Handler, "GET", "/ro/basket")
	mustStatus(t, r, 200, "reading the basket on a read-only route from an unwritable folder")
	if n := r.Int(t, "count"); n != 3 {
		t.Fatalf("basket read on a read-only route holds %d, want 3", n)
	}
	if got := v.serve(sh.Handler, "GET", "/bag/prefs").JSON(t)["lang"]; got != "de" {
		t.Fatalf("bag read from an unwritable folder: %v", got)
	}
	// Another process opening the folder now: the file store opens a folder it
	// may only read (reads work, writes fail saying why).
	other, err := filestore.Open(filestore.Options{Dir: dir, Namespace: "rel", Logger: slog.New(&logSink{})})
	if err != nil {
		t.Fatalf("filestore.Open on the unwritable folder: %v; want it open for reads", err)
	}
	defer other.Close()
	ref := v.Cookie()[:session.RefLength]
	if rec, err := sessionRecords(t, other).Read(context.Background(), ref); err != nil || len(rec.Fields) == 0 {
		t.Fatalf("reading the session through a store opened on the unwritable folder: %v", err)
	}
	_, openWriteErr := sessionRecords(t, other).Write(context.Background(), ref, cache.Write{Fields: []cache.FieldWrite{cache.Set("v:x", []byte{0xc0})}})
	if !errors.Is(openWriteErr, cache.ErrUnavailable) || !strings.Contains(openWriteErr.Error(), want) {
		t.Fatalf("a write through a store opened on the unwritable folder: %v", openWriteErr)
	}

	unlock()
	relocked = false
	r = v.serve(sh.Handler, "POST", "/basket/update?sku=tea")
	mustStatus(t, r, 200, "an add once the folder is writable again")
	if n := r.Int(t, "count"); n != 4 {
		t.Fatalf("after recovery the basket holds %d, want 4", n)
	}
	record(t, figure{
		Area:   "Faults",
		Check:  "file store: the session folder becomes unwritable (" + how + ") under a running app",
		Amount: "1 add to an existing session, 1 new session, 3 reads (one on a session.ReadOnly route), 1 filestore.Open with a read and a write, then recovery",
		Measured: joinf(
			fmt.Sprintf("writes answer 503 %s", addErr),
			"routes without session use 200",
			"reads: previous basket (3) and bag intact",
			"no cookie for the unsaved session",
			"writable again: next add 200 without restart",
			"filestore.Open of the folder by another process opens it for reads: the session reads, a write fails: "+tidy(openWriteErr.Error(), dir),
		),
	})
}
