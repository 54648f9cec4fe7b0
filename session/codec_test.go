package session

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func TestMetadataCodec(t *testing.T) {
	now := time.UnixMilli(1_900_000_000_123)
	md := metadata{created: now, verifier: verifierHash(newVerifier()), timeout: 7 * 24 * time.Hour, renewed: now.Add(time.Minute)}
	rotated := md
	rotated.previous, rotated.previousUntil = verifierHash(newVerifier()), now.Add(90*time.Second)
	for _, m := range []metadata{md, rotated} {
		got, err := decodeMetadata(m.encode())
		if err != nil {
			t.Fatal(err)
		}
		if !got.created.Equal(m.created) || got.verifier != m.verifier || got.timeout != m.timeout || !got.renewed.Equal(m.renewed) ||
			got.previous != m.previous || !got.previousUntil.Equal(m.previousUntil) {
			t.Errorf("round trip: %+v, want %+v", got, m)
		}
	}
	b := md.encode()
	// It is plain msgpack: the library reads it.
	var generic []any
	if err := msgpack.Unmarshal(b, &generic); err != nil || len(generic) != 7 || !bytes.Equal(generic[2].([]byte), md.verifier[:]) {
		t.Errorf("msgpack reads %v, %v", generic, err)
	}
	// Written by another msgpack encoder with other integer widths, and with an
	// element a later format appends: still read.
	other, _ := msgpack.Marshal([]any{uint8(metadataFormat), uint64(now.UnixMilli()), md.verifier[:], int32(md.timeout.Milliseconds()), "future"})
	if got, err := decodeMetadata(other); err != nil || !got.created.Equal(now) || got.verifier != md.verifier || got.timeout != md.timeout {
		t.Errorf("library-encoded metadata: %+v, %v", got, err)
	}
	for name, bad := range map[string][]byte{
		"empty":            {},
		"short":            mustMarshal(t, []any{metadataFormat, 0, md.verifier[:]}),
		"format 1":         mustMarshal(t, []any{1, 0, md.verifier[:], 0}),
		"format 3":         mustMarshal(t, []any{3, 0, md.verifier[:], 0}),
		"short verifier":   mustMarshal(t, []any{metadataFormat, 0, md.verifier[:31], 0}),
		"verifier number":  mustMarshal(t, []any{metadataFormat, 0, 7, 0}),
		"negative timeout": mustMarshal(t, []any{metadataFormat, 0, md.verifier[:], -1}),
		"timeout overflow": mustMarshal(t, []any{metadataFormat, 0, md.verifier[:], int64(math.MaxInt64 / 1000)}),
		"truncated":        b[:len(b)-3],
		"not array":        {0xa1, 'x'},
		"huge array":       {0xdd, 0xff, 0xff, 0xff, 0xff},
		"float created":    mustMarshal(t, []any{metadataFormat, 1.5, md.verifier[:], 0}),
	} {
		if _, err := decodeMetadata(bad); !errors.Is(err, ErrDecode) {
			t.Errorf("%s: %v, want ErrDecode", name, err)
		}
	}
}

func TestActivityCodec(t *testing.T) {
	a := activity{last: time.UnixMilli(1_900_000_000_123)}
	got, err := decodeActivity(a.encode())
	if err != nil || !got.last.Equal(a.last) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if got, err := decodeActivity(mustMarshal(t, []any{a.last.UnixMilli(), "future"})); err != nil || !got.last.Equal(a.last) {
		t.Errorf("with an appended element: %+v, %v", got, err)
	}
	for name, bad := range map[string][]byte{
		"empty":     {},
		"no fields": {0x90},
		"string":    mustMarshal(t, []any{"x"}),
		"truncated": a.encode()[:4],
	} {
		if _, err := decodeActivity(bad); !errors.Is(err, ErrDecode) {
			t.Errorf("%s: %v, want ErrDecode", name, err)
		}
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
