package filestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// A record file, format version 1 (integers little endian):
//
//	"FXR" 0x01            magic and format version
//	u64                   record version, never 0
//	i64                   expiry, Unix nanoseconds; 0 = never
//	u8 + bytes            key
//	u16 + n × (u8+bytes)  tags
//	u32 + n × field       fields: u8 + bytes name, u64 version, u32 + bytes value
//	u32                   CRC-32C of all the bytes before it
//
// No count or length is trusted before it is checked against the bytes
// present, so a hostile file never makes the decoder allocate beyond its size
// (plus the bookkeeping of the fields and tags it really holds).
const (
	magic         = "FXR"
	formatVersion = 1
	// minFile is the size of a record with an empty key, no tags, no fields.
	minFile = 4 + 8 + 8 + 1 + 2 + 4 + 4
	// minField is the encoding of a field with a 1-byte name and an empty value.
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

func (r *record) hasTag(tag string) bool { return slices.Contains(r.tags, tag) }

// field returns the index of field name, or -1.
func (r *record) field(name string) int {
	return slices.IndexFunc(r.fields, func(f cache.Field) bool { return f.Name == name })
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
	n := minFile + len(r.key)
	for _, t := range r.tags {
		n += 1 + len(t)
	}
	for _, f := range r.fields {
		if len(f.Value) > math.MaxUint32 {
			return nil, fmt.Errorf("filestore: field %q of %q: %d bytes", f.Name, r.key, len(f.Value))
		}
		n += 1 + len(f.Name) + 8 + 4 + len(f.Value)
	}
	b := make([]byte, 0, n)
	b = append(b, magic...)
	b = append(b, formatVersion)
	b = binary.LittleEndian.AppendUint64(b, uint64(r.version))
	b = binary.LittleEndian.AppendUint64(b, uint64(r.expires))
	b = appendString(b, r.key)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(r.tags)))
	for _, t := range r.tags {
		b = appendString(b, t)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(r.fields)))
	for _, f := range r.fields {
		b = appendString(b, f.Name)
		b = binary.LittleEndian.AppendUint64(b, uint64(f.Version))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f.Value)))
		b = append(b, f.Value...)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

func appendString(b []byte, s string) []byte {
	return append(append(b, byte(len(s))), s...)
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

// fits checks that n items of at least size bytes each can be in what is left.
func (r *reader) fits(n, size int) bool {
	if r.err == nil && uint64(n)*uint64(size) > uint64(len(r.b)) {
		r.err = fmt.Errorf("%w: %d items in %d bytes", errCorrupt, n, len(r.b))
	}
	return r.err == nil
}

// uint reads an n-byte little-endian integer.
func (r *reader) uint(n int) uint64 {
	var v uint64
	for i, c := range r.take(n) {
		v |= uint64(c) << (8 * i)
	}
	return v
}

// name reads a length-prefixed key, tag or field name and checks it.
func (r *reader) name(what string) string {
	s := string(r.take(int(r.uint(1))))
	if r.err == nil {
		if err := cache.ValidateKey(s); err != nil {
			r.err = fmt.Errorf("%w: %s: %w", errCorrupt, what, err)
		}
	}
	return s
}

// decode decodes a record file. Field values alias b.
func decode(b []byte) (record, error) {
	var rec record
	switch {
	case len(b) < minFile:
		return rec, fmt.Errorf("%w: %d bytes, shorter than a record", errCorrupt, len(b))
	case string(b[:3]) != magic:
		return rec, fmt.Errorf("%w: bad magic %q", errCorrupt, b[:3])
	case b[3] != formatVersion:
		return rec, fmt.Errorf("%w: format version %d, this build reads %d", errCorrupt, b[3], formatVersion)
	}
	body := b[:len(b)-4]
	if got, want := crc32.Checksum(body, castagnoli), binary.LittleEndian.Uint32(b[len(b)-4:]); got != want {
		return rec, fmt.Errorf("%w: checksum %08x, stored %08x", errCorrupt, got, want)
	}
	r := reader{b: body[4:]}
	rec.version = cache.Version(r.uint(8))
	rec.expires = int64(r.uint(8))
	rec.key = r.name("key")
	if n := int(r.uint(2)); n > 0 && r.fits(n, 2) {
		rec.tags = make([]string, n)
		for i := range rec.tags {
			rec.tags[i] = r.name("tag")
		}
	}
	if n := int(r.uint(4)); n > 0 && r.fits(n, minField) {
		rec.fields = make([]cache.Field, n)
		for i := range rec.fields {
			f := &rec.fields[i]
			f.Name = r.name("field")
			f.Version = cache.Version(r.uint(8))
			f.Value = r.take(int(r.uint(4)))
			if r.err == nil && f.Version == 0 {
				r.err = fmt.Errorf("%w: field %q has version 0", errCorrupt, f.Name)
			}
		}
	}
	switch {
	case r.err != nil:
		return rec, r.err
	case len(r.b) != 0:
		return rec, fmt.Errorf("%w: %d stray bytes", errCorrupt, len(r.b))
	case rec.version == 0:
		return rec, fmt.Errorf("%w: version 0", errCorrupt)
	case rec.expires < 0:
		return rec, fmt.Errorf("%w: negative expiry", errCorrupt)
	}
	return rec, nil
}
