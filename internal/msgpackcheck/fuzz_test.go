package msgpackcheck_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/fxsession/fxsession/internal/msgpackcheck"
	"github.com/vmihailenco/msgpack/v5"
)

// FuzzCheck feeds arbitrary bytes to Check and Prepare. Neither may panic, they
// must agree, and whatever Prepare returns, upstream msgpack must decode into
// every destination below (errors are fine) without allocating more than in
// proportion to the input. A hole in the check shows as a failed allocation
// bound, or as the test process dying at its address-space limit (TestMain).
func FuzzCheck(f *testing.F) {
	for _, v := range []any{
		"text", 42, -7, 1.5, true, nil, []byte("raw"), point{1, 2}, []string{"a", "b"},
		map[string]any{"k": 1.5, "l": []any{"x", nil, map[string]any{}}},
		nested{A: []map[string]any{{"k": []any{1}}}, T: safeTime, M: map[string]map[string]int{"a": {"b": 1}}},
		riskyTime(0x81), riskyTime(0xdf), riskyTime(0xc0), time.Unix(0x80000001, 0),
		[]any{riskyTime(0x8f), "x", map[string]any{"t": riskyTime(0xde)}},
	} {
		b, err := msgpack.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, h := range []string{
		"dfffffffff", "dd10000001", "dbffffffff61", "c6ffffffff", "d505df9b23c0f1", "c70505dfffffffff",
		"d7ff81a0ddffffffff00", "82a141d705c0a142ddffffffffa14301", "d5ffdf9b23c0f1dff78630",
		"83a14dd6ffc0a142ddffffffff", "c70a05d7ff81a0ddffffffff00", "91c1", "",
	} {
		f.Add(mustHex(h))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkErr := msgpackcheck.Check(b, 0)
		p, err := msgpackcheck.Prepare(b, 0)
		if err != nil {
			var e *msgpackcheck.Error
			if !errors.As(err, &e) || e.Offset < 0 || e.Offset > len(b) {
				t.Fatalf("Prepare error %v (%T) has no valid offset", err, err)
			}
			if checkErr == nil {
				t.Fatalf("Check accepts %x, Prepare refuses it: %v", b, err)
			}
			return
		}
		if checkErr == nil && !same(p, b) {
			t.Fatalf("Prepare changed %x, which Check accepts, into %x", b, p)
		}
		if err := msgpackcheck.Check(p, 0); err != nil {
			t.Fatalf("Check(Prepare(%x)) = %v", b, err)
		}
		for _, dst := range destinations() {
			_ = decodeBounded(t, p, dst)
		}
		if !same(p, b) {
			// Only risky timestamps were rewritten: into any, which never reads a
			// timestamp as a map, both decode alike.
			var want, got any
			errWant := unmarshal(b, &want)
			errGot := unmarshal(p, &got)
			if (errWant == nil) != (errGot == nil) || errWant == nil && !equalEncoding(t, want, got) {
				t.Fatalf("%x decodes to %v (%v), its rewrite %x to %v (%v)", b, want, errWant, p, got, errGot)
			}
		}
	})
}

// destinations are the Go types the fuzz target decodes into: maps of every kind
// msgpack has a separate path for (the ones that read extension payloads), slices,
// structs, times, raw messages.
func destinations() []any {
	return []any{
		new(any), new(map[string]any), new(map[any]any), new(map[string]string), new(map[string]bool),
		new(map[int]string), new(map[string][]int), new(map[string]map[string]any), new([]any),
		new([]string), new([]map[string]any), new([]int), new([3]any), new([]byte), new(string),
		new(time.Time), new(nested), new(*point), new(map[string]msgpack.RawMessage),
		new(msgpack.RawMessage), new([]time.Time), new(mapThenSlice),
	}
}

// mapThenSlice is where a timestamp payload starting with nil (0xc0) hurts: M reads
// it as a nil map and the struct's next key from inside the payload.
type mapThenSlice struct {
	M map[string]int
	B []int
}

// decodeBounded decodes b into dst with upstream msgpack and fails t when that
// allocated more than 1 MiB plus 1 KiB per input byte (a hostile header asks for
// gigabytes).
func decodeBounded(t testing.TB, b []byte, dst any) error {
	t.Helper()
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	err := unmarshal(b, dst)
	metrics.Read(s)
	if used, limit := s[0].Value.Uint64()-before, uint64(1<<20+1024*len(b)); used > limit {
		t.Fatalf("decoding %d bytes (%.64x) into %T allocated %d bytes", len(b), b, dst, used)
	}
	return err
}

// unmarshal is msgpack.Unmarshal that turns a panic into an error, as fxsession's
// decoders do (msgpack panics on, for example, a map key of an unhashable type).
func unmarshal(b []byte, dst any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return msgpack.Unmarshal(b, dst)
}

func same(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// equalEncoding reports whether a and b encode alike (map keys sorted).
func equalEncoding(t testing.TB, a, b any) bool {
	t.Helper()
	enc := func(v any) []byte {
		var buf bytes.Buffer
		e := msgpack.NewEncoder(&buf)
		e.SetSortMapKeys(true)
		if err := e.Encode(v); err != nil {
			t.Fatalf("encoding %v: %v", v, err)
		}
		return buf.Bytes()
	}
	return bytes.Equal(enc(a), enc(b))
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
