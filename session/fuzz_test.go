package session

import (
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fxsession/fxsession/internal/msgpackcheck"
	"github.com/vmihailenco/msgpack/v5"
)

// FuzzCookie feeds arbitrary Cookie header lines to the cookie scanner: it must
// never panic, and what it accepts must be a canonical 256-bit base64url ID found
// in the line.
func FuzzCookie(f *testing.F) {
	id := newID()
	for _, s := range []string{
		"fxsession=" + id,
		"a=1; fxsession=" + id + "; b=2",
		"fxsession=" + id[:42],
		"fxsession=" + id + "=",
		"fxsession=\"" + id + "\"",
		"fxsession= " + id + " ",
		"fxsessionx=" + id,
		"fxsession=bad; fxsession=" + id,
		";;;=",
		"fxsession",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		v, ok := scanCookies(line, "fxsession")
		if ok {
			if !ValidID(v) || !strings.Contains(line, v) {
				t.Fatalf("accepted %q from %q", v, line)
			}
		}
		// ValidID agrees with a strict base64url decoder.
		for _, cand := range []string{line, v} {
			b, err := base64.RawURLEncoding.Strict().DecodeString(cand)
			strict := err == nil && len(b) == idBytes && len(cand) == IDLength
			if ValidID(cand) != strict {
				t.Fatalf("ValidID(%q) = %v, strict decoding says %v", cand, ValidID(cand), strict)
			}
		}
	})
}

// FuzzDecodeMetadata feeds arbitrary bytes to the metadata decoder: it must never
// panic, and whatever it accepts must survive an encode/decode round trip.
func FuzzDecodeMetadata(f *testing.F) {
	now := time.UnixMilli(1_900_000_000_000)
	md := metadata{storageID: newStorageID(), created: now, lastActivity: now.Add(time.Minute), tags: []string{"user:42", "admin"}}
	f.Add(md.encode())
	md.tags = nil
	f.Add(md.encode())
	f.Add([]byte{0x95, 0x02})
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeMetadata(b)
		if err != nil {
			return
		}
		again, err := decodeMetadata(got.encode())
		if err != nil {
			t.Fatalf("re-encoded metadata does not decode: %v", err)
		}
		if again.storageID != got.storageID || !again.created.Equal(got.created) ||
			!again.lastActivity.Equal(got.lastActivity) || !slices.Equal(again.tags, got.tags) {
			t.Fatalf("round trip changed %+v into %+v", got, again)
		}
	})
}

// FuzzDecodeValue feeds arbitrary bytes to the value decoder with several
// destination types (values, bags, flashes): errors are fine, panics are not.
func FuzzDecodeValue(f *testing.F) {
	for _, v := range []any{"text", 42, point{1, 2}, []string{"a"}, map[string]any{"k": 1.5}} {
		b, _ := msgpack.Marshal(v)
		f.Add(b)
	}
	bag, _ := msgpack.Marshal(map[string]msgpack.RawMessage{"k": {0x01}})
	f.Add(bag)
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0xc7, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var (
			s    string
			p    point
			pp   *point
			m    map[string]any
			raw  map[string]msgpack.RawMessage
			list []string
			a    any
		)
		for _, dst := range []any{&s, &p, &pp, &m, &raw, &list, &a} {
			_ = decodeValue("k", b, dst)
		}
		_ = Value(b).Decode(&a)
	})
}

// TestDecodeValueRefusesHostileBytes: what msgpackcheck refuses (its own tests
// cover the check) is an error wrapping ErrDecode, and a timestamp that msgpack
// would read as a map header behind a map destination still decodes as a time.
func TestDecodeValueRefusesHostileBytes(t *testing.T) {
	deep := []byte{}
	for range msgpackcheck.DefaultMaxDepth + 1 {
		deep = append(deep, 0x91)
	}
	deep = append(deep, 0x01)
	for name, b := range map[string][]byte{
		"huge map":   {0xdf, 0xff, 0xff, 0xff, 0xff},
		"huge array": {0xdd, 0x10, 0x00, 0x00, 0x00, 0x01},
		"truncated":  {0xda, 0x00, 0x10, 'a'},
		"reserved":   {0xc1},
		"empty":      {},
		"deep":       deep,
		"trailing":   {0x01, 0x02},
		// a timestamp whose payload msgpack reads as a map32 header
		"timestamp map": {0xd5, 0xff, 0xdf, 0x9b, 0x23, 0xc0, 0xf1, 0xdf, 0xf7, 0x86, 0x30},
	} {
		var a any
		if err := decodeValue("k", b, &a); !errors.Is(err, ErrDecode) {
			t.Errorf("%s: decodeValue = %v, want ErrDecode", name, err)
		}
	}
	// An 8-byte timestamp payload starting with 0x81 (a fixmap header).
	when := time.Unix(1_777_000_000, 0x81<<22|12345)
	b, err := msgpack.Marshal(map[string]time.Time{"t": when})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]time.Time
	if err := decodeValue("k", b, &got); err != nil || !got["t"].Equal(when) {
		t.Fatalf("decodeValue = %v, %v; want %v", got, err, when)
	}
	var m map[string]map[string]any
	if err := decodeValue("k", b, &m); !errors.Is(err, ErrDecode) {
		t.Fatalf("decodeValue of a time into a map = %v, want ErrDecode", err)
	}
}
