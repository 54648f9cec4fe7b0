package session

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// A session is one record in the store (package cache), keyed by its reference
// (the ID's selector). Its fields:
//
//	m          metadata: created, the verifier's hash (and a rotated one's, for a
//	           grace period), the session's own lifetime, the last renewal
//	a          activity: the last use and its device (written at most once per
//	           UpdateMetadataThreshold)
//	v:<key>    a value (Session.Put)
//	b:<name>   a bag
//	f          the flash bag
//	e:<name>   an extension's field (package scope's objects)
//
// Tags are the record's tags; the record's expiry is the session's (the earlier
// of the inactivity timeout and the absolute lifetime). m and a are encoded by
// hand as msgpack arrays (no reflection on the request path, readable by any
// msgpack tool); decoders ignore elements they do not know, so later formats
// may append.
const (
	fieldMeta     = "m"
	fieldActivity = "a"
	fieldFlash    = "f"
	prefixValue   = "v:"
	prefixBag     = "b:"
	prefixExt     = "e:"
	// maxUserKey leaves room for the field prefix within cache.MaxKeyLen.
	maxUserKey = 240
)

// metadataFormat is the version of the m field's layout.
const metadataFormat = 2

// metadata is the m field.
type metadata struct {
	created time.Time
	// verifier is the SHA-256 of the ID's verifier: the only trace of the secret
	// in the store.
	verifier [sha256.Size]byte
	// timeout is the session's own inactivity timeout (remember me); 0: the
	// manager's.
	timeout time.Duration
	// renewed is when the verifier last changed (creation, renewal, rotation).
	renewed time.Time
	// previous is the hash of the verifier a rotation replaced, which still
	// opens the session until previousUntil (requests in flight); zero: none.
	previous      [sha256.Size]byte
	previousUntil time.Time
}

// activity is the a field: the last use and the device it came from.
type activity struct {
	last time.Time
	// device is the request's User-Agent, truncated to maxDevice bytes.
	device string
	// address is the client's address as Config.ClientAddress records it ("" by
	// default: not recorded).
	address string
}

// maxDevice bounds the stored User-Agent.
const maxDevice = 200

func (m *metadata) encode() []byte {
	b := make([]byte, 0, 128)
	b = append(b, mpFixArray|7, metadataFormat)
	b = appendInt64(b, m.created.UnixMilli())
	b = appendBin(b, m.verifier[:])
	b = appendInt64(b, m.timeout.Milliseconds())
	b = appendInt64(b, unixMilli(m.renewed))
	if m.previousUntil.IsZero() {
		b = append(b, mpNil)
	} else {
		b = appendBin(b, m.previous[:])
	}
	return appendInt64(b, unixMilli(m.previousUntil))
}

// unixMilli is t in Unix milliseconds, 0 for the zero time.
func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMilli is the inverse of unixMilli.
func fromMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func decodeMetadata(b []byte) (metadata, error) {
	var m metadata
	r := mpReader{b: b}
	n := r.arrayLen()
	if r.err == nil && n < 4 {
		r.fail("too few metadata fields")
	}
	if f := r.int64(); r.err == nil && f != metadataFormat {
		return m, fmt.Errorf("%w: unknown metadata format %d", ErrDecode, f)
	}
	created := r.int64()
	h := r.bin()
	timeout := r.int64()
	renewed, prevUntil := int64(0), int64(0)
	var prev []byte
	if n >= 7 {
		renewed = r.int64()
		if !r.nilNext() {
			prev = r.bin()
		}
		prevUntil = r.int64()
	}
	if r.err != nil {
		return metadata{}, r.err
	}
	if len(h) != sha256.Size {
		return metadata{}, fmt.Errorf("%w: verifier hash of %d bytes", errCorrupt, len(h))
	}
	if timeout < 0 || timeout > math.MaxInt64/int64(time.Millisecond) {
		return metadata{}, fmt.Errorf("%w: timeout of %d ms out of range", errCorrupt, timeout)
	}
	copy(m.verifier[:], h)
	m.created = time.UnixMilli(created)
	m.timeout = time.Duration(timeout) * time.Millisecond
	m.renewed = fromMilli(renewed)
	if m.renewed.IsZero() {
		m.renewed = m.created
	}
	if prev != nil {
		if len(prev) != sha256.Size {
			return metadata{}, fmt.Errorf("%w: previous verifier hash of %d bytes", errCorrupt, len(prev))
		}
		// A previous verifier without an end opens nothing: it is no previous
		// verifier (and encode writes none).
		if prevUntil != 0 {
			copy(m.previous[:], prev)
			m.previousUntil = fromMilli(prevUntil)
		}
	}
	return m, nil
}

func (a *activity) encode() []byte {
	b := make([]byte, 0, 16+len(a.device)+len(a.address))
	b = append(b, mpFixArray|3)
	b = appendInt64(b, a.last.UnixMilli())
	b = appendStr(b, a.device)
	return appendStr(b, a.address)
}

func decodeActivity(b []byte) (activity, error) {
	r := mpReader{b: b}
	n := r.arrayLen()
	if r.err == nil && n < 1 {
		r.fail("too few activity fields")
	}
	var a activity
	last := r.int64()
	if n >= 3 {
		a.device = r.str()
		a.address = r.str()
	}
	if r.err != nil {
		return activity{}, r.err
	}
	if len(a.device) > maxDevice || len(a.address) > maxDevice {
		return activity{}, fmt.Errorf("%w: device of %d bytes", errCorrupt, len(a.device))
	}
	a.last = time.UnixMilli(last)
	return a, nil
}

// appendStr appends a msgpack string.
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

// nilNext reports whether the next value is nil, and reads it if so.
func (r *mpReader) nilNext() bool {
	if r.err == nil && len(r.b) > 0 && r.b[0] == mpNil {
		r.b = r.b[1:]
		return true
	}
	return false
}

// msgpack type codes used by the record codec.
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
	mpBin8     = 0xc4
	mpBin16    = 0xc5
	mpBin32    = 0xc6
)

func appendInt64(b []byte, v int64) []byte {
	b = append(b, mpInt64)
	return binary.BigEndian.AppendUint64(b, uint64(v))
}

// mpReader reads the few msgpack forms the metadata codec needs, with bounds checks
// everywhere: corrupt bytes give an error, never a panic.
type mpReader struct {
	b    []byte
	err  error
	base error // wrapped by failures; errCorrupt when nil
}

var errCorrupt = fmt.Errorf("%w: corrupt session record", ErrDecode)

func (r *mpReader) fail(what string) {
	if r.err == nil {
		base := r.base
		if base == nil {
			base = errCorrupt
		}
		r.err = fmt.Errorf("%w: %s", base, what)
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

// appendBin appends a msgpack bin of b.
func appendBin(b, v []byte) []byte {
	switch n := len(v); {
	case n <= 0xff:
		b = append(b, mpBin8, byte(n))
	case n <= 0xffff:
		b = append(b, mpBin16, byte(n>>8), byte(n))
	default:
		b = append(b, mpBin32)
		b = binary.BigEndian.AppendUint32(b, uint32(n))
	}
	return append(b, v...)
}

// bin reads a msgpack bin (or str) without copying it.
func (r *mpReader) bin() []byte {
	c := r.byte1()
	var n int
	switch {
	case r.err != nil:
		return nil
	case c == mpBin8 || c == mpStr8:
		n = int(r.uintN(1))
	case c == mpBin16 || c == mpStr16:
		n = int(r.uintN(2))
	case c == mpBin32 || c == mpStr32:
		n = int(r.uintN(4))
	case c&0xe0 == mpFixStr:
		n = int(c & 0x1f)
	default:
		r.fail("want bytes")
		return nil
	}
	return r.take(n)
}

// str reads a msgpack string (or bin).
func (r *mpReader) str() string { return string(r.bin()) }
