package session

import (
	"encoding/base64"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/fxsession/fxsession/internal/msgpackcheck"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/memstore"
)

// FuzzCookie feeds arbitrary Cookie header lines to the cookie scanner: it must
// never panic, and what it accepts must be a canonical base64url ID (a 128-bit
// selector and a 256-bit verifier) found in the line.
func FuzzCookie(f *testing.F) {
	id := newID()
	for _, s := range []string{
		"fxsession=" + id,
		"a=1; fxsession=" + id + "; b=2",
		"fxsession=" + id[:IDLength-1],
		"fxsession=" + id[:RefLength],
		"fxsession=" + id[:RefLength-1] + "B" + id[RefLength:],
		"fxsession=JeSa17l83tm9hXMS23E64iMZ_d_0gIqxAhnDYeum6Ew", // an ID of the earlier layout
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
		// ValidID agrees with a strict base64url decoder of its two parts.
		for _, cand := range []string{line, v} {
			strict := false
			if len(cand) == IDLength {
				sel, err1 := base64.RawURLEncoding.Strict().DecodeString(cand[:RefLength])
				ver, err2 := base64.RawURLEncoding.Strict().DecodeString(cand[RefLength:])
				strict = err1 == nil && err2 == nil && len(sel) == selectorBytes && len(ver) == verifierBytes
			}
			if ValidID(cand) != strict {
				t.Fatalf("ValidID(%q) = %v, strict decoding says %v", cand, ValidID(cand), strict)
			}
		}
	})
}

// FuzzDecodeMetadata feeds arbitrary bytes to the decoders of a session
// record's metadata and activity fields: they must never panic, and whatever
// they accept must survive an encode/decode round trip. A manager opening a
// record with those fields must not panic either.
func FuzzDecodeMetadata(f *testing.F) {
	now := time.UnixMilli(1_900_000_000_000)
	md := metadata{created: now, verifier: verifierHash(newVerifier())}
	f.Add(md.encode())
	md.timeout = 30 * 24 * time.Hour
	f.Add(md.encode())
	f.Add(append(md.encode()[:len(md.encode()):len(md.encode())], 0xa6, 'f', 'u', 't', 'u', 'r', 'e'))
	f.Add((&activity{last: now}).encode())
	f.Add([]byte{0x94, 0x02})
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	m, err := New(memstore.New(memstore.Options{}), Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	valid := md.encode()
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, err := decodeMetadata(b); err == nil {
			again, err := decodeMetadata(got.encode())
			if err != nil {
				t.Fatalf("re-encoded metadata does not decode: %v", err)
			}
			if again != got {
				t.Fatalf("round trip changed %+v into %+v", got, again)
			}
		}
		if got, err := decodeActivity(b); err == nil {
			again, err := decodeActivity(got.encode())
			if err != nil || !again.last.Equal(got.last) {
				t.Fatalf("activity round trip changed %+v into %+v (%v)", got, again, err)
			}
		}
		for _, fields := range [][]cache.Field{
			{{Name: fieldMeta, Value: b, Version: 1}},
			{{Name: fieldMeta, Value: valid, Version: 1}, {Name: fieldActivity, Value: b, Version: 1}},
		} {
			_, _ = m.open(cache.Record{Key: "AAAAAAAAAAAAAAAAAAAAAA", Fields: fields, Version: 1}, now)
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
