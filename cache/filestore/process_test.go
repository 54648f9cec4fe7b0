package filestore_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/filestore"
)

// The child processes of these tests are this test binary running
// TestHelperProcess with the environment below.
const (
	helperDir   = "FXSESSION_FILESTORE_HELPER_DIR"
	helperMode  = "FXSESSION_FILESTORE_HELPER_MODE"
	helperN     = "FXSESSION_FILESTORE_HELPER_N"
	helperStart = "FXSESSION_FILESTORE_HELPER_START" // Unix nanoseconds to wait for
)

// TestHelperProcess is the body of the child processes; in a normal test run
// (no helper environment) it has nothing to do and passes.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperDir)
	if dir == "" {
		return
	}
	n, _ := strconv.Atoi(os.Getenv(helperN))
	s, err := filestore.Open(filestore.Options{Dir: dir, Namespace: "shared"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if start, err := strconv.ParseInt(os.Getenv(helperStart), 10, 64); err == nil {
		time.Sleep(time.Until(time.Unix(0, start)))
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	switch mode := os.Getenv(helperMode); mode {
	case "cas":
		for range n {
			if _, err := cachetest.Increment(ctx, s, "counter", "n"); err != nil {
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
	case "gc":
		for {
			removed, err := s.CollectGarbage(ctx, cache.GCOptions{Max: 10, Removed: func(r cache.Record) {
				fmt.Fprintf(out, "removed %s\n", r.Key)
			}})
			if err != nil {
				t.Fatal(err)
			}
			if removed == 0 {
				return
			}
		}
	case "writer":
		if err := crashWriter(ctx, s, n, out); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown helper mode %q", mode)
	}
}

// helper starts n child processes in mode on dir, all starting their work at
// the same moment, and returns their outputs once they have all exited.
func helpers(t *testing.T, dir, mode string, procs, n int) []string {
	t.Helper()
	start := strconv.FormatInt(time.Now().Add(300*time.Millisecond).UnixNano(), 10)
	var cmds []*exec.Cmd
	var outs []*lockedBuffer
	for range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperDir+"="+dir, helperMode+"="+mode, helperN+"="+strconv.Itoa(n), helperStart+"="+start)
		out := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	var res []string
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child process %d (%s): %v\n%s", i, mode, err, outs[i])
		}
		res = append(res, outs[i].String())
	}
	return res
}

func openShared(t *testing.T, dir string, logs io.Writer) *filestore.Store {
	t.Helper()
	o := filestore.Options{Dir: dir, Namespace: "shared"}
	if logs != nil {
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	s, err := filestore.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestTwoProcesses runs the compare-and-set counter, and a counter in a plain
// file under Lock, in two OS processes sharing one folder: both are exact.
func TestTwoProcesses(t *testing.T) {
	const procs, each = 2, 150
	dir := t.TempDir()
	helpers(t, dir, "cas", procs, each)
	r, err := openShared(t, dir, nil).Read(t.Context(), "counter")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(r.Fields[0].Value), strconv.Itoa(procs*each); got != want {
		t.Fatalf("%d processes × %d compare-and-set increments: counter %s, want %s", procs, each, got, want)
	}
	helpers(t, dir, "lock", procs, each)
	b, err := os.ReadFile(filepath.Join(dir, "plain-counter"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), strconv.Itoa(procs*each); got != want {
		t.Fatalf("%d processes × %d increments under Lock: counter %s, want %s", procs, each, got, want)
	}
}

// TestTwoProcessesCollectGarbage: two processes collect the same expired
// records at once; each record is reported by exactly one of them.
func TestTwoProcessesCollectGarbage(t *testing.T) {
	const n = 300
	dir := t.TempDir()
	s := openShared(t, dir, nil)
	soon := time.Now().Add(50 * time.Millisecond)
	for i := range n {
		w := cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("f", []byte("x"))}, AddTags: []string{"t"}, Expires: soon}
		if i%10 == 0 {
			w.Expires = time.Now().Add(time.Hour)
		}
		if _, err := s.Write(t.Context(), fmt.Sprintf("k%03d", i), w); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Until(soon))
	counts := map[string]int{}
	perProc := []int{}
	for _, out := range helpers(t, dir, "gc", 2, 0) {
		c := 0
		for line := range strings.Lines(out) {
			if key, ok := strings.CutPrefix(strings.TrimSpace(line), "removed "); ok {
				counts[key]++
				c++
			}
		}
		perProc = append(perProc, c)
	}
	t.Logf("removed per process: %v", perProc)
	if len(counts) != n-n/10 {
		t.Fatalf("%d records reported, want %d", len(counts), n-n/10)
	}
	for k, c := range counts {
		if c != 1 {
			t.Fatalf("%s reported %d times", k, c)
		}
	}
	keys := 0
	for _, err := range s.Keys(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		keys++
	}
	tagged := 0
	for _, err := range s.Tagged(t.Context(), "t") {
		if err != nil {
			t.Fatal(err)
		}
		tagged++
	}
	if keys != n/10 || tagged != n/10 {
		t.Fatalf("after collection: %d keys, %d tagged; want %d", keys, tagged, n/10)
	}
}

// The crash test's values carry their key, generation and checksum, so a torn
// or mixed value shows.
func genValue(k, gen int) []byte {
	size := 1 + (k*7919+gen*104729)%(48<<10)
	body := bytes.Repeat([]byte{byte(k), byte(gen)}, size/2+1)[:size]
	sum := sha256.Sum256(body)
	return fmt.Appendf(nil, "key=%d gen=%d %s|%s", k, gen, body, hex.EncodeToString(sum[:]))
}

func parseGen(b []byte) (k, gen int, err error) {
	i := bytes.LastIndexByte(b, '|')
	if i < 0 {
		return 0, 0, errors.New("no checksum")
	}
	if _, err := fmt.Sscanf(string(b), "key=%d gen=%d ", &k, &gen); err != nil {
		return 0, 0, err
	}
	if !bytes.Equal(b, genValue(k, gen)) {
		return 0, 0, errors.New("torn or mixed value")
	}
	return k, gen, nil
}

func genKey(k int) string { return "rec" + strconv.Itoa(k) }

// crashWriter writes generation 1, 2, ... of records 0..keys-1 in turn
// (unconditional, conditional, with tag changes, and creates of throw-away
// records), printing "ack K GEN" after each write returned, until killed.
func crashWriter(ctx context.Context, s cache.Store, keys int, out *bufio.Writer) error {
	fmt.Fprintln(out, "ready")
	out.Flush()
	for w := 0; ; w++ {
		k, gen := w%keys, 1+w/keys
		set := cache.Set("v", genValue(k, gen))
		var err error
		switch w % 4 {
		case 0:
			_, err = s.Write(ctx, genKey(k), cache.Write{Fields: []cache.FieldWrite{set}})
		case 1:
			var r cache.Record
			if r, err = s.Read(ctx, genKey(k), "v"); err == nil {
				set.Check, set.Expect = true, r.Fields[0].Version
				_, err = s.Write(ctx, genKey(k), cache.Write{Fields: []cache.FieldWrite{set}})
			}
		case 2:
			_, err = s.Write(ctx, genKey(k), cache.Write{Fields: []cache.FieldWrite{set}, AddTags: []string{"odd"}})
		case 3:
			_, err = s.Write(ctx, genKey(k), cache.Write{Fields: []cache.FieldWrite{set}, RemoveTags: []string{"odd"}})
			if err == nil {
				_, err = s.Write(ctx, "tmp"+strconv.Itoa(w), cache.Write{Create: true, Fields: []cache.FieldWrite{set}, AddTags: []string{"tmp"}})
			}
		}
		if err != nil {
			return fmt.Errorf("write %d: %w", w, err)
		}
		fmt.Fprintf(out, "ack %d %d\n", k, gen)
		out.Flush()
	}
}

// TestWriterKilled: a writer process is killed with SIGKILL at a random point
// of its writes; every record is then whole, at its last acknowledged
// generation or the one in flight, the tag index misses nothing, no file is
// corrupt, and garbage collection leaves no temporary file or placeholder.
// (SIGKILL keeps the page cache: this checks atomicity, not power loss.)
func TestWriterKilled(t *testing.T) {
	const keys = 20
	for round := range 3 {
		dir := t.TempDir()
		logs := &lockedBuffer{}
		s := openShared(t, dir, logs)
		ctx := t.Context()
		for k := range keys {
			if _, err := s.Write(ctx, genKey(k), cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("v", genValue(k, 0))}, AddTags: []string{"all"}}); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperDir+"="+dir, helperMode+"=writer", helperN+"="+strconv.Itoa(keys))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr := &lockedBuffer{}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAt := 40 + rand.IntN(200)
		acked := make([]int, keys)
		n := 0
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "ready" {
				continue
			}
			var k, gen int
			if _, err := fmt.Sscanf(sc.Text(), "ack %d %d", &k, &gen); err != nil {
				t.Fatalf("child said %q", sc.Text())
			}
			acked[k] = gen
			if n++; n == killAt {
				time.Sleep(rand.N(2 * time.Millisecond)) // into the next write
				if err := cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		err = cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: the writer was not killed mid-run (exit %v after %d acks): %s", round, err, n, stderr)
		}
		for k := range keys {
			r, err := s.Read(ctx, genKey(k))
			if err != nil {
				t.Fatalf("round %d: %s lost after the kill: %v", round, genKey(k), err)
			}
			f, _ := r.Field("v")
			gk, gen, err := parseGen(f.Value)
			if err != nil || gk != k {
				t.Fatalf("round %d: %s holds a bad value (key %d): %v", round, genKey(k), gk, err)
			}
			if gen < acked[k] || gen > acked[k]+1 {
				t.Fatalf("round %d: %s is at generation %d, acknowledged %d", round, genKey(k), gen, acked[k])
			}
			if slices.Contains(r.Tags, "odd") {
				found := false
				for key, err := range s.Tagged(ctx, "odd") {
					found = found || key == genKey(k) && err == nil
				}
				if !found {
					t.Fatalf("round %d: %s has tag odd, the index misses it", round, genKey(k))
				}
			}
		}
		all := 0
		for _, err := range s.Tagged(ctx, "all") {
			if err != nil {
				t.Fatal(err)
			}
			all++
		}
		if all != keys {
			t.Fatalf("round %d: Tagged(all) yields %d, want %d", round, all, keys)
		}
		// leftovers lists the temporary files and placeholders in dir.
		leftovers := func() (out []string) {
			_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				if fi, err := d.Info(); err == nil && fi.Size() == 0 && strings.Contains(p, "records") || strings.HasPrefix(d.Name(), ".tmp-") {
					out = append(out, p)
				}
				return nil
			})
			return out
		}
		before := len(leftovers())
		if _, err := s.CollectGarbage(ctx, cache.GCOptions{}); err != nil {
			t.Fatal(err)
		}
		if left := leftovers(); len(left) > 0 {
			t.Fatalf("round %d: left after garbage collection: %q", round, left)
		}
		if strings.Contains(logs.String(), "corrupt") {
			t.Fatalf("round %d: the store met corrupt files:\n%s", round, logs)
		}
		t.Logf("round %d: killed after %d acknowledged writes; %d leftovers collected", round, n, before)
	}
}

// TestRestart closes the store and opens the folder again: records, fields,
// versions, tags, expiry, locks and Sub namespaces are all there.
func TestRestart(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s := openShared(t, dir, nil)
	sub, err := s.Sub("child")
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	var versions []cache.Version
	for i := range 20 {
		w := cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("a", []byte{byte(i), 0, 255}), cache.Set("b", nil)},
			AddTags: []string{"all", "mod" + strconv.Itoa(i%3)}}
		if i%2 == 1 {
			w.Expires = exp
		}
		v, err := s.Write(ctx, fmt.Sprintf("k%02d", i), w)
		if err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	if _, err := sub.Write(ctx, "k00", cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("a", []byte("sub"))}}); err != nil {
		t.Fatal(err)
	}
	tok, err := s.Lock(ctx, "held", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := s.Read(ctx, "k00"); !errors.Is(err, cache.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}

	s2 := openShared(t, dir, nil)
	for i := range 20 {
		r, err := s2.Read(ctx, fmt.Sprintf("k%02d", i))
		if err != nil {
			t.Fatal(err)
		}
		a, _ := r.Field("a")
		if r.Version != versions[i] || a.Version != versions[i] || !bytes.Equal(a.Value, []byte{byte(i), 0, 255}) ||
			len(r.Fields) != 2 || len(r.Tags) != 2 || r.Expires.IsZero() != (i%2 == 0) || (i%2 == 1 && !r.Expires.Equal(exp)) {
			t.Fatalf("k%02d after reopening: %+v", i, r)
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
		t.Fatalf("Tagged(mod1) after reopening: %d keys, want 7", n)
	}
	if _, err := s2.Lock(ctx, "held", time.Minute); !errors.Is(err, cache.ErrLocked) {
		t.Fatalf("Lock after reopening: %v, want ErrLocked", err)
	}
	if ok, err := s2.Unlock(ctx, "held", tok); err != nil || !ok {
		t.Fatalf("Unlock with the token from before the restart = %v, %v", ok, err)
	}
	sub2, _ := s2.Sub("child")
	if r, err := sub2.Read(ctx, "k00"); err != nil || string(r.Fields[0].Value) != "sub" {
		t.Fatalf("Sub record after reopening: %+v, %v", r, err)
	}
}
