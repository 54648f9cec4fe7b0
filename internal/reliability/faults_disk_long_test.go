//go:build reliability

package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/fxsession/fxsession/cache"
)

// TestFileDiskFull: the session folder on a real 1 MiB tmpfs that fills up
// (ENOSPC, needs root for the mount). Writes answer 503 saying "no space left
// on device" (matching cache.ErrUnavailable), sessions already stored stay
// readable and unchanged, nothing half-written is left, and once space is free
// again the same process writes again.
func TestFileDiskFull(t *testing.T) {
	dir := mountTmpfs(t, "1m")
	backend := fileStore(t, dir)
	sh := newShop(t, shopConfig{Store: backend})
	ctx := context.Background()
	v := &visitor{}
	for i := range 3 {
		mustStatus(t, v.serve(sh.Handler, "POST", fmt.Sprintf("/basket/update?sku=s%d&note_kb=4", i)), 200, "add")
	}
	if _, err := backend.Write(ctx, "plain", cache.Write{Create: true, Fields: valueField([]byte("previous"))}); err != nil {
		t.Fatal(err)
	}
	_, before := storedField(t, backend, basketField)

	// Fill the disk with a ballast file.
	ballast := filepath.Join(dir, "ballast")
	f, err := os.Create(ballast)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	filled := 0
	for {
		n, err := f.Write(chunk)
		filled += n
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			break
		}
	}
	f.Close()

	const want = "no space left on device"
	r := v.serve(sh.Handler, "POST", "/basket/update?sku=s9&note_kb=4")
	if r.Status != 503 || !strings.Contains(string(r.Body), want) {
		t.Fatalf("an add on a full disk: %v; want 503 saying %q", r, want)
	}
	addErr := tidy(strings.TrimSpace(string(r.Body)), dir)
	fresh := &visitor{}
	if r := fresh.serve(sh.Handler, "POST", "/basket/update?sku=tea&note_kb=4"); r.Status != 503 || fresh.Cookie() != "" {
		t.Fatalf("a new session on a full disk: %v, cookie %q; want 503 and no cookie", r, fresh.Cookie())
	}
	_, setErr := backend.Write(ctx, "plain", cache.Write{Fields: valueField(make([]byte, 64<<10))})
	if !errors.Is(setErr, cache.ErrUnavailable) || !strings.Contains(setErr.Error(), want) {
		t.Fatalf("a store write on a full disk: %v", setErr)
	}
	r = v.serve(sh.Handler, "GET", "/basket")
	mustStatus(t, r, 200, "reading on a full disk")
	if n := r.Int(t, "count"); n != 3 {
		t.Fatalf("the basket read on a full disk holds %d, want 3", n)
	}
	rec, err := backend.Read(ctx, "plain")
	if f, _ := rec.Field("v"); err != nil || string(f.Value) != "previous" {
		t.Fatalf("the previous value on a full disk: %q, %v", f.Value, err)
	}
	if _, after := storedField(t, backend, basketField); after.Version != before.Version {
		t.Fatal("the stored basket changed on a full disk")
	}
	tmp := 0
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			tmp++
		}
		return nil
	})
	if tmp != 0 {
		t.Fatalf("%d temporary files left on the full disk", tmp)
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	r = v.serve(sh.Handler, "POST", "/basket/update?sku=s9&note_kb=4")
	mustStatus(t, r, 200, "an add once space is free")
	if n := r.Int(t, "count"); n != 4 {
		t.Fatalf("after space came back the basket holds %d, want 4", n)
	}
	record(t, figure{
		Area:   "Faults",
		Check:  "file store on a 1 MiB tmpfs filled to ENOSPC by a ballast file under a running app (as root)",
		Amount: fmt.Sprintf("ballast %d KiB; 1 add, 1 new session, 1 store write refused; 2 reads; then recovery", filled>>10),
		Measured: joinf(
			"add: 503 "+addErr,
			"store write: "+tidy(setErr.Error(), dir),
			"new session: 503, no cookie",
			"reads: previous basket (3 units) and value intact, stored version unchanged; 0 temp files left",
			"space freed: next add 200 without restart",
		),
	})
}
