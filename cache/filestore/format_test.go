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

// sampleRecords are records of every shape: no fields, empty values, long names,
// a header longer than the 512 bytes a header read peeks at first.
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
		n, err := headerLen(b)
		if err != nil {
			t.Fatal(err)
		}
		h, _, nf, err := decodeHeader(b[:n])
		if err != nil || h.key != r.key || !slices.Equal(h.tags, r.tags) || nf != len(r.fields) {
			t.Fatalf("header of %q: %+v, %d fields, %v", r.key, h, nf, err)
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

// hostileHeader is a header with a valid checksum announcing nTags tags (none
// present), nFields fields and a body of bodyLen bytes.
func hostileHeader(nTags uint16, nFields uint32, bodyLen uint64) []byte {
	b := []byte(magic + "\x01")
	b = binary.LittleEndian.AppendUint32(b, 0) // header length, set below
	b = binary.LittleEndian.AppendUint64(b, 1)
	b = binary.LittleEndian.AppendUint64(b, 0)
	b = binary.LittleEndian.AppendUint64(b, bodyLen)
	b = appendString(b, "k")
	b = binary.LittleEndian.AppendUint16(b, nTags)
	b = binary.LittleEndian.AppendUint32(b, nFields)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)+4))
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// TestHostileLengths: counts and lengths that promise more than the file holds
// are refused before anything is allocated for them.
func TestHostileLengths(t *testing.T) {
	huge := binary.LittleEndian.AppendUint32([]byte(magic+"\x01"), math.MaxUint32)
	cases := map[string][]byte{
		"65535 tags":          hostileHeader(math.MaxUint16, 0, 0),
		"4G fields":           append(hostileHeader(0, math.MaxUint32, 1<<40), make([]byte, 64)...),
		"body of 1 TiB":       append(hostileHeader(0, 1, 1<<40), make([]byte, 64)...),
		"header of 4 GiB":     append(huge, make([]byte, 64)...),
		"field of 4 GiB":      fieldOf(math.MaxUint32),
		"negative body":       append(hostileHeader(0, 0, math.MaxUint64), 0, 0, 0, 0),
		"header length short": binary.LittleEndian.AppendUint32([]byte(magic+"\x01"), 3),
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

// fieldOf is a record whose one field announces a value of n bytes.
func fieldOf(n uint32) []byte {
	body := appendString(nil, "f")
	body = binary.LittleEndian.AppendUint64(body, 1)
	body = binary.LittleEndian.AppendUint32(body, n)
	b := hostileHeader(0, 1, uint64(len(body)))
	b = append(b, body...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(body, castagnoli))
}

// FuzzDecodeRecord feeds arbitrary bytes to the record file decoder: it must
// never panic, every failure wraps errCorrupt, the header decoder agrees with
// the whole-file decoder, and whatever decodes encodes back to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	for _, r := range sampleRecords()[:2] {
		b, _ := encode(&r)
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	f.Add([]byte(magic + "\x01"))
	f.Add(hostileHeader(3, 2, 40))
	f.Add(fieldOf(5))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decode(data)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("decode error %v does not wrap errCorrupt", err)
			}
			return
		}
		n, err := headerLen(data)
		if err != nil {
			t.Fatalf("decode accepted what headerLen refuses: %v", err)
		}
		h, _, nf, err := decodeHeader(data[:n])
		if err != nil || h.key != r.key || h.version != r.version || h.expires != r.expires || !slices.Equal(h.tags, r.tags) || nf != len(r.fields) {
			t.Fatalf("header and record decoders disagree: %+v (%v) vs %+v", h, err, r)
		}
		b, err := encode(&r)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(b, data) {
			t.Fatalf("decode/encode is not the identity:\n in %x\nout %x", data, b)
		}
	})
}
