package filestore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// sampleRecords are records of every shape: no fields, empty values, the
// longest names, many tags.
func sampleRecords() []record {
	var manyTags []string
	for i := range 300 {
		manyTags = append(manyTags, fmt.Sprintf("tag%03d", i))
	}
	return []record{
		{key: "k", version: 1},
		{key: "session:abc", version: 42, expires: time.Now().UnixNano(), tags: []string{"user@example.com", "t2"},
			fields: []cache.Field{{Name: "meta", Value: []byte("hello"), Version: 41}, {Name: "empty", Value: []byte{}, Version: 42}}},
		{key: strings.Repeat("K", cache.MaxKeyLen), version: math.MaxUint64, expires: math.MaxInt64,
			tags:   []string{"a", strings.Repeat("t", cache.MaxKeyLen)},
			fields: []cache.Field{{Name: strings.Repeat("f", cache.MaxKeyLen), Value: bytes.Repeat([]byte{0, 1, 0xff}, 1000), Version: 7}}},
		{key: "many", version: 3, tags: manyTags},
	}
}

func sameRecord(a, b record) bool {
	if a.key != b.key || a.version != b.version || a.expires != b.expires || !slices.Equal(a.tags, b.tags) || len(a.fields) != len(b.fields) {
		return false
	}
	for i := range a.fields {
		if a.fields[i].Name != b.fields[i].Name || a.fields[i].Version != b.fields[i].Version || !bytes.Equal(a.fields[i].Value, b.fields[i].Value) {
			return false
		}
	}
	return true
}

func TestFormatRoundTrip(t *testing.T) {
	for _, r := range sampleRecords() {
		b, err := encode(&r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decode(b)
		if err != nil {
			t.Fatalf("decode(encode(%q)): %v", r.key, err)
		}
		if !sameRecord(got, r) {
			t.Fatalf("round trip of %q: got %+v", r.key, got)
		}
		// Every truncation and every flipped bit is detected.
		for i := range len(b) {
			if _, err := decode(b[:i]); !errors.Is(err, errCorrupt) {
				t.Fatalf("%q truncated to %d of %d bytes: error %v, want errCorrupt", r.key, i, len(b), err)
			}
		}
		for i := 0; i < len(b); i += 1 + len(b)/400 {
			for bit := range 8 {
				c := bytes.Clone(b)
				c[i] ^= 1 << bit
				if _, err := decode(c); !errors.Is(err, errCorrupt) {
					t.Fatalf("%q: bit %d of byte %d flipped: error %v, want errCorrupt", r.key, bit, i, err)
				}
			}
		}
	}
	b, _ := encode(&record{key: "k", version: 1})
	b[3] = 2
	if _, err := decode(b); !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), "format version 2") {
		t.Fatalf("a file of format version 2: %v", err)
	}
	if _, err := encode(&record{key: "k", version: 1, tags: make([]string, maxTags+1)}); err == nil {
		t.Fatal("encode accepted more than maxTags tags")
	}
}

// hostile is a record file with a valid checksum whose tag count is nTags,
// field count nFields, followed by rest (what the counts promise is not there).
func hostile(nTags uint16, nFields uint32, rest []byte) []byte {
	b := []byte(magic + "\x01")
	b = binary.LittleEndian.AppendUint64(b, 1)
	b = binary.LittleEndian.AppendUint64(b, 0)
	b = appendString(b, "k")
	b = binary.LittleEndian.AppendUint16(b, nTags)
	b = binary.LittleEndian.AppendUint32(b, nFields)
	b = append(b, rest...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// fieldOf is a record whose one field announces a value of n bytes.
func fieldOf(n uint32) []byte {
	f := appendString(nil, "f")
	f = binary.LittleEndian.AppendUint64(f, 1)
	f = binary.LittleEndian.AppendUint32(f, n)
	return hostile(0, 1, f)
}

// TestHostileLengths: counts and lengths that promise more than the file holds
// are refused before anything is allocated for them.
func TestHostileLengths(t *testing.T) {
	cases := map[string][]byte{
		"65535 tags":    hostile(math.MaxUint16, 0, make([]byte, 64)),
		"4G fields":     hostile(0, math.MaxUint32, make([]byte, 64)),
		"2G fields":     hostile(0, 1<<31, make([]byte, 64)),
		"field of 4GiB": fieldOf(math.MaxUint32),
		"field of 2GiB": fieldOf(1 << 31),
		"stray bytes":   hostile(0, 0, []byte{1}),
		"no checksum":   []byte(magic + "\x01"),
	}
	for name, b := range cases {
		// The least of a few runs: the runtime may allocate beside us.
		least := uint64(math.MaxUint64)
		for range 5 {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := decode(b)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("%s: error %v, want errCorrupt", name, err)
			}
			least = min(least, after.TotalAlloc-before.TotalAlloc)
		}
		if least > uint64(len(b))+1024 {
			t.Fatalf("%s: decoding %d bytes allocated %d", name, len(b), least)
		}
	}
}

// FuzzDecodeRecord feeds arbitrary bytes to the record file decoder: it must
// never panic, every failure wraps errCorrupt, and whatever decodes encodes
// back to the same bytes. Each input is also tried with a valid checksum put
// in its last four bytes, so that the fuzzer reaches the parser behind it.
func FuzzDecodeRecord(f *testing.F) {
	for _, r := range sampleRecords()[:2] {
		b, _ := encode(&r)
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	f.Add([]byte(magic + "\x01"))
	f.Add(hostile(3, 2, make([]byte, 40)))
	f.Add(fieldOf(5))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		inputs := [][]byte{data}
		if len(data) >= 4 {
			fixed := bytes.Clone(data)
			binary.LittleEndian.PutUint32(fixed[len(fixed)-4:], crc32.Checksum(fixed[:len(fixed)-4], castagnoli))
			inputs = append(inputs, fixed)
		}
		for _, in := range inputs {
			r, err := decode(in)
			if err != nil {
				if !errors.Is(err, errCorrupt) {
					t.Fatalf("decode error %v does not wrap errCorrupt", err)
				}
				continue
			}
			b, err := encode(&r)
			if err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			if !bytes.Equal(b, in) {
				t.Fatalf("decode/encode is not the identity:\n in %x\nout %x", in, b)
			}
		}
	})
}
