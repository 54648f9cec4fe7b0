package filestore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/filestore"
)

const (
	helperDir  = "FXSESSION_FILESTORE_HELPER_DIR"
	helperMode = "FXSESSION_FILESTORE_HELPER_MODE"
	helperN    = "FXSESSION_FILESTORE_HELPER_N"
)

// TestHelperProcess is the body of the child processes started by
// TestTwoProcesses; in a normal test run (no helper environment) it has
// nothing to do and passes.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperDir)
	if dir == "" {
		return
	}
	n, err := strconv.Atoi(os.Getenv(helperN))
	if err != nil {
		t.Fatal(err)
	}
	s, err := filestore.Open(filestore.Options{Dir: dir, Namespace: "shared"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	switch mode := os.Getenv(helperMode); mode {
	case "cas":
		for range n {
			if _, err := cachetest.Increment(ctx, s, "counter"); err != nil {
				t.Fatal(err)
			}
		}
	case "lock":
		// A read-modify-write of a plain file, safe only under the lock.
		plain := filepath.Join(dir, "plain-counter")
		for range n {
			tok, err := cache.WaitLock(ctx, s, "plain", 10*time.Second, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(plain)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			v, _ := strconv.Atoi(string(b))
			if err := os.WriteFile(plain, []byte(strconv.Itoa(v+1)), 0o600); err != nil {
				t.Fatal(err)
			}
			if ok, err := s.Unlock(ctx, "plain", tok); err != nil || !ok {
				t.Fatalf("Unlock = %v, %v", ok, err)
			}
		}
	default:
		t.Fatalf("unknown helper mode %q", mode)
	}
}

// TestTwoProcesses runs the compare-and-set counter, and a lock-protected
// counter, in two OS processes sharing one folder: both results are exact.
func TestTwoProcesses(t *testing.T) {
	const procs, each = 2, 200
	dir := t.TempDir()
	for _, mode := range []string{"cas", "lock"} {
		t.Run(mode, func(t *testing.T) {
			var cmds []*exec.Cmd
			for range procs {
				cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
				cmd.Env = append(os.Environ(), helperDir+"="+dir, helperMode+"="+mode, helperN+"="+strconv.Itoa(each))
				out := &lockedBuffer{}
				cmd.Stdout, cmd.Stderr = out, out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					if t.Failed() {
						t.Logf("child %d output:\n%s", cmd.Process.Pid, out)
					}
				})
				cmds = append(cmds, cmd)
			}
			for _, cmd := range cmds {
				if err := cmd.Wait(); err != nil {
					t.Fatalf("child process: %v", err)
				}
			}
			var got string
			if mode == "cas" {
				s, err := filestore.Open(filestore.Options{Dir: dir, Namespace: "shared"})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				e, err := s.Get(t.Context(), "counter")
				if err != nil {
					t.Fatal(err)
				}
				got = string(e.Value)
			} else {
				b, err := os.ReadFile(filepath.Join(dir, "plain-counter"))
				if err != nil {
					t.Fatal(err)
				}
				got = string(b)
			}
			if want := strconv.Itoa(procs * each); got != want {
				t.Fatalf("%d processes × %d increments (%s): counter %s, want %s", procs, each, mode, got, want)
			}
		})
	}
}

// TestRestart closes the store and opens the folder again: entries, tags,
// versions, lifetimes and locks are all there.
func TestRestart(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := filestore.Open(filestore.Options{Dir: dir, Namespace: "app"})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := s.Sub("child")
	if err != nil {
		t.Fatal(err)
	}
	var versions []cache.Version
	for i := range 20 {
		v, err := s.Set(ctx, cache.Item{Key: fmt.Sprintf("k%02d", i), Value: []byte{byte(i), 0, 255},
			Tags: []string{"all", "mod" + strconv.Itoa(i%3)}, TTL: time.Duration(i%2) * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	if _, err := sub.Set(ctx, cache.Item{Key: "k00", Value: []byte("sub"), Tags: []string{"all"}}); err != nil {
		t.Fatal(err)
	}
	tok, err := s.Lock(ctx, "held", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "k00"); !errors.Is(err, cache.ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}

	s2, err := filestore.Open(filestore.Options{Dir: dir, Namespace: "app"})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for i := range 20 {
		e, err := s2.Get(ctx, fmt.Sprintf("k%02d", i))
		if err != nil {
			t.Fatal(err)
		}
		if e.Version != versions[i] || len(e.Value) != 3 || e.Value[0] != byte(i) || len(e.Tags) != 2 || e.Expires.IsZero() != (i%2 == 0) {
			t.Fatalf("k%02d after reopening: %+v", i, e)
		}
	}
	n := 0
	for _, err := range s2.Tagged(ctx, "mod1") {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 7 {
		t.Fatalf("Tagged mod1 after reopening: %d keys, want 7", n)
	}
	if _, err := s2.Lock(ctx, "held", time.Minute); !errors.Is(err, cache.ErrLocked) {
		t.Fatalf("lock after reopening: %v, want ErrLocked", err)
	}
	if ok, err := s2.Unlock(ctx, "held", tok); err != nil || !ok {
		t.Fatalf("Unlock with the token from before the restart = %v, %v", ok, err)
	}
	if c, err := s2.FlushByTag(ctx, "all"); err != nil || c != 20 {
		t.Fatalf("FlushByTag after reopening = %d, %v; want 20", c, err)
	}
	sub2, _ := s2.Sub("child")
	if e, err := sub2.Get(ctx, "k00"); err != nil || string(e.Value) != "sub" {
		t.Fatalf("Sub entry after reopening: %q, %v", e.Value, err)
	}
}
