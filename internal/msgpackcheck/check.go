// Package msgpackcheck checks msgpack bytes before they reach
// github.com/vmihailenco/msgpack/v5, so that hostile or corrupt stored bytes can
// neither make the decoder allocate out of proportion to their length nor recurse
// without bound. It holds for every importer of fxsession: it needs no patched copy
// of msgpack and no replace directive.
//
// Two behaviours of msgpack v5.4.1 make a few bytes dangerous:
//
//   - It sizes slices and maps from the count a container header declares, before
//     reading a single element: a 5-byte map32 header asks for a map of four
//     billion entries, an array32 header for a 64 GB []any.
//   - When the destination is a map (DecodeMapLen, also used by fxsession's inject
//     for structs) it skips an extension header and reads the extension's payload
//     as the map's header and entries, and then goes on reading the stream from
//     wherever the payload led it.
//
// [Check] walks one value without decoding it and refuses what would reach
// either: truncation; a container whose declared count cannot fit in the bytes
// left (every element takes at least one byte, a map entry two); a string, binary
// or extension longer than what is left; nesting deeper than maxDepth (containers
// and extension payloads both count); the reserved code 0xc1; bytes after the
// value. An extension's payload must itself be a sequence of well-formed values,
// except for the timestamp (type -1), whose payload is raw bytes: a timestamp is
// refused by Check when its payload starts with a byte msgpack would read as a
// map header or nil, because behind a map destination msgpack would go on
// reading its raw bytes as msgpack. [Prepare] accepts those timestamps and
// re-encodes them in the 12-byte form, which starts with a byte msgpack refuses as
// a map header and decodes to the same instant.
//
// Whatever Check accepts, and whatever Prepare returns, msgpack decodes into any
// destination with allocations bounded by len(b) times the size of the
// destination's elements, and with recursion bounded by maxDepth. Neither function
// allocates unless it fails (the error) or Prepare rewrites timestamps (the copy).
package msgpackcheck

import (
	"encoding/binary"
	"fmt"
)

// DefaultMaxDepth is the nesting limit used when maxDepth is zero or negative: no
// value may lie deeper than this many containers or extension payloads below the
// top-level value.
const DefaultMaxDepth = 256

// An Error says why bytes were refused and where.
type Error struct {
	Offset int    // byte offset in the input where the offending value or header starts
	Reason string // what is wrong there
}

func (e *Error) Error() string {
	return fmt.Sprintf("malformed msgpack at byte %d: %s", e.Offset, e.Reason)
}

// Check verifies that b is exactly one msgpack value that msgpack v5 can decode
// into any destination with allocations in proportion to len(b) and recursion
// bounded by maxDepth (DefaultMaxDepth when maxDepth <= 0). The error, an *Error,
// names the byte offset of the problem. Check never allocates when it succeeds.
//
// Check refuses timestamps that only [Prepare] can make safe; use Prepare on bytes
// about to be decoded.
func Check(b []byte, maxDepth int) error {
	w := walker{b: b, maxDepth: depth(maxDepth), mode: modeCheck}
	return w.run()
}

// Prepare is Check for bytes about to be decoded. Where Check refuses a timestamp
// whose 4- or 8-byte payload starts with a byte msgpack would read as a map
// header or nil, Prepare returns a copy of b with each such timestamp re-encoded
// in the 12-byte form (same instant, same decoded time.Time). Otherwise it returns
// b itself and allocates nothing. A timestamp of that kind inside another
// extension's payload is refused, since rewriting it would change the payload's
// length.
func Prepare(b []byte, maxDepth int) ([]byte, error) {
	w := walker{b: b, maxDepth: depth(maxDepth), mode: modeCount}
	if err := w.run(); err != nil {
		return nil, err
	}
	if w.fixes == 0 {
		return b, nil
	}
	r := walker{b: b, maxDepth: w.maxDepth, mode: modeRewrite, out: make([]byte, 0, len(b)+w.grow)}
	if err := r.run(); err != nil { // cannot happen: the same walk just succeeded
		return nil, err
	}
	return append(r.out, b[r.copied:]...), nil
}

func depth(maxDepth int) int {
	if maxDepth <= 0 {
		return DefaultMaxDepth
	}
	return maxDepth
}

type mode uint8

const (
	modeCheck   mode = iota // refuse timestamps that need rewriting
	modeCount               // count them and the bytes their rewriting adds
	modeRewrite             // write b with them rewritten to out
)

// timestampLen is the length of a rewritten timestamp: ext8 header (code, length,
// type) and the 12-byte payload.
const timestampLen = 3 + 12

type walker struct {
	b        []byte
	maxDepth int
	mode     mode
	fixes    int    // timestamps to rewrite (modeCount)
	grow     int    // bytes their rewriting adds (modeCount)
	out      []byte // modeRewrite: b[:copied] rewritten
	copied   int
}

func (w *walker) run() error {
	end, err := w.value(0, len(w.b), 0, false)
	if err != nil {
		return err
	}
	if end != len(w.b) {
		return fail(end, "%d bytes after the value", len(w.b)-end)
	}
	return nil
}

func fail(off int, format string, args ...any) error {
	return &Error{Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// value walks the value starting at off, which must end by end, and returns the
// offset after it. The value lies depth levels below the top-level value; inExt
// says whether it is inside an extension's payload.
func (w *walker) value(off, end, depth int, inExt bool) (int, error) {
	if off >= end {
		if inExt {
			return off, fail(off, "extension payload ends where a value should start")
		}
		return off, fail(off, "input ends where a value should start")
	}
	c := w.b[off]
	switch {
	case c <= 0x7f || c >= 0xe0: // positive and negative fixint
		return off + 1, nil
	case c <= 0x8f:
		return w.items(off, off+1, end, 2*uint64(c&0x0f), depth, inExt, "fixmap")
	case c <= 0x9f:
		return w.items(off, off+1, end, uint64(c&0x0f), depth, inExt, "fixarray")
	case c <= 0xbf:
		return w.bytes(off, off+1, end, uint64(c&0x1f), "fixstr")
	}
	switch c {
	case 0xc0, 0xc2, 0xc3: // nil, false, true
		return off + 1, nil
	case 0xc1:
		return off, fail(off, "reserved code 0xc1")
	case 0xc4, 0xc5, 0xc6: // bin 8, 16, 32
		n, p, err := w.length(off, end, 1<<(c-0xc4))
		if err != nil {
			return off, err
		}
		return w.bytes(off, p, end, n, "bin")
	case 0xd9, 0xda, 0xdb: // str 8, 16, 32
		n, p, err := w.length(off, end, 1<<(c-0xd9))
		if err != nil {
			return off, err
		}
		return w.bytes(off, p, end, n, "str")
	case 0xc7, 0xc8, 0xc9: // ext 8, 16, 32
		n, p, err := w.length(off, end, 1<<(c-0xc7))
		if err != nil {
			return off, err
		}
		return w.ext(off, p, end, n, depth, inExt)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16
		return w.ext(off, off+1, end, 1<<(c-0xd4), depth, inExt)
	case 0xca: // float32
		return w.fixed(off, end, 4)
	case 0xcb: // float64
		return w.fixed(off, end, 8)
	case 0xcc, 0xcd, 0xce, 0xcf: // uint 8, 16, 32, 64
		return w.fixed(off, end, 1<<(c-0xcc))
	case 0xd0, 0xd1, 0xd2, 0xd3: // int 8, 16, 32, 64
		return w.fixed(off, end, 1<<(c-0xd0))
	case 0xdc, 0xdd: // array 16, 32
		n, p, err := w.length(off, end, 2<<(c-0xdc))
		if err != nil {
			return off, err
		}
		return w.items(off, p, end, n, depth, inExt, "array")
	default: // 0xde, 0xdf: map 16, 32
		n, p, err := w.length(off, end, 2<<(c-0xde))
		if err != nil {
			return off, err
		}
		return w.items(off, p, end, 2*n, depth, inExt, "map")
	}
}

// length reads the size-byte big-endian length that follows the code at off and
// returns it with the offset after it.
func (w *walker) length(off, end, size int) (uint64, int, error) {
	p := off + 1
	if end-p < size {
		return 0, off, fail(off, "header of code 0x%02x cut short", w.b[off])
	}
	h := w.b[p : p+size]
	switch size {
	case 1:
		return uint64(h[0]), p + 1, nil
	case 2:
		return uint64(binary.BigEndian.Uint16(h)), p + 2, nil
	default:
		return uint64(binary.BigEndian.Uint32(h)), p + 4, nil
	}
}

// fixed skips a code followed by n bytes of data.
func (w *walker) fixed(off, end, n int) (int, error) {
	if end-off-1 < n {
		return off, fail(off, "code 0x%02x needs %d bytes, %d left", w.b[off], n, end-off-1)
	}
	return off + 1 + n, nil
}

// bytes skips the n bytes of a string or binary whose header starts at off and
// ends at p.
func (w *walker) bytes(off, p, end int, n uint64, kind string) (int, error) {
	if n > uint64(end-p) {
		return off, fail(off, "%s of %d bytes, %d left", kind, n, end-p)
	}
	return p + int(n), nil
}

// items walks the n values of a container whose header starts at off and ends at
// p (a map's n counts keys and values).
func (w *walker) items(off, p, end int, n uint64, depth int, inExt bool, kind string) (int, error) {
	if n > uint64(end-p) {
		return off, fail(off, "%s declares %d values, only %d bytes left", kind, n, end-p)
	}
	if n == 0 {
		return p, nil
	}
	if depth >= w.maxDepth {
		return off, fail(off, "nested deeper than %d levels", w.maxDepth)
	}
	var err error
	for range n {
		if p < end { // fast paths for the commonest elements: fixint and fixstr
			c := w.b[p]
			if c <= 0x7f || c >= 0xe0 {
				p++
				continue
			}
			if c&0xe0 == 0xa0 && int(c&0x1f) < end-p {
				p += 1 + int(c&0x1f)
				continue
			}
		}
		if p, err = w.value(p, end, depth+1, inExt); err != nil {
			return off, err
		}
	}
	return p, nil
}

// mapLike reports whether msgpack's DecodeMapLen accepts c as a map header (or
// nil) after skipping an extension header: what follows is then read as msgpack.
func mapLike(c byte) bool {
	return c&0xf0 == 0x80 || c == 0xc0 || c == 0xde || c == 0xdf
}

// ext walks an extension whose header starts at off, with n bytes of payload after
// the type byte at p.
func (w *walker) ext(off, p, end int, n uint64, depth int, inExt bool) (int, error) {
	if n >= uint64(end-p) { // the type byte and n bytes
		return off, fail(off, "extension of %d bytes, %d left", n, max(end-p-1, 0))
	}
	typ, pay := w.b[p], p+1
	payEnd := pay + int(n)
	if typ == 0xff { // timestamp: raw bytes, harmless unless read as a map header
		if n == 0 || !mapLike(w.b[pay]) {
			return payEnd, nil
		}
		return payEnd, w.timestamp(off, pay, payEnd, inExt)
	}
	// Any other type: behind a map destination msgpack reads the payload as
	// msgpack, so it must be well formed, one level down.
	if n == 0 {
		return payEnd, nil
	}
	if depth >= w.maxDepth {
		return off, fail(off, "nested deeper than %d levels", w.maxDepth)
	}
	for q := pay; q < payEnd; {
		var err error
		if q, err = w.value(q, payEnd, depth+1, true); err != nil {
			return off, err
		}
	}
	return payEnd, nil
}

// timestamp handles a timestamp extension (header at off, payload pay:payEnd)
// whose payload starts with a map header or nil.
func (w *walker) timestamp(off, pay, payEnd int, inExt bool) error {
	n := payEnd - pay
	switch {
	case n != 4 && n != 8:
		return fail(off, "timestamp of %d bytes starts with 0x%02x, which msgpack reads as a map header", n, w.b[pay])
	case inExt:
		return fail(off, "timestamp inside an extension starts with 0x%02x, which msgpack reads as a map header", w.b[pay])
	}
	switch w.mode {
	case modeCheck:
		return fail(off, "timestamp starts with 0x%02x, which msgpack reads as a map header (Prepare rewrites it)", w.b[pay])
	case modeCount:
		w.fixes++
		w.grow += timestampLen - (payEnd - off)
	case modeRewrite:
		var sec, nsec uint64
		if n == 4 {
			sec = uint64(binary.BigEndian.Uint32(w.b[pay:]))
		} else {
			v := binary.BigEndian.Uint64(w.b[pay:])
			sec, nsec = v&(1<<34-1), v>>34
		}
		w.out = append(w.out, w.b[w.copied:off]...)
		w.out = append(w.out, 0xc7, 12, 0xff)
		w.out = binary.BigEndian.AppendUint32(w.out, uint32(nsec))
		w.out = binary.BigEndian.AppendUint64(w.out, sec)
		w.copied = payEnd
	}
	return nil
}
