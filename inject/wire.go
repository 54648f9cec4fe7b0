package inject

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
	"unsafe"
)

// This file holds the msgpack wire format as the compiled codecs (codec.go)
// write and read it: the same bytes msgpack v5 writes with compact integers,
// and the codes msgpack v5 accepts for each Go kind. Reading checks its bounds
// as it goes: every declared length against the bytes left, nesting against the
// registry's depth limit.

// msgpack codes.
const (
	cNil      = 0xc0
	cFalse    = 0xc2
	cTrue     = 0xc3
	cBin8     = 0xc4
	cBin16    = 0xc5
	cBin32    = 0xc6
	cExt8     = 0xc7
	cExt16    = 0xc8
	cExt32    = 0xc9
	cFloat    = 0xca
	cDouble   = 0xcb
	cUint8    = 0xcc
	cUint16   = 0xcd
	cUint32   = 0xce
	cUint64   = 0xcf
	cInt8     = 0xd0
	cInt16    = 0xd1
	cInt32    = 0xd2
	cInt64    = 0xd3
	cFixExt1  = 0xd4
	cFixExt4  = 0xd6
	cFixExt8  = 0xd7
	cFixExt16 = 0xd8
	cStr8     = 0xd9
	cStr16    = 0xda
	cStr32    = 0xdb
	cArray16  = 0xdc
	cArray32  = 0xdd
	cMap16    = 0xde
	cMap32    = 0xdf
)

// ---- writing (as msgpack v5 with UseCompactInts) ----

func appendNil(b []byte) []byte { return append(b, cNil) }

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, cTrue)
	}
	return append(b, cFalse)
}

func appendUint(b []byte, n uint64) []byte {
	switch {
	case n <= math.MaxInt8:
		return append(b, byte(n))
	case n <= math.MaxUint8:
		return append(b, cUint8, byte(n))
	case n <= math.MaxUint16:
		return append(b, cUint16, byte(n>>8), byte(n))
	case n <= math.MaxUint32:
		return append(b, cUint32, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint64(append(b, cUint64), n)
}

func appendInt(b []byte, n int64) []byte {
	switch {
	case n >= 0:
		return appendUint(b, uint64(n))
	case n >= -32:
		return append(b, byte(n))
	case n >= math.MinInt8:
		return append(b, cInt8, byte(n))
	case n >= math.MinInt16:
		return append(b, cInt16, byte(n>>8), byte(n))
	case n >= math.MinInt32:
		return append(b, cInt32, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint64(append(b, cInt64), uint64(n))
}

func appendFloat32(b []byte, f float32) []byte {
	return binary.BigEndian.AppendUint32(append(b, cFloat), math.Float32bits(f))
}

func appendFloat64(b []byte, f float64) []byte {
	return binary.BigEndian.AppendUint64(append(b, cDouble), math.Float64bits(f))
}

func appendStrLen(b []byte, n int) []byte {
	switch {
	case n < 32:
		return append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		return append(b, cStr8, byte(n))
	case n <= math.MaxUint16:
		return append(b, cStr16, byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint32(append(b, cStr32), uint32(n))
}

func appendString(b []byte, s string) []byte { return append(appendStrLen(b, len(s)), s...) }

func appendArrayLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return append(b, cArray16, byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint32(append(b, cArray32), uint32(n))
}

func appendMapLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x80|byte(n))
	case n <= math.MaxUint16:
		return append(b, cMap16, byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint32(append(b, cMap32), uint32(n))
}

// appendTime writes t as msgpack's timestamp extension (type -1), in the
// shortest of its 4-, 8- and 12-byte forms, as msgpack v5 does.
func appendTime(b []byte, t time.Time) []byte {
	secs := uint64(t.Unix())
	if secs>>34 == 0 {
		data := uint64(t.Nanosecond())<<34 | secs
		if data&0xffffffff00000000 == 0 {
			return binary.BigEndian.AppendUint32(append(b, cFixExt4, 0xff), uint32(data))
		}
		return binary.BigEndian.AppendUint64(append(b, cFixExt8, 0xff), data)
	}
	b = append(b, cExt8, 12, 0xff)
	b = binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
	return binary.BigEndian.AppendUint64(b, secs)
}

// ---- reading ----

// wireError is malformed or unfitting input at a byte offset.
type wireError struct {
	off int
	msg string
}

func (e *wireError) Error() string { return fmt.Sprintf("at byte %d: %s", e.off, e.msg) }

func (d *decState) fail(off int, format string, args ...any) error {
	return &wireError{off: off, msg: fmt.Sprintf(format, args...)}
}

func (d *decState) left() int { return len(d.b) - d.off }

func (d *decState) code() (byte, error) {
	if d.off >= len(d.b) {
		return 0, d.fail(d.off, "input ends where a value should start")
	}
	c := d.b[d.off]
	d.off++
	return c, nil
}

func (d *decState) peek() (byte, bool) {
	if d.off >= len(d.b) {
		return 0, false
	}
	return d.b[d.off], true
}

// take returns the next n bytes (without copying).
func (d *decState) take(n int) ([]byte, error) {
	if n < 0 || n > len(d.b)-d.off {
		return nil, d.fail(d.off, "%d bytes needed, %d left", n, len(d.b)-d.off)
	}
	p := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return p, nil
}

// size reads the size-byte big-endian length after a code.
func (d *decState) size(size int) (int, error) {
	p, err := d.take(size)
	if err != nil {
		return 0, err
	}
	switch size {
	case 1:
		return int(p[0]), nil
	case 2:
		return int(binary.BigEndian.Uint16(p)), nil
	}
	return int(binary.BigEndian.Uint32(p)), nil
}

// int64 reads an integer as msgpack's DecodeInt64: nil is 0, unsigned values
// above MaxInt64 wrap.
func (d *decState) int64() (int64, error) {
	c, err := d.code()
	if err != nil {
		return 0, err
	}
	return d.intCode(c)
}

func (d *decState) intCode(c byte) (int64, error) {
	if c <= 0x7f || c >= 0xe0 {
		return int64(int8(c)), nil
	}
	switch c {
	case cNil:
		return 0, nil
	case cUint8, cInt8:
		p, err := d.take(1)
		if err != nil {
			return 0, err
		}
		if c == cInt8 {
			return int64(int8(p[0])), nil
		}
		return int64(p[0]), nil
	case cUint16, cInt16:
		p, err := d.take(2)
		if err != nil {
			return 0, err
		}
		n := binary.BigEndian.Uint16(p)
		if c == cInt16 {
			return int64(int16(n)), nil
		}
		return int64(n), nil
	case cUint32, cInt32:
		p, err := d.take(4)
		if err != nil {
			return 0, err
		}
		n := binary.BigEndian.Uint32(p)
		if c == cInt32 {
			return int64(int32(n)), nil
		}
		return int64(n), nil
	case cUint64, cInt64:
		p, err := d.take(8)
		if err != nil {
			return 0, err
		}
		return int64(binary.BigEndian.Uint64(p)), nil
	}
	return 0, d.fail(d.off-1, "msgpack code 0x%02x where an integer should be", c)
}

// uint64 reads an integer as msgpack's DecodeUint64 (negative values wrap).
func (d *decState) uint64() (uint64, error) {
	c, err := d.code()
	if err != nil {
		return 0, err
	}
	if c <= 0x7f || c >= 0xe0 {
		return uint64(int8(c)), nil
	}
	switch c {
	case cInt8:
		p, err := d.take(1)
		if err != nil {
			return 0, err
		}
		return uint64(int8(p[0])), nil
	case cInt16:
		p, err := d.take(2)
		if err != nil {
			return 0, err
		}
		return uint64(int16(binary.BigEndian.Uint16(p))), nil
	case cInt32:
		p, err := d.take(4)
		if err != nil {
			return 0, err
		}
		return uint64(int32(binary.BigEndian.Uint32(p))), nil
	}
	n, err := d.intCode(c)
	return uint64(n), err
}

// float64 reads as msgpack's DecodeFloat64: float32, float64 or an integer.
func (d *decState) float64() (float64, error) {
	c, err := d.code()
	if err != nil {
		return 0, err
	}
	switch c {
	case cFloat:
		p, err := d.take(4)
		if err != nil {
			return 0, err
		}
		return float64(math.Float32frombits(binary.BigEndian.Uint32(p))), nil
	case cDouble:
		p, err := d.take(8)
		if err != nil {
			return 0, err
		}
		return math.Float64frombits(binary.BigEndian.Uint64(p)), nil
	}
	n, err := d.intCode(c)
	return float64(n), err
}

// float32 reads as msgpack's DecodeFloat32: float32 or an integer (a float64
// is refused, as msgpack does).
func (d *decState) float32() (float32, error) {
	c, err := d.code()
	if err != nil {
		return 0, err
	}
	if c == cFloat {
		p, err := d.take(4)
		if err != nil {
			return 0, err
		}
		return math.Float32frombits(binary.BigEndian.Uint32(p)), nil
	}
	n, err := d.intCode(c)
	return float32(n), err
}

func (d *decState) bool() (bool, error) {
	c, err := d.code()
	if err != nil {
		return false, err
	}
	switch c {
	case cNil, cFalse:
		return false, nil
	case cTrue:
		return true, nil
	}
	return false, d.fail(d.off-1, "msgpack code 0x%02x where a bool should be", c)
}

// bytesLen reads the header of a string or binary (msgpack's bytesLen): -1 for
// nil. The length is checked against the bytes left.
func (d *decState) bytesLen() (int, error) {
	at := d.off
	c, err := d.code()
	if err != nil {
		return 0, err
	}
	var n int
	switch {
	case c&0xe0 == 0xa0:
		n = int(c & 0x1f)
	case c == cNil:
		return -1, nil
	case c == cStr8 || c == cBin8:
		n, err = d.size(1)
	case c == cStr16 || c == cBin16:
		n, err = d.size(2)
	case c == cStr32 || c == cBin32:
		n, err = d.size(4)
	default:
		return 0, d.fail(at, "msgpack code 0x%02x where a string should be", c)
	}
	if err != nil {
		return 0, err
	}
	if n > d.left() {
		return 0, d.fail(at, "string of %d bytes, %d left", n, d.left())
	}
	return n, nil
}

// rawString reads a string (or binary, or nil as "") without copying it.
func (d *decState) rawString() ([]byte, error) {
	n, err := d.bytesLen()
	if err != nil || n <= 0 {
		return nil, err
	}
	return d.take(n)
}

// arenaChunk is the largest block strings are copied into: decoded strings
// share blocks instead of allocating one by one, and a block stays alive while
// one of its strings does.
const arenaChunk = 4096

// string reads a string. Short strings are copied into a shared block.
func (d *decState) string() (string, error) {
	if d.off < len(d.b) {
		if c := d.b[d.off]; c&0xe0 == 0xa0 && int(c&0x1f) < len(d.b)-d.off { // fixstr
			start := d.off + 1
			d.off = start + int(c&0x1f)
			if d.off == start {
				return "", nil
			}
			return d.makeString(d.b[start:d.off]), nil
		}
	}
	b, err := d.rawString()
	if err != nil || len(b) == 0 {
		return "", err
	}
	return d.makeString(b), nil
}

func (d *decState) makeString(b []byte) string {
	n := len(b)
	if n > arenaChunk/16 {
		return string(b)
	}
	if cap(d.arena)-len(d.arena) < n {
		// Bounded by what is left of the input, so that the blocks of one
		// decode add up to about its length.
		d.arena = make([]byte, 0, min(d.left()+n, arenaChunk))
	}
	start := len(d.arena)
	d.arena = append(d.arena, b...)
	return unsafe.String(&d.arena[start], n)
}

// arrayLen reads an array header (msgpack's arrayLen): -1 for nil. Every
// element takes a byte at least, so a count beyond the bytes left is refused.
func (d *decState) arrayLen() (int, error) {
	at := d.off
	c, err := d.code()
	if err != nil {
		return 0, err
	}
	n, err := d.arrayLenCode(at, c)
	if err != nil {
		return 0, err
	}
	return n, nil
}

func (d *decState) arrayLenCode(at int, c byte) (int, error) {
	var n int
	var err error
	switch {
	case c&0xf0 == 0x90:
		n = int(c & 0x0f)
	case c == cNil:
		return -1, nil
	case c == cArray16:
		n, err = d.size(2)
	case c == cArray32:
		n, err = d.size(4)
	default:
		return 0, d.fail(at, "msgpack code 0x%02x where an array should be", c)
	}
	if err != nil {
		return 0, err
	}
	if n > d.left() {
		return 0, d.fail(at, "array declares %d values, only %d bytes left", n, d.left())
	}
	return n, nil
}

// mapLenCode reads the rest of a map header whose code c was at at: -1 for nil,
// ok false when c is not a map header.
func (d *decState) mapLenCode(at int, c byte) (n int, ok bool, err error) {
	switch {
	case c&0xf0 == 0x80:
		n = int(c & 0x0f)
	case c == cNil:
		return -1, true, nil
	case c == cMap16:
		n, err = d.size(2)
	case c == cMap32:
		n, err = d.size(4)
	default:
		return 0, false, nil
	}
	if err != nil {
		return 0, true, err
	}
	if uint64(n)*2 > uint64(d.left()) {
		return 0, true, d.fail(at, "map declares %d values, only %d bytes left", 2*uint64(n), d.left())
	}
	return n, true, nil
}

// enter accounts for a container of n values at the current depth.
func (d *decState) enter(at, n int) error {
	if n > 0 && d.depth >= d.maxDepth {
		return d.fail(at, "nested deeper than %d levels", d.maxDepth)
	}
	d.depth++
	return nil
}

// extHeader reads an extension header whose code c was at at: its payload
// length (checked against the bytes left) and type. ok is false when c is not
// an extension code.
func (d *decState) extHeader(at int, c byte) (n int, typ int8, ok bool, err error) {
	switch c {
	case cFixExt1, cFixExt1 + 1, cFixExt4, cFixExt8, cFixExt16:
		n = 1 << (c - cFixExt1)
	case cExt8:
		n, err = d.size(1)
	case cExt16:
		n, err = d.size(2)
	case cExt32:
		n, err = d.size(4)
	default:
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, true, err
	}
	if n >= d.left() { // the type byte and n bytes
		return 0, 0, true, d.fail(at, "extension of %d bytes, %d left", n, max(d.left()-1, 0))
	}
	typ = int8(d.b[d.off])
	d.off++
	return n, typ, true, nil
}

// time reads a time.Time as msgpack decodes a time.Time field: nil is the zero
// time, otherwise a timestamp extension of 4, 8 or 12 bytes (as the local time
// of that instant; the zero instant as UTC).
func (d *decState) time() (time.Time, error) {
	at := d.off
	c, err := d.code()
	if err != nil {
		return time.Time{}, err
	}
	if c == cNil {
		return time.Time{}, nil
	}
	n, typ, ok, err := d.extHeader(at, c)
	switch {
	case err != nil:
		return time.Time{}, err
	case !ok:
		return time.Time{}, d.fail(at, "msgpack code 0x%02x where a timestamp should be", c)
	case typ != -1:
		return time.Time{}, d.fail(at, "extension type %d where a timestamp (-1) should be", typ)
	}
	p, err := d.take(n)
	if err != nil {
		return time.Time{}, err
	}
	if n == 12 && mapLike(p[0]) {
		// msgpack reads such a payload as a map header and internal/msgpackcheck
		// refuses it (it can rewrite only 4- and 8-byte ones): refuse it alike, so
		// that a stored object decodes the same whichever decoder reads it.
		return time.Time{}, d.fail(at, "timestamp of %d bytes starts with 0x%02x, which msgpack reads as a map header", n, p[0])
	}
	var t time.Time
	switch n {
	case 4:
		t = time.Unix(int64(binary.BigEndian.Uint32(p)), 0)
	case 8:
		v := binary.BigEndian.Uint64(p)
		t = time.Unix(int64(v&0x00000003ffffffff), int64(v>>34))
	case 12:
		t = time.Unix(int64(binary.BigEndian.Uint64(p[4:])), int64(binary.BigEndian.Uint32(p)))
	default:
		return time.Time{}, d.fail(at, "timestamp of %d bytes", n)
	}
	if t.IsZero() {
		t = t.UTC()
	}
	return t, nil
}

// ---- skipping ----

// skip moves past one value, checking it as internal/msgpackcheck.Prepare
// does (so that whatever skip accepts, Prepare accepts too): well formed,
// every length within the input, nesting within the depth limit (extension
// payloads count as a level and must be well formed msgpack themselves, except
// timestamps), no reserved code.
func (d *decState) skip() error {
	end, err := d.skipValue(d.off, len(d.b), d.depth, false)
	if err != nil {
		return err
	}
	d.off = end
	return nil
}

func (d *decState) skipValue(off, end, depth int, inExt bool) (int, error) {
	if off >= end {
		if inExt {
			return off, d.fail(off, "extension payload ends where a value should start")
		}
		return off, d.fail(off, "input ends where a value should start")
	}
	b := d.b
	c := b[off]
	switch {
	case c <= 0x7f || c >= 0xe0:
		return off + 1, nil
	case c <= 0x8f:
		return d.skipItems(off, off+1, end, 2*uint64(c&0x0f), depth, inExt)
	case c <= 0x9f:
		return d.skipItems(off, off+1, end, uint64(c&0x0f), depth, inExt)
	case c <= 0xbf:
		return d.skipBytes(off, off+1, end, uint64(c&0x1f))
	}
	switch c {
	case cNil, cFalse, cTrue:
		return off + 1, nil
	case 0xc1:
		return off, d.fail(off, "reserved code 0xc1")
	case cBin8, cBin16, cBin32:
		n, p, err := d.skipLen(off, end, 1<<(c-cBin8))
		if err != nil {
			return off, err
		}
		return d.skipBytes(off, p, end, n)
	case cStr8, cStr16, cStr32:
		n, p, err := d.skipLen(off, end, 1<<(c-cStr8))
		if err != nil {
			return off, err
		}
		return d.skipBytes(off, p, end, n)
	case cExt8, cExt16, cExt32:
		n, p, err := d.skipLen(off, end, 1<<(c-cExt8))
		if err != nil {
			return off, err
		}
		return d.skipExt(off, p, end, n, depth, inExt)
	case cFixExt1, cFixExt1 + 1, cFixExt4, cFixExt8, cFixExt16:
		return d.skipExt(off, off+1, end, 1<<(c-cFixExt1), depth, inExt)
	case cFloat:
		return d.skipFixed(off, end, 4)
	case cDouble:
		return d.skipFixed(off, end, 8)
	case cUint8, cUint16, cUint32, cUint64:
		return d.skipFixed(off, end, 1<<(c-cUint8))
	case cInt8, cInt16, cInt32, cInt64:
		return d.skipFixed(off, end, 1<<(c-cInt8))
	case cArray16, cArray32:
		n, p, err := d.skipLen(off, end, 2<<(c-cArray16))
		if err != nil {
			return off, err
		}
		return d.skipItems(off, p, end, n, depth, inExt)
	default: // map16, map32
		n, p, err := d.skipLen(off, end, 2<<(c-cMap16))
		if err != nil {
			return off, err
		}
		return d.skipItems(off, p, end, 2*n, depth, inExt)
	}
}

func (d *decState) skipLen(off, end, size int) (uint64, int, error) {
	p := off + 1
	if end-p < size {
		return 0, off, d.fail(off, "header of code 0x%02x cut short", d.b[off])
	}
	h := d.b[p : p+size]
	switch size {
	case 1:
		return uint64(h[0]), p + 1, nil
	case 2:
		return uint64(binary.BigEndian.Uint16(h)), p + 2, nil
	}
	return uint64(binary.BigEndian.Uint32(h)), p + 4, nil
}

func (d *decState) skipFixed(off, end, n int) (int, error) {
	if end-off-1 < n {
		return off, d.fail(off, "code 0x%02x needs %d bytes, %d left", d.b[off], n, end-off-1)
	}
	return off + 1 + n, nil
}

func (d *decState) skipBytes(off, p, end int, n uint64) (int, error) {
	if n > uint64(end-p) {
		return off, d.fail(off, "string of %d bytes, %d left", n, end-p)
	}
	return p + int(n), nil
}

func (d *decState) skipItems(off, p, end int, n uint64, depth int, inExt bool) (int, error) {
	if n > uint64(end-p) {
		return off, d.fail(off, "container declares %d values, only %d bytes left", n, end-p)
	}
	if n == 0 {
		return p, nil
	}
	if depth >= d.maxDepth {
		return off, d.fail(off, "nested deeper than %d levels", d.maxDepth)
	}
	var err error
	for range n {
		if p < end {
			c := d.b[p]
			if c <= 0x7f || c >= 0xe0 {
				p++
				continue
			}
			if c&0xe0 == 0xa0 && int(c&0x1f) < end-p {
				p += 1 + int(c&0x1f)
				continue
			}
		}
		if p, err = d.skipValue(p, end, depth+1, inExt); err != nil {
			return off, err
		}
	}
	return p, nil
}

// mapLike reports whether msgpack reads c as a map header (or nil) after an
// extension header.
func mapLike(c byte) bool { return c&0xf0 == 0x80 || c == cNil || c == cMap16 || c == cMap32 }

func (d *decState) skipExt(off, p, end int, n uint64, depth int, inExt bool) (int, error) {
	if n >= uint64(end-p) {
		return off, d.fail(off, "extension of %d bytes, %d left", n, max(end-p-1, 0))
	}
	typ, pay := d.b[p], p+1
	payEnd := pay + int(n)
	if typ == 0xff { // timestamp: raw bytes
		if n == 0 || !mapLike(d.b[pay]) {
			return payEnd, nil
		}
		// msgpackcheck.Prepare rewrites a 4- or 8-byte one outside extensions;
		// it refuses the others.
		if (n != 4 && n != 8) || inExt {
			return off, d.fail(off, "timestamp of %d bytes starts with 0x%02x, which msgpack reads as a map header", n, d.b[pay])
		}
		return payEnd, nil
	}
	return payEnd, d.checkPayload(off, pay, payEnd, depth)
}

// checkPayload checks that an extension payload (at depth) is a sequence of
// well formed values, one level down.
func (d *decState) checkPayload(off, pay, payEnd, depth int) error {
	if pay == payEnd {
		return nil
	}
	if depth >= d.maxDepth {
		return d.fail(off, "nested deeper than %d levels", d.maxDepth)
	}
	for q := pay; q < payEnd; {
		var err error
		if q, err = d.skipValue(q, payEnd, depth+1, true); err != nil {
			return err
		}
	}
	return nil
}
