package session

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func TestMetadataCodec(t *testing.T) {
	now := time.UnixMilli(1_900_000_000_123)
	var tags []string
	for i := range 20 { // past fixarray
		tags = append(tags, fmt.Sprintf("tag%d:%s", i, strings.Repeat("x", i*12))) // past fixstr
	}
	md := metadata{storageID: newStorageID(), created: now.Add(-time.Hour), lastActivity: now, tags: tags}
	b := md.encode()
	got, err := decodeMetadata(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.storageID != md.storageID || !got.created.Equal(md.created) || !got.lastActivity.Equal(md.lastActivity) || !slices.Equal(got.tags, tags) {
		t.Errorf("round trip: %+v", got)
	}
	// It is plain msgpack: the library reads it.
	var generic []any
	if err := msgpack.Unmarshal(b, &generic); err != nil || len(generic) != 5 || generic[1] != md.storageID {
		t.Errorf("msgpack reads %v, %v", generic, err)
	}
	// Written by another msgpack encoder with other integer widths: still read.
	other, _ := msgpack.Marshal([]any{uint8(1), md.storageID, md.created.UnixMilli(), uint64(md.lastActivity.UnixMilli()), tags, "future"})
	if got, err := decodeMetadata(other); err != nil || !got.lastActivity.Equal(md.lastActivity) {
		t.Errorf("library-encoded metadata: %+v, %v", got, err)
	}
	for name, bad := range map[string][]byte{
		"empty":      {},
		"short":      {0x93, 0x01, 0xa0, 0x00},
		"format 2":   append([]byte{0x95, 0x02}, b[2:]...),
		"bad sid":    {0x95, 0x01, 0xa3, 'a', 'b', 'c', 0x00, 0x00, 0x90},
		"truncated":  b[:len(b)-3],
		"not array":  {0xa1, 'x'},
		"bad tag":    mustMarshal(t, []any{1, md.storageID, 0, 0, []string{"has space"}}),
		"tag number": mustMarshal(t, []any{1, md.storageID, 0, 0, []int{1}}),
	} {
		if _, err := decodeMetadata(bad); !errors.Is(err, ErrDecode) {
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
