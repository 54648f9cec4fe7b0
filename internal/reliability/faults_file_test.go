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
	"slices"
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

// The fields of a generation record: the checksummed value, and its generation
// on its own, which must always match the value's (a write sets both at once).
const (
	genField = "v"
	genNum   = "n"
)

// genFields are the field writes of generation gen of key k; with expect > 0 the
// value is written only if its version is still expect.
func genFields(k, gen int, expect cache.Version) []cache.FieldWrite {
	v := cache.Set(genField, genValue(k, gen))
	if expect > 0 {
		v = cache.SetIf(genField, genValue(k, gen), expect)
	}
	return []cache.FieldWrite{v, cache.Set(genNum, []byte(strconv.Itoa(gen)))}
}

// childFileWriter is the writer process: it writes generation 1, 2, ... of keys
// 0..K-1 in turn, W writes in all, each setting both fields of the record, in
// rotation: unconditionally; as a compare-and-set of the value's version read
// just before; and with a tag change and a new expiry. It prints "ack K GEN"
// after each write returned.
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
		key := genKey(k)
		switch w % 3 {
		case 0:
			_, err = s.Write(ctx, key, cache.Write{Fields: genFields(k, gen, 0)})
		case 1:
			var rec cache.Record
			if rec, err = s.Read(ctx, key, genField); err == nil {
				f, _ := rec.Field(genField)
				_, err = s.Write(ctx, key, cache.Write{Fields: genFields(k, gen, f.Version)})
			}
		case 2:
			parity := []string{"even", "odd"}
			_, err = s.Write(ctx, key, cache.Write{
				Fields:     genFields(k, gen, 0),
				AddTags:    []string{parity[gen%2]},
				RemoveTags: []string{parity[1-gen%2]},
				Expires:    time.Now().Add(24*time.Hour + time.Duration(gen)*time.Second),
			})
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
// of 1,000 writes (at a random point); every record is then either its old or
// its new generation, both fields of the same one (a write is atomic), the value
// checksummed whole, and nothing acknowledged is lost.
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
			if _, err := s.Write(ctx, genKey(k), cache.Write{Create: true, Fields: genFields(k, 0, 0), AddTags: []string{"gen"}}); err != nil {
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
			rec, err := s.Read(ctx, genKey(k))
			if err != nil {
				t.Fatalf("round %d: %s lost after the kill: %v", round, genKey(k), err)
			}
			value, _ := rec.Field(genField)
			num, _ := rec.Field(genNum)
			gk, gen, err := parseGenValue(value.Value)
			if err != nil || gk != k {
				t.Fatalf("round %d: %s holds a bad value (key %d): %v", round, genKey(k), gk, err)
			}
			if gen < acked[k] || gen > acked[k]+1 {
				t.Fatalf("round %d: %s is at generation %d, acknowledged %d", round, genKey(k), gen, acked[k])
			}
			if string(value.Value) != string(genValue(k, gen)) {
				t.Fatalf("round %d: %s generation %d differs from what was written", round, genKey(k), gen)
			}
			if string(num.Value) != strconv.Itoa(gen) || num.Version != value.Version || len(rec.Fields) != 2 {
				t.Fatalf("round %d: %s holds the value of generation %d and the number %q (versions %d, %d; %d fields): not one write", round, genKey(k), gen, num.Value, value.Version, num.Version, len(rec.Fields))
			}
			if !slices.Contains(rec.Tags, "gen") {
				t.Fatalf("round %d: %s lost its tag: %q", round, genKey(k), rec.Tags)
			}
			if gen > 0 {
				advanced++
			}
			if gen == acked[k]+1 {
				inFlightLanded++
			}
		}
		all := 0
		for _, err := range s.Keys(ctx) {
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
			t.Fatalf("round %d: Keys yields %d records, Tagged %d; want %d", round, all, tagged, keys)
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
		Check:  "file store: a writer process (writes of two fields per record — a value of 1–48 KiB with its own SHA-256, and its generation — unconditional, compare-and-set on the value's version, and with a tag change and a new expiry, in turn) killed with SIGKILL at a random point of 1,000 writes over 50 records; each record then checked whole, old or new",
		Amount: fmt.Sprintf("%d kill(s), %d acknowledged writes before the kills", rounds, totalAcked),
		Measured: joinf(
			fmt.Sprintf("%d/%d records readable, checksummed, both fields of one generation", rounds*keys, rounds*keys),
			"0 torn, 0 half-applied writes, 0 corrupt-file warnings, 0 acknowledged writes lost",
			fmt.Sprintf("%d unacknowledged in-flight writes landed whole", inFlightLanded),
			fmt.Sprintf("%d stray temp files left for GC", leftovers),
		),
	})
}

// ---- a full disk ----

// fsizeResult is what the fsize child reports.
type fsizeResult struct {
	OverwriteErr  string `json:"overwrite_err"`
	OverwriteUnav bool   `json:"overwrite_unavailable"`
	NewErr        string `json:"new_err"`
	NewUnav       bool   `json:"new_unavailable"`
	OldAfter      string `json:"old_after"`
	SmallWriteErr string `json:"small_write_err"`
	ManyErr       string `json:"many_err"`
}

// value writes of one field.
func valueField(b []byte) []cache.FieldWrite { return []cache.FieldWrite{cache.Set("v", b)} }

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
	_, err = s.Write(ctx, "old", cache.Write{Fields: valueField(big)})
	res.OverwriteErr, res.OverwriteUnav = errText(err), errors.Is(err, cache.ErrUnavailable)
	_, err = s.Write(ctx, "new", cache.Write{Create: true, Fields: valueField(big)})
	res.NewErr, res.NewUnav = errText(err), errors.Is(err, cache.ErrUnavailable)
	// A session-like record: a large field beside a small one, in one write.
	_, err = s.Write(ctx, "many", cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("big", big), cache.Set("small", []byte("small"))}, AddTags: []string{"t"}})
	res.ManyErr = errText(err)
	rec, err := s.Read(ctx, "old")
	if err != nil {
		res.OldAfter = "error: " + err.Error()
	} else {
		f, _ := rec.Field("v")
		res.OldAfter = string(f.Value)
	}
	_, err = s.Write(ctx, "small", cache.Write{Create: true, Fields: valueField([]byte("fits"))})
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
	s := fileStore(t, dir)
	if _, err := s.Write(context.Background(), "old", cache.Write{Create: true, Fields: valueField([]byte("previous value"))}); err != nil {
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
	for what, e := range map[string]string{"overwrite": res.OverwriteErr, "new record": res.NewErr, "new record of two fields and a tag": res.ManyErr} {
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
	rec, err := s.Read(ctx, "old")
	if f, _ := rec.Field("v"); err != nil || string(f.Value) != "previous value" {
		t.Fatalf("previous value read by another process: %q, %v", f.Value, err)
	}
	for _, key := range []string{"new", "many"} {
		if _, err := s.Read(ctx, key); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("the refused new record %q: %v, want it absent", key, err)
		}
	}
	for k, err := range s.Tagged(ctx, "t") {
		t.Fatalf("the refused record's tag lists %q (%v)", k, err)
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
		Check:    "file store: writes past the space left (child process with RLIMIT_FSIZE 16 KiB: EFBIG) — overwrite, new record, new record of a large and a small field with a tag",
		Amount:   "3 refused writes, 1 write that fits",
		Measured: fmt.Sprintf("error %q matches cache.ErrUnavailable; previous value intact; refused records absent, their tag unlisted; 0 temp files left", tidy(res.OverwriteErr, dir)),
	})
}
