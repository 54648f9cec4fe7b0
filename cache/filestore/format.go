package filestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// A record file, format version 1 (integers little endian):
//
//	header
//	  "FXR" 0x01          magic and format version
//	  u32                 header length H (all of the header, checksum included)
//	  u64                 record version, never 0
//	  i64                 expiry, Unix nanoseconds; 0 = never
//	  u64                 body length B
//	  u8 + bytes          key
//	  u16 + n×(u8+bytes)  tags
//	  u32                 field count
//	  u32                 CRC-32C of the header bytes before it
//	body (B bytes)
//	  per field: u8 + bytes name, u64 version, u32 + bytes value
//	u32                   CRC-32C of the body
//
// The header has its own checksum so that listing, the tag index and garbage
// collection read only the header; Read and every change read the whole file and
// check both. No length is trusted before it is checked against the bytes
// present, so a hostile file never makes the decoder allocate beyond its size
// (plus the bookkeeping of the fields it really holds).
const (
	magic         = "FXR"
	formatVersion = 1
	// prefixLen is the part of the header that says how long the header is.
	prefixLen = 8
	// fixedHeader is the header of a record with an empty key, no tags.
	fixedHeader = 4 + 4 + 8 + 8 + 8 + 1 + 2 + 4 + 4
	// minField is the encoding of a field with a 1-byte name, empty value.
	minField = 1 + 1 + 8 + 4
	maxTags  = math.MaxUint16
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt is wrapped by every decoding failure.
var errCorrupt = errors.New("filestore: corrupt record file")

// record is a decoded record file (also the format of lock files: the lock's
// name as key, its deadline as expiry, its owner token as a field).
type record struct {
	key     string
	version cache.Version
	expires int64 // Unix nanoseconds; 0 = never
	tags    []string
	fields  []cache.Field
}

func (r *record) expired(now time.Time) bool {
	return r.expires != 0 && r.expires <= now.UnixNano()
}

func (r *record) hasTag(tag string) bool {
	for _, t := range r.tags {
		if t == tag {
			return true
		}
	}
	return false
}

// field returns the index of field name, or -1.
func (r *record) field(name string) int {
	for i := range r.fields {
		if r.fields[i].Name == name {
			return i
		}
	}
	return -1
}

// unixNano turns an expiry into the stored form: never 0 (0 means never),
// clamped to what an int64 of nanoseconds holds (years 1970 to 2262).
func unixNano(t time.Time) int64 {
	switch {
	case t.Unix() <= 0:
		return 1
	case t.Unix() >= math.MaxInt64/int64(time.Second):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// encode returns the bytes of the record file of r.
func encode(r *record) ([]byte, error) {
	if len(r.tags) > maxTags {
		return nil, fmt.Errorf("filestore: %d tags on %q, at most %d", len(r.tags), r.key, maxTags)
	}
	hdr := fixedHeader + len(r.key)
	for _, t := range r.tags {
		hdr += 1 + len(t)
	}
	body := 0
	for _, f := range r.fields {
		if len(f.Value) > math.MaxUint32 {
			return nil, fmt.Errorf("filestore: field %q of %q: %d bytes", f.Name, r.key, len(f.Value))
		}
		body += 1 + len(f.Name) + 8 + 4 + len(f.Value)
	}
	b := make([]byte, 0, hdr+body+4)
	b = append(b, magic...)
	b = append(b, formatVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(hdr))
	b = binary.LittleEndian.AppendUint64(b, uint64(r.version))
	b = binary.LittleEndian.AppendUint64(b, uint64(r.expires))
	b = binary.LittleEndian.AppendUint64(b, uint64(body))
	b = appendString(b, r.key)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(r.tags)))
	for _, t := range r.tags {
		b = appendString(b, t)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(r.fields)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	for _, f := range r.fields {
		b = appendString(b, f.Name)
		b = binary.LittleEndian.AppendUint64(b, uint64(f.Version))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f.Value)))
		b = append(b, f.Value...)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[hdr:], castagnoli)), nil
}

func appendString(b []byte, s string) []byte {
	return append(append(b, byte(len(s))), s...)
}

// headerLen returns the header length a file starting with b (at least
// prefixLen bytes) announces.
func headerLen(b []byte) (int, error) {
	if len(b) < prefixLen {
		return 0, fmt.Errorf("%w: %d bytes, shorter than a header", errCorrupt, len(b))
	}
	if string(b[:3]) != magic {
		return 0, fmt.Errorf("%w: bad magic %q", errCorrupt, b[:3])
	}
	if b[3] != formatVersion {
		return 0, fmt.Errorf("%w: format version %d, this build reads %d", errCorrupt, b[3], formatVersion)
	}
	n := binary.LittleEndian.Uint32(b[4:])
	if n < fixedHeader {
		return 0, fmt.Errorf("%w: header length %d", errCorrupt, n)
	}
	return int(n), nil
}

// reader walks a checked byte slice; every read checks what is left first.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b) {
		if r.err == nil {
			r.err = fmt.Errorf("%w: truncated", errCorrupt)
		}
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8() int {
	if b := r.take(1); b != nil {
		return int(b[0])
	}
	return 0
}

func (r *reader) u16() int {
	if b := r.take(2); b != nil {
		return int(binary.LittleEndian.Uint16(b))
	}
	return 0
}

func (r *reader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// name reads a length-prefixed key, tag or field name and checks it.
func (r *reader) name(what string) string {
	s := string(r.take(r.u8()))
	if r.err == nil {
		if err := cache.ValidateKey(s); err != nil {
			r.err = fmt.Errorf("%w: %s: %w", errCorrupt, what, err)
		}
	}
	return s
}

// decodeHeader decodes the header b (exactly the header length headerLen
// announced): everything but the fields. It returns the body length and the
// field count.
func decodeHeader(b []byte) (rec record, bodyLen uint64, nFields int, err error) {
	n, err := headerLen(b)
	if err != nil {
		return rec, 0, 0, err
	}
	if n != len(b) {
		return rec, 0, 0, fmt.Errorf("%w: header of %d bytes, %d given", errCorrupt, n, len(b))
	}
	if got, want := crc32.Checksum(b[:n-4], castagnoli), binary.LittleEndian.Uint32(b[n-4:]); got != want {
		return rec, 0, 0, fmt.Errorf("%w: header checksum %08x, stored %08x", errCorrupt, got, want)
	}
	r := reader{b: b[prefixLen : n-4]}
	rec.version = cache.Version(r.u64())
	rec.expires = int64(r.u64())
	bodyLen = r.u64()
	rec.key = r.name("key")
	nTags := r.u16()
	if r.err == nil && nTags > 0 {
		if 2*nTags > len(r.b) {
			return rec, 0, 0, fmt.Errorf("%w: %d tags in %d bytes", errCorrupt, nTags, len(r.b))
		}
		rec.tags = make([]string, nTags)
		for i := range rec.tags {
			rec.tags[i] = r.name("tag")
		}
	}
	nFields = int(r.u32())
	switch {
	case r.err != nil:
		return rec, 0, 0, r.err
	case len(r.b) != 0:
		return rec, 0, 0, fmt.Errorf("%w: %d stray header bytes", errCorrupt, len(r.b))
	case rec.version == 0:
		return rec, 0, 0, fmt.Errorf("%w: version 0", errCorrupt)
	case rec.expires < 0:
		return rec, 0, 0, fmt.Errorf("%w: negative expiry", errCorrupt)
	case uint64(nFields) > bodyLen/minField:
		return rec, 0, 0, fmt.Errorf("%w: %d fields in a body of %d bytes", errCorrupt, nFields, bodyLen)
	}
	return rec, bodyLen, nFields, nil
}

// decode decodes a whole record file. Field values alias b.
func decode(b []byte) (record, error) {
	n, err := headerLen(b)
	if err != nil {
		return record{}, err
	}
	if n > len(b) {
		return record{}, fmt.Errorf("%w: %d bytes, header of %d", errCorrupt, len(b), n)
	}
	rec, bodyLen, nFields, err := decodeHeader(b[:n])
	if err != nil {
		return rec, err
	}
	if uint64(len(b)-n) != bodyLen+4 {
		return rec, fmt.Errorf("%w: %d bytes, want %d", errCorrupt, len(b), uint64(n)+bodyLen+4)
	}
	body := b[n : len(b)-4]
	if got, want := crc32.Checksum(body, castagnoli), binary.LittleEndian.Uint32(b[len(b)-4:]); got != want {
		return rec, fmt.Errorf("%w: body checksum %08x, stored %08x", errCorrupt, got, want)
	}
	r := reader{b: body}
	if nFields > 0 {
		rec.fields = make([]cache.Field, nFields)
	}
	for i := range rec.fields {
		f := &rec.fields[i]
		f.Name = r.name("field")
		f.Version = cache.Version(r.u64())
		f.Value = r.take(int(r.u32()))
		if r.err == nil && f.Version == 0 {
			r.err = fmt.Errorf("%w: field %q has version 0", errCorrupt, f.Name)
		}
	}
	switch {
	case r.err != nil:
		return rec, r.err
	case len(r.b) != 0:
		return rec, fmt.Errorf("%w: %d stray body bytes", errCorrupt, len(r.b))
	}
	return rec, nil
}
