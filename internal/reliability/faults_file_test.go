package reliability_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/filestore"
)

// Environment of the child roles.
const (
	envDir    = "FXSESSION_RELIABILITY_DIR"
	envKeys   = "FXSESSION_RELIABILITY_KEYS"
	envWrites = "FXSESSION_RELIABILITY_WRITES"
	envLimit  = "FXSESSION_RELIABILITY_LIMIT"
)

// ---- values that prove themselves whole ----

// genValue is the value of key k at generation gen: a header naming both, a
// padding of a length that depends on both (1 to 48 KiB, so that writes take
// long enough to be cut), and the SHA-256 of all that.
func genValue(k, gen int) []byte {
	r := rand.New(rand.NewPCG(uint64(k), uint64(gen)))
	pad := make([]byte, 1024+r.IntN(47<<10))
	for i := range pad {
		pad[i] = 'a' + byte(r.IntN(26))
	}
	payload := fmt.Appendf(nil, "key=%d gen=%d ", k, gen)
	payload = append(payload, pad...)
	sum := sha256.Sum256(payload)
	return append(append(payload, '|'), hex.EncodeToString(sum[:])...)
}

// parseGenValue checks a value's checksum and returns its key and generation.
func parseGenValue(b []byte) (k, gen int, err error) {
	i := strings.LastIndexByte(string(b), '|')
	if i < 0 {
		return 0, 0, errors.New("no checksum")
	}
	sum := sha256.Sum256(b[:i])
	if hex.EncodeToString(sum[:]) != string(b[i+1:]) {
		return 0, 0, errors.New("checksum mismatch: torn or mixed value")
	}
	if _, err := fmt.Sscanf(string(b[:i]), "key=%d gen=%d ", &k, &gen); err != nil {
		return 0, 0, fmt.Errorf("header: %w", err)
	}
	return k, gen, nil
}

func genKey(k int) string { return "entry-" + strconv.Itoa(k) }

// childFileWriter is the writer process: it writes generation 1, 2, ... of keys
// 0..K-1 in turn (Set, CompareAndSet and SetMany in rotation), W writes in all,
// and prints "ack K GEN" after each write returned.
func childFileWriter() error {
	dir := os.Getenv(envDir)
	keys, _ := strconv.Atoi(os.Getenv(envKeys))
	writes, _ := strconv.Atoi(os.Getenv(envWrites))
	s, err := filestore.Open(filestore.Options{Dir: dir, Namespace: "rel"})
	if err != nil {
		return err
	}
	defer s.Close()
	ctx := context.Background()
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "ready")
	out.Flush()
	for w := range writes {
		k, gen := w%keys, 1+w/keys
		it := cache.Item{Key: genKey(k), Value: genValue(k, gen), Tags: []string{"gen"}}
		switch w % 3 {
		case 0:
			_, err = s.Set(ctx, it)
		case 1:
			var e cache.Entry
			if e, err = s.Get(ctx, it.Key); err == nil {
				_, err = s.CompareAndSet(ctx, it, e.Version)
			}
		case 2:
			err = s.SetMany(ctx, []cache.Item{it})
		}
		if err != nil {
			return fmt.Errorf("write %d: %w", w, err)
		}
		fmt.Fprintf(out, "ack %d %d\n", k, gen)
		out.Flush()
	}
	return nil
}

// child starts this test binary in a child role.
func child(t testing.TB, role string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{childEnv + "=" + role}, env...)...)
	return cmd
}

// TestFileWriterKilled: a writer process is killed with SIGKILL in the middle
// of 1,000 writes (at a random point); every entry is then either its old or its
// new value, checksummed whole, and nothing acknowledged is lost.
func TestFileWriterKilled(t *testing.T) {
	const keys, writes = 50, 1000
	rounds := pick(1, 10)
	var totalAcked, advanced, inFlightLanded int
	var leftovers int
	for round := range rounds {
		dir := t.TempDir()
		logs := &logSink{}
		s, err := filestore.Open(filestore.Options{Dir: dir, Namespace: "rel", Logger: slog.New(logs)})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for k := range keys {
			if _, err := s.Set(ctx, cache.Item{Key: genKey(k), Value: genValue(k, 0), Tags: []string{"gen"}}); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()

		cmd := child(t, "filewriter", envDir+"="+dir, envKeys+"="+strconv.Itoa(keys), envWrites+"="+strconv.Itoa(writes))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAt := writes/10 + rand.IntN(writes*8/10)
		acked := make([]int, keys)
		n := 0
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if line == "ready" {
				continue
			}
			var k, gen int
			if _, err := fmt.Sscanf(line, "ack %d %d", &k, &gen); err != nil {
				t.Fatalf("child said %q", line)
			}
			acked[k] = gen
			n++
			if n == killAt {
				// Let the next write get under way, then cut it.
				time.Sleep(rand.N(3 * time.Millisecond))
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
			t.Fatalf("round %d: the writer was not killed mid-run (exit %v after %d acks): %s", round, err, n, stderr.String())
		}
		totalAcked += n

		s, err = filestore.Open(filestore.Options{Dir: dir, Namespace: "rel", Logger: slog.New(logs)})
		if err != nil {
			t.Fatal(err)
		}
		for k := range keys {
			e, err := s.Get(ctx, genKey(k))
			if err != nil {
				t.Fatalf("round %d: %s lost after the kill: %v", round, genKey(k), err)
			}
			gk, gen, err := parseGenValue(e.Value)
			if err != nil || gk != k {
				t.Fatalf("round %d: %s holds a bad value (key %d): %v", round, genKey(k), gk, err)
			}
			if gen < acked[k] || gen > acked[k]+1 {
				t.Fatalf("round %d: %s is at generation %d, acknowledged %d", round, genKey(k), gen, acked[k])
			}
			if string(e.Value) != string(genValue(k, gen)) {
				t.Fatalf("round %d: %s generation %d differs from what was written", round, genKey(k), gen)
			}
			if gen > 0 {
				advanced++
			}
			if gen == acked[k]+1 {
				inFlightLanded++
			}
		}
		all := 0
		for _, err := range s.All(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			all++
		}
		tagged := 0
		for _, err := range s.Tagged(ctx, "gen") {
			if err != nil {
				t.Fatal(err)
			}
			tagged++
		}
		s.Close()
		if all != keys || tagged != keys {
			t.Fatalf("round %d: All yields %d entries, Tagged %d; want %d", round, all, tagged, keys)
		}
		if c := logs.Matching("corrupt"); len(c) > 0 {
			t.Fatalf("round %d: the store met corrupt files: %v", round, c)
		}
		_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
				leftovers++
			}
			return nil
		})
	}
	record(t, figure{
		Area:   "Faults",
		Check:  "file store: a writer process (Set, CompareAndSet, SetMany in turn; values 1–48 KiB with their own SHA-256) killed with SIGKILL at a random point of 1,000 writes over 50 keys; each entry then checked whole, old or new",
		Amount: fmt.Sprintf("%d kill(s), %d acknowledged writes before the kills", rounds, totalAcked),
		Measured: joinf(
			fmt.Sprintf("%d/%d entries readable and checksummed", rounds*keys, rounds*keys),
			"0 torn, 0 corrupt-file warnings, 0 acknowledged writes lost",
			fmt.Sprintf("%d unacknowledged in-flight writes landed whole", inFlightLanded),
			fmt.Sprintf("%d stray temp files left for GC", leftovers),
		),
	})
}

// ---- a full disk ----

// fsizeResult is what the fsize child reports.
type fsizeResult struct {
	OverwriteErr   string `json:"overwrite_err"`
	OverwriteUnav  bool   `json:"overwrite_unavailable"`
	NewErr         string `json:"new_err"`
	NewUnav        bool   `json:"new_unavailable"`
	OldAfter       string `json:"old_after"`
	SmallWriteErr  string `json:"small_write_err"`
	SessionLikeErr string `json:"setmany_err"`
}

// childFileSize runs with RLIMIT_FSIZE set: no file may grow past the limit,
// so writing a value larger than that fails with EFBIG, as a write to a full
// disk fails with ENOSPC.
func childFileSize() error {
	limit, _ := strconv.Atoi(os.Getenv(envLimit))
	s, err := filestore.Open(filestore.Options{Dir: os.Getenv(envDir), Namespace: "rel"})
	if err != nil {
		return err
	}
	defer s.Close()
	rl := syscall.Rlimit{Cur: uint64(limit), Max: uint64(limit)}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &rl); err != nil {
		return err
	}
	ctx := context.Background()
	big := make([]byte, 4*limit)
	var res fsizeResult
	_, err = s.Set(ctx, cache.Item{Key: "old", Value: big})
	res.OverwriteErr, res.OverwriteUnav = errText(err), errors.Is(err, cache.ErrUnavailable)
	_, err = s.Set(ctx, cache.Item{Key: "new", Value: big})
	res.NewErr, res.NewUnav = errText(err), errors.Is(err, cache.ErrUnavailable)
	err = s.SetMany(ctx, []cache.Item{{Key: "many-1", Value: big}, {Key: "many-2", Value: []byte("small")}})
	res.SessionLikeErr = errText(err)
	e, err := s.Get(ctx, "old")
	if err != nil {
		res.OldAfter = "error: " + err.Error()
	} else {
		res.OldAfter = string(e.Value)
	}
	_, err = s.Set(ctx, cache.Item{Key: "small", Value: []byte("fits")})
	res.SmallWriteErr = errText(err)
	return json.NewEncoder(os.Stdout).Encode(res)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestFileFull: a write that does not fit (RLIMIT_FSIZE in a child process:
// EFBIG, the per-file form of a full disk) fails with a clear error matching
// cache.ErrUnavailable; the previous value stays readable, nothing half-written
// is left, and writes that fit still work.
func TestFileFull(t *testing.T) {
	const limit = 16 << 10
	dir := t.TempDir()
	s := fileBackend(t, dir)
	if _, err := s.Set(context.Background(), cache.Item{Key: "old", Value: []byte("previous value")}); err != nil {
		t.Fatal(err)
	}
	cmd := child(t, "fsize", envDir+"="+dir, envLimit+"="+strconv.Itoa(limit))
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("child: %v: %s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var res fsizeResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("child said %q: %v", out, err)
	}
	t.Logf("child: %+v", res)
	for what, e := range map[string]string{"overwrite": res.OverwriteErr, "new entry": res.NewErr, "SetMany": res.SessionLikeErr} {
		if !strings.Contains(e, "file too large") {
			t.Errorf("%s past the limit: error %q does not say why", what, e)
		}
	}
	if !res.OverwriteUnav || !res.NewUnav {
		t.Errorf("errors do not match cache.ErrUnavailable: %+v", res)
	}
	if res.OldAfter != "previous value" {
		t.Errorf("previous value after the failed overwrite: %q", res.OldAfter)
	}
	if res.SmallWriteErr != "" {
		t.Errorf("a write that fits failed: %s", res.SmallWriteErr)
	}
	ctx := context.Background()
	if e, err := s.Get(ctx, "old"); err != nil || string(e.Value) != "previous value" {
		t.Fatalf("previous value read by another process: %q, %v", e.Value, err)
	}
	if ok, err := s.Has(ctx, "new"); err != nil || ok {
		t.Fatalf("the refused new entry exists: %v, %v", ok, err)
	}
	tmp := 0
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			tmp++
		}
		return nil
	})
	if tmp != 0 {
		t.Fatalf("%d temporary files left behind", tmp)
	}
	record(t, figure{
		Area:     "Faults",
		Check:    "file store: writes past the space left (child process with RLIMIT_FSIZE 16 KiB: EFBIG) — overwrite, new entry, SetMany",
		Amount:   "3 refused writes, 1 write that fits",
		Measured: fmt.Sprintf("error %q matches cache.ErrUnavailable; previous value intact; refused entry absent; 0 temp files left", tidy(res.OverwriteErr, dir)),
	})
}
