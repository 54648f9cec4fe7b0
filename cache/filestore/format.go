package filestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/fxsession/fxsession/cache"
)

// An entry file is a header, the value and a checksum of the value:
//
//	magic    4 bytes  "FXS1"
//	version  8 bytes  little endian, never 0
//	expires  8 bytes  unix nanoseconds, little endian; 0 = never
//	keyLen   1 byte, then the key
//	nTags    2 bytes, then per tag: 1 byte length and the tag
//	valueLen 4 bytes
//	hdrCRC   4 bytes  CRC-32C of everything above
//	value    valueLen bytes
//	valCRC   4 bytes  CRC-32C of the value
//
// The header has its own checksum so that Has, Tagged and garbage collection
// read only the header; Get and All check both.
const magic = "FXS1"

// minHeader is the size of a header with an empty key and no tags.
const minHeader = 4 + 8 + 8 + 1 + 2 + 4 + 4

// maxTags is the most tags one entry file can hold.
const maxTags = 1<<16 - 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errShort says the buffer ends inside the header.
var errShort = errors.New("filestore: entry header truncated")

// errCorrupt is wrapped by every decoding failure.
var errCorrupt = errors.New("filestore: corrupt entry file")

// record is a decoded entry file.
type record struct {
	key     string
	tags    []string
	version uint64
	expires int64
	value   []byte
	// hdrLen and valueLen describe the file's layout.
	hdrLen, valueLen int
}

func (r *record) expired(now int64) bool { return r.expires != 0 && r.expires <= now }

func (r *record) hasTag(tag string) bool {
	for _, t := range r.tags {
		if t == tag {
			return true
		}
	}
	return false
}

// encodeEntry returns the bytes of the entry file for r (hdrLen and valueLen
// are ignored).
func encodeEntry(r record) ([]byte, error) {
	if len(r.tags) > maxTags {
		return nil, fmt.Errorf("filestore: %d tags on %q, at most %d", len(r.tags), r.key, maxTags)
	}
	n := minHeader + len(r.key) + len(r.value) + 4
	for _, t := range r.tags {
		n += 1 + len(t)
	}
	b := make([]byte, 0, n)
	b = append(b, magic...)
	b = binary.LittleEndian.AppendUint64(b, r.version)
	b = binary.LittleEndian.AppendUint64(b, uint64(r.expires))
	b = append(b, byte(len(r.key)))
	b = append(b, r.key...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(r.tags)))
	for _, t := range r.tags {
		b = append(b, byte(len(t)))
		b = append(b, t...)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(r.value)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	b = append(b, r.value...)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(r.value, castagnoli))
	return b, nil
}

// decodeHeader decodes the header at the start of b. It returns errShort when b
// ends inside the header, and an error wrapping errCorrupt when the header is
// malformed. The value is not read.
func decodeHeader(b []byte) (record, error) {
	var r record
	if len(b) < 4 {
		return r, errShort
	}
	if string(b[:4]) != magic {
		return r, fmt.Errorf("%w: bad magic %q", errCorrupt, b[:4])
	}
	if len(b) < minHeader {
		return r, errShort
	}
	r.version = binary.LittleEndian.Uint64(b[4:])
	r.expires = int64(binary.LittleEndian.Uint64(b[12:]))
	p := 20
	kl := int(b[p])
	p++
	if len(b) < p+kl+2 {
		return r, errShort
	}
	key := b[p : p+kl]
	p += kl
	nt := int(binary.LittleEndian.Uint16(b[p:]))
	p += 2
	type span struct{ off, n int }
	var spans []span
	if nt > 0 {
		spans = make([]span, 0, min(nt, 16))
	}
	for range nt {
		if len(b) < p+1 {
			return r, errShort
		}
		tl := int(b[p])
		p++
		if len(b) < p+tl {
			return r, errShort
		}
		spans = append(spans, span{p, tl})
		p += tl
	}
	if len(b) < p+8 {
		return r, errShort
	}
	r.valueLen = int(binary.LittleEndian.Uint32(b[p:]))
	p += 4
	if got, want := crc32.Checksum(b[:p], castagnoli), binary.LittleEndian.Uint32(b[p:]); got != want {
		return r, fmt.Errorf("%w: header checksum %08x, stored %08x", errCorrupt, got, want)
	}
	p += 4
	r.hdrLen = p
	// The checksum matched; still refuse what no writer produces.
	if r.version == 0 {
		return r, fmt.Errorf("%w: version 0", errCorrupt)
	}
	if r.expires < 0 {
		return r, fmt.Errorf("%w: negative expiry", errCorrupt)
	}
	if err := cache.ValidateKey(string(key)); err != nil {
		return r, fmt.Errorf("%w: key: %w", errCorrupt, err)
	}
	r.key = string(key)
	if nt > 0 {
		r.tags = make([]string, len(spans))
		for i, s := range spans {
			t := string(b[s.off : s.off+s.n])
			if err := cache.ValidateKey(t); err != nil {
				return r, fmt.Errorf("%w: tag: %w", errCorrupt, err)
			}
			r.tags[i] = t
		}
	}
	return r, nil
}

// decodeEntry decodes a whole entry file. The value aliases b. Every failure
// wraps errCorrupt.
func decodeEntry(b []byte) (record, error) {
	r, err := decodeHeader(b)
	if errors.Is(err, errShort) {
		return r, fmt.Errorf("%w: %d bytes, truncated header", errCorrupt, len(b))
	}
	if err != nil {
		return r, err
	}
	if want := r.hdrLen + r.valueLen + 4; len(b) != want {
		return r, fmt.Errorf("%w: %d bytes, want %d", errCorrupt, len(b), want)
	}
	v := b[r.hdrLen : r.hdrLen+r.valueLen : r.hdrLen+r.valueLen]
	if got, want := crc32.Checksum(v, castagnoli), binary.LittleEndian.Uint32(b[r.hdrLen+r.valueLen:]); got != want {
		return r, fmt.Errorf("%w: value checksum %08x, stored %08x", errCorrupt, got, want)
	}
	r.value = v
	return r, nil
}
