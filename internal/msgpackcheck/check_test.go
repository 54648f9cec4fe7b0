package msgpackcheck_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/fxsession/fxsession/internal/msgpackcheck"
	"github.com/vmihailenco/msgpack/v5"
)

type point struct{ X, Y int }

type nested struct {
	A []map[string]any
	T time.Time
	F float32
	D float64
	B []byte
	U uint64
	I int64
	P *point
	M map[string]map[string]int
	R msgpack.RawMessage
}

// safeTime is a time whose encoding Check accepts as is (its 8-byte payload
// starts with 0x00).
var safeTime = time.Unix(1_700_000_000, 5)

func TestCheckAcceptsWhatMsgpackEncodes(t *testing.T) {
	big := strings.Repeat("x", 70000)
	for _, v := range []any{
		nil, true, false, 0, -1, -33, 200, 70000, 1 << 40, -(1 << 40), uint64(1 << 63), 1.5, float32(2.5),
		"", "short", strings.Repeat("y", 40), strings.Repeat("z", 300), big,
		[]byte{1, 2, 3}, make([]byte, 300), make([]byte, 70000),
		[]int{}, make([]int, 20), make([]int, 70000), map[string]int{}, map[int]string{1: "a"},
		make([]any, 20), map[string]any{"k": []any{1, "x", nil, map[string]any{}}},
		nested{
			A: []map[string]any{{"k": []any{1, "x", nil}}}, T: safeTime, B: []byte("b"), P: &point{1, 2},
			M: map[string]map[string]int{"a": {"b": 1}}, R: msgpack.RawMessage{0x92, 0x01, 0xa1, 'x'},
		},
		safeTime, time.Unix(1, 0), time.Unix(0, 0), time.Time{},
		time.Date(2030, 1, 1, 0, 0, 0, 1, time.UTC), time.Unix(1<<40, 0), time.Unix(-1<<40, 999_999_999),
	} {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := msgpackcheck.Check(b, 0); err != nil {
			t.Errorf("Check(%T %.40x) = %v", v, b, err)
		}
		p, err := msgpackcheck.Prepare(b, 0)
		if err != nil || &p[0] != &b[0] || len(p) != len(b) {
			t.Errorf("Prepare(%T) = %.40x, %v; want the input itself", v, p, err)
		}
	}
}

func deep(n int) []byte {
	b := bytes.Repeat([]byte{0x91}, n)
	return append(b, 0x01)
}

func TestCheckRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		b      []byte
		offset int
		reason string
	}{
		{"empty", nil, 0, "input ends"},
		{"huge map", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, 0, "map declares 8589934590 values, only 0 bytes left"},
		{"huge array", []byte{0xdd, 0x10, 0x00, 0x00, 0x00, 0x01}, 0, "array declares 268435456 values"},
		{"map needs two bytes an entry", []byte{0xde, 0x00, 0x02, 0x01, 0x02, 0x03}, 0, "map declares 4 values, only 3 bytes left"},
		{"fixarray beyond input", []byte{0x93, 0x01, 0x02}, 0, "fixarray declares 3 values"},
		{"nested huge array", []byte{0x92, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff}, 2, "array declares 4294967295"},
		{"huge string", []byte{0xdb, 0x7f, 0xff, 0xff, 0xff, 'a'}, 0, "str of 2147483647 bytes, 1 left"},
		{"huge bin", []byte{0x91, 0xc6, 0xff, 0xff, 0xff, 0xff}, 1, "bin of 4294967295 bytes"},
		{"fixstr beyond input", []byte{0xa3, 'a'}, 0, "fixstr of 3 bytes, 1 left"},
		{"truncated header", []byte{0xda, 0x00}, 0, "header of code 0xda cut short"},
		{"truncated float", []byte{0xcb, 0x00, 0x00}, 0, "needs 8 bytes, 2 left"},
		{"truncated value in a map", []byte{0x82, 0xa1, 'k', 0x01, 0xa1}, 4, "fixstr of 1 bytes, 0 left"},
		{"value missing at the end", []byte{0x92, 0x91, 0x91, 0x01}, 4, "input ends where a value should start"},
		{"reserved", []byte{0x91, 0xc1}, 1, "reserved code 0xc1"},
		{"trailing bytes", []byte{0x01, 0x02, 0x03}, 1, "2 bytes after the value"},
		{"deep", deep(msgpackcheck.DefaultMaxDepth + 1), msgpackcheck.DefaultMaxDepth, "nested deeper than 256 levels"},
		{"huge extension", []byte{0xc9, 0xff, 0xff, 0xff, 0xff, 0x05}, 0, "extension of 4294967295 bytes, 0 left"},
		{"extension without type", []byte{0xd4}, 0, "extension of 1 bytes, 0 left"},
		// msgpack reads an extension's payload as a map when the destination is a map.
		{"extension-wrapped huge map", []byte{0xd6, 0x05, 0xdf, 0xff, 0xff, 0xff}, 2, "header of code 0xdf cut short"},
		{"extension-wrapped huge map 2", []byte{0xc7, 0x05, 0x05, 0xdf, 0xff, 0xff, 0xff, 0xff}, 3, "map declares 8589934590 values"},
		{"extension payload ends inside a value", []byte{0xd5, 0x05, 0x92, 0x01, 0x02}, 2, "fixarray declares 2 values, only 1 bytes left"},
		{"extension payload ends before a value", []byte{0xd6, 0x05, 0x92, 0x91, 0x91, 0x01}, 6, "extension payload ends where a value should start"},
		// The payload is a sequence of values: after the first, msgpack reads on
		// from the payload (here into a []int of four billion).
		{"extension payload with a hidden tail", mustHex("82a141d705c0a142ddffffffffa14301"), 8, "array declares 4294967295"},
		{"extension nested too deep", []byte{0x91, 0xd4, 0x05, 0x01}, 1, "nested deeper than 1 levels"},
		{"extension payload nested too deep", []byte{0xd5, 0x05, 0x91, 0x01}, 2, "nested deeper than 1 levels"},
		// Timestamps whose payload msgpack would read as a map header.
		{"timestamp of 2 bytes read as a map", mustHex("d5ffdf9b23c0f1dff78630"), 0, "timestamp of 2 bytes starts with 0xdf"},
		{"timestamp of 12 bytes read as a map", append([]byte{0xc7, 12, 0xff, 0x81, 0xa0, 0xdd}, make([]byte, 9)...), 0, "timestamp of 12 bytes"},
		{"timestamp read as a map inside an extension", mustHex("c70a05d7ff81a0ddffffffff00"), 3, "timestamp inside an extension"},
		{"timestamp read as a map (Check)", mustHex("d7ff81a0ddffffffff00"), 0, "Prepare rewrites it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			maxDepth := 0
			if strings.Contains(tc.name, "nested too deep") {
				maxDepth = 1
			}
			err := msgpackcheck.Check(tc.b, maxDepth)
			var e *msgpackcheck.Error
			if !errors.As(err, &e) {
				t.Fatalf("Check(%x) = %v, want an *Error", tc.b, err)
			}
			if e.Offset != tc.offset || !strings.Contains(e.Reason, tc.reason) {
				t.Errorf("Check(%x) = %v; want offset %d and a reason with %q", tc.b, err, tc.offset, tc.reason)
			}
			if !strings.Contains(err.Error(), "byte") {
				t.Errorf("error %q does not say where", err)
			}
			if !strings.Contains(tc.name, "(Check)") {
				if p, err := msgpackcheck.Prepare(tc.b, maxDepth); err == nil {
					t.Errorf("Prepare(%x) = %x, accepted", tc.b, p)
				}
			}
		})
	}
}

func TestMaxDepth(t *testing.T) {
	for _, max := range []int{1, 2, 64, msgpackcheck.DefaultMaxDepth} {
		if err := msgpackcheck.Check(deep(max), max); err != nil {
			t.Errorf("depth %d with limit %d: %v", max, max, err)
		}
		if err := msgpackcheck.Check(deep(max+1), max); err == nil {
			t.Errorf("depth %d with limit %d: accepted", max+1, max)
		}
	}
	// Extension payloads count as a level.
	ext := []byte{0xd4, 0x05, 0x01}
	if err := msgpackcheck.Check(ext, 1); err != nil {
		t.Errorf("extension at depth 1: %v", err)
	}
	if err := msgpackcheck.Check(append([]byte{0x91}, ext...), 1); err == nil {
		t.Error("extension payload at depth 2 with limit 1: accepted")
	}
	// Empty containers at the limit are fine: they hold nothing deeper.
	if err := msgpackcheck.Check([]byte{0x91, 0x90}, 1); err != nil {
		t.Errorf("empty array at the limit: %v", err)
	}
	if err := msgpackcheck.Check(deep(300), -1); err == nil {
		t.Error("a negative limit does not mean DefaultMaxDepth")
	}
}

func TestExtensionsWithMsgpackPayloads(t *testing.T) {
	for _, b := range [][]byte{
		{0xc7, 0x00, 0x05},                         // empty payload
		{0xd4, 0x05, 0x01},                         // one value
		{0xd5, 0x05, 0x01, 0x02},                   // two values
		{0xd6, 0x05, 0x81, 0xa1, 'k', 0xc0},        // a map
		{0xd6, 0x05, 0xd5, 0x06, 0x01, 0x02},       // an extension in an extension
		{0x92, 0xc7, 0x00, 0x05, 0x81, 0xa0, 0x01}, // msgpack reads the map after it as the payload
		{0xd6, 0xff, 0x00, 0x00, 0x00, 0x01},       // timestamp, raw bytes
		{0xd6, 0xff, 0xc1, 0xc1, 0xc1, 0xc1},       // ... whatever they are
		{0xc7, 0x00, 0xff},                         // an empty timestamp (msgpack refuses it)
	} {
		if err := msgpackcheck.Check(b, 0); err != nil {
			t.Errorf("Check(%x) = %v", b, err)
		}
	}
}

// riskyTime returns a time whose msgpack encoding is a timestamp with an 8-byte
// payload starting with first.
func riskyTime(first byte) time.Time {
	nsec := int64(first)<<22 | 12345
	return time.Unix(1_777_000_000, nsec)
}

func TestPrepareRewritesRiskyTimestamps(t *testing.T) {
	var times []time.Time
	for _, c := range []byte{0x80, 0x85, 0x8f, 0xc0, 0xde, 0xdf} {
		times = append(times, riskyTime(c))
	}
	// 4-byte payloads: seconds from 2038 on, no nanoseconds.
	times = append(times, time.Unix(0x80000000, 0), time.Unix(0xdf000001, 0), time.Unix(0xc0ffffff, 0))
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		times = append(times, time.Unix(r.Int64N(1<<34), r.Int64N(1e9)))
	}
	risky := 0
	for _, tm := range times {
		for _, v := range []any{tm, []any{1, tm, "x"}, map[string]any{"t": tm, "u": []time.Time{tm, tm}}} {
			b, err := msgpack.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			p, err := msgpackcheck.Prepare(b, 0)
			if err != nil {
				t.Fatalf("Prepare(%x) = %v", b, err)
			}
			if msgpackcheck.Check(b, 0) == nil {
				if !bytes.Equal(p, b) {
					t.Fatalf("Prepare changed %x, which Check accepts, into %x", b, p)
				}
				continue
			}
			risky++
			if err := msgpackcheck.Check(p, 0); err != nil {
				t.Fatalf("Check(Prepare(%x)) = %v", b, err)
			}
			if again, err := msgpackcheck.Prepare(p, 0); err != nil || &again[0] != &p[0] {
				t.Fatalf("Prepare is not idempotent on %x: %x, %v", p, again, err)
			}
			// Same instant, same time.Time.
			var want, got any
			if err := msgpack.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			if err := msgpack.Unmarshal(p, &got); err != nil {
				t.Fatal(err)
			}
			if !equalEncoding(t, want, got) {
				t.Fatalf("%x decodes to %v, its rewrite %x to %v", b, want, p, got)
			}
			if tv, ok := v.(time.Time); ok {
				var tt time.Time
				if err := msgpack.Unmarshal(p, &tt); err != nil || !tt.Equal(tv) {
					t.Fatalf("rewrite %x decodes to %v (%v), want %v", p, tt, err, tv)
				}
				// Behind a map destination msgpack now stops at once.
				var m map[string]any
				if err := msgpack.Unmarshal(p, &m); err == nil {
					t.Fatalf("rewrite %x decodes into a map", p)
				}
			}
		}
	}
	if risky < 9*3 {
		t.Fatalf("only %d risky timestamps among the samples", risky)
	}
}

// The timestamp that msgpack decodes as 2514-05-30 and, behind a map[string]any,
// as a map whose value is a []any of four billion elements.
func TestRiskyTimestampIsAValidTime(t *testing.T) {
	b := mustHex("d7ff81a0ddffffffff00")
	var tm time.Time
	if err := msgpack.Unmarshal(b, &tm); err != nil {
		t.Fatal(err)
	}
	p, err := msgpackcheck.Prepare(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	var tm2 time.Time
	if err := msgpack.Unmarshal(p, &tm2); err != nil || !tm2.Equal(tm) {
		t.Fatalf("rewrite decodes to %v, %v; want %v", tm2, err, tm)
	}
	var m map[string]any
	if err := decodeBounded(t, p, &m); err == nil {
		t.Fatal("the rewrite decodes into a map")
	}
}

func TestNoAllocations(t *testing.T) {
	b, err := msgpack.Marshal(nested{A: []map[string]any{{"k": []any{1, "x", nil}}}, T: safeTime, P: &point{1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = msgpackcheck.Check(b, 0) }); n != 0 {
		t.Errorf("Check allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = msgpackcheck.Prepare(b, 0) }); n != 0 {
		t.Errorf("Prepare allocates %v times when it has nothing to rewrite", n)
	}
	d := deep(200)
	if n := testing.AllocsPerRun(100, func() { _ = msgpackcheck.Check(d, 0) }); n != 0 {
		t.Errorf("Check allocates %v times on deep input", n)
	}
}
