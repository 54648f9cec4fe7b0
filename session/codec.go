package session

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/internal/msgpackcheck"
	"github.com/vmihailenco/msgpack/v5"
)

// ErrDecode is wrapped by every error about stored bytes that cannot be decoded:
// a value decoded into the wrong Go type, or corrupt metadata.
var ErrDecode = errors.New("session: cannot decode")

// metadata is what the metadata entry holds. It is encoded by hand as the msgpack
// array [format, storageID, created, lastActivity, tags] (times in Unix
// milliseconds): no reflection on the request path, and readable by any msgpack
// tool. Decoders ignore elements after the fifth, so later formats may append.
type metadata struct {
	storageID    string
	created      time.Time
	lastActivity time.Time
	tags         []string
}

const metadataFormat = 1

// msgpack type codes used by the metadata codec.
const (
	mpNil      = 0xc0
	mpUint8    = 0xcc
	mpUint16   = 0xcd
	mpUint32   = 0xce
	mpUint64   = 0xcf
	mpInt8     = 0xd0
	mpInt16    = 0xd1
	mpInt32    = 0xd2
	mpInt64    = 0xd3
	mpStr8     = 0xd9
	mpStr16    = 0xda
	mpStr32    = 0xdb
	mpArray16  = 0xdc
	mpArray32  = 0xdd
	mpFixArray = 0x90
	mpFixStr   = 0xa0
)

func (m *metadata) encode() []byte {
	n := 1 + 1 + 2 + len(m.storageID) + 9 + 9 + 5
	for _, t := range m.tags {
		n += 3 + len(t)
	}
	b := make([]byte, 0, n)
	b = append(b, mpFixArray|5, metadataFormat)
	b = appendStr(b, m.storageID)
	b = appendInt64(b, m.created.UnixMilli())
	b = appendInt64(b, m.lastActivity.UnixMilli())
	b = appendArrayLen(b, len(m.tags))
	for _, t := range m.tags {
		b = appendStr(b, t)
	}
	return b
}

func appendStr(b []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		b = append(b, mpFixStr|byte(n))
	case n <= 0xff:
		b = append(b, mpStr8, byte(n))
	case n <= 0xffff:
		b = append(b, mpStr16, byte(n>>8), byte(n))
	default:
		b = append(b, mpStr32)
		b = binary.BigEndian.AppendUint32(b, uint32(n))
	}
	return append(b, s...)
}

func appendInt64(b []byte, v int64) []byte {
	b = append(b, mpInt64)
	return binary.BigEndian.AppendUint64(b, uint64(v))
}

func appendArrayLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, mpFixArray|byte(n))
	case n <= 0xffff:
		return append(b, mpArray16, byte(n>>8), byte(n))
	default:
		b = append(b, mpArray32)
		return binary.BigEndian.AppendUint32(b, uint32(n))
	}
}

// mpReader reads the few msgpack forms the metadata codec needs, with bounds checks
// everywhere: corrupt bytes give an error, never a panic.
type mpReader struct {
	b   []byte
	err error
}

var errCorrupt = fmt.Errorf("%w: corrupt metadata", ErrDecode)

func (r *mpReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", errCorrupt, what)
	}
}

func (r *mpReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.fail("truncated")
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *mpReader) byte1() byte {
	v := r.take(1)
	if v == nil {
		return 0
	}
	return v[0]
}

func (r *mpReader) uintN(n int) uint64 {
	v := r.take(n)
	var u uint64
	for _, c := range v {
		u = u<<8 | uint64(c)
	}
	return u
}

func (r *mpReader) int64() int64 {
	c := r.byte1()
	switch {
	case r.err != nil:
		return 0
	case c <= 0x7f:
		return int64(c)
	case c >= 0xe0:
		return int64(int8(c))
	}
	switch c {
	case mpUint8:
		return int64(r.uintN(1))
	case mpUint16:
		return int64(r.uintN(2))
	case mpUint32:
		return int64(r.uintN(4))
	case mpUint64:
		u := r.uintN(8)
		if u > 1<<63-1 {
			r.fail("integer overflow")
		}
		return int64(u)
	case mpInt8:
		return int64(int8(r.uintN(1)))
	case mpInt16:
		return int64(int16(r.uintN(2)))
	case mpInt32:
		return int64(int32(r.uintN(4)))
	case mpInt64:
		return int64(r.uintN(8))
	}
	r.fail("want an integer")
	return 0
}

func (r *mpReader) str() string {
	c := r.byte1()
	var n int
	switch {
	case r.err != nil:
		return ""
	case c&0xe0 == mpFixStr:
		n = int(c & 0x1f)
	case c == mpStr8:
		n = int(r.uintN(1))
	case c == mpStr16:
		n = int(r.uintN(2))
	case c == mpStr32:
		n = int(r.uintN(4))
	default:
		r.fail("want a string")
		return ""
	}
	return string(r.take(n))
}

// arrayLen reads an array header (nil counts as an empty array).
func (r *mpReader) arrayLen() int {
	c := r.byte1()
	var n int
	switch {
	case r.err != nil:
		return 0
	case c == mpNil:
		return 0
	case c&0xf0 == mpFixArray:
		n = int(c & 0x0f)
	case c == mpArray16:
		n = int(r.uintN(2))
	case c == mpArray32:
		n = int(r.uintN(4))
	default:
		r.fail("want an array")
		return 0
	}
	// Every element takes at least one byte: refuse counts the input cannot hold
	// before allocating for them.
	if n > len(r.b) {
		r.fail("array longer than its input")
		return 0
	}
	return n
}

// decodeMetadata parses a metadata entry and checks what it found.
func decodeMetadata(b []byte) (metadata, error) {
	var m metadata
	r := mpReader{b: b}
	n := r.arrayLen()
	if r.err == nil && n < 5 {
		r.fail("too few fields")
	}
	if f := r.int64(); r.err == nil && f != metadataFormat {
		return m, fmt.Errorf("%w: unknown metadata format %d", ErrDecode, f)
	}
	m.storageID = r.str()
	created := r.int64()
	last := r.int64()
	if nt := r.arrayLen(); nt > 0 {
		m.tags = make([]string, 0, nt)
		for range nt {
			m.tags = append(m.tags, r.str())
		}
	}
	if r.err != nil {
		return metadata{}, r.err
	}
	if !validStorageID(m.storageID) {
		return metadata{}, fmt.Errorf("%w: bad storage ID", errCorrupt)
	}
	for _, t := range m.tags {
		if cache.ValidateKey(t) != nil {
			return metadata{}, fmt.Errorf("%w: bad tag", errCorrupt)
		}
	}
	m.created = time.UnixMilli(created)
	m.lastActivity = time.UnixMilli(last)
	return m, nil
}

// validStorageID reports whether s has the form newStorageID mints.
func validStorageID(s string) bool {
	if len(s) != 22 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if b64[s[i]] == 0 {
			return false
		}
	}
	return true
}

// encodeValue encodes a user value with msgpack and checks the payload limit.
func encodeValue(key string, v any, limit int) ([]byte, error) {
	b, err := msgpack.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("session: encoding %q: %w", key, err)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%w: %q encodes to %d bytes, limit %d", cache.ErrValueTooLarge, key, len(b), limit)
	}
	return b, nil
}

// decodeValue decodes stored bytes into dst. It never panics: whatever the bytes,
// a mismatch is an error wrapping ErrDecode. msgpackcheck refuses, before msgpack
// sees them, bytes that would make it allocate out of proportion to their length
// or recurse too deeply (hostile or corrupt store contents).
func decodeValue(key string, b []byte, dst any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w %q: %v", ErrDecode, key, p)
		}
	}()
	if dst == nil {
		return fmt.Errorf("%w %q: nil destination", ErrDecode, key)
	}
	b, err = msgpackcheck.Prepare(b, msgpackcheck.DefaultMaxDepth)
	if err != nil {
		return fmt.Errorf("%w %q: %w", ErrDecode, key, err)
	}
	if err := msgpack.Unmarshal(b, dst); err != nil {
		return fmt.Errorf("%w %q into %T: %w", ErrDecode, key, dst, err)
	}
	return nil
}
