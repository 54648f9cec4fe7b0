package session

import (
	"errors"
	"fmt"

	"github.com/fxsession/fxsession/cache"
	"github.com/vmihailenco/msgpack/v5"
)

// ErrDecode is wrapped by every error about stored bytes that cannot be decoded:
// a value decoded into the wrong Go type, or a corrupt session record.
var ErrDecode = errors.New("session: cannot decode")

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
// a mismatch is an error wrapping ErrDecode.
func decodeValue(key string, b []byte, dst any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w %q: %v", ErrDecode, key, p)
		}
	}()
	if dst == nil {
		return fmt.Errorf("%w %q: nil destination", ErrDecode, key)
	}
	if err := checkMsgpack(b); err != nil {
		return fmt.Errorf("%w %q: %w", ErrDecode, key, err)
	}
	if err := msgpack.Unmarshal(b, dst); err != nil {
		return fmt.Errorf("%w %q into %T: %w", ErrDecode, key, dst, err)
	}
	return nil
}

// maxNesting bounds how deeply stored values may nest arrays and maps.
const maxNesting = 256

// checkMsgpack walks one msgpack value without decoding it and refuses what the
// msgpack library would turn into a huge allocation or a deep recursion: a
// container declaring more elements than its input has bytes (a 5-byte map32
// header would otherwise allocate a map for 4 billion entries), nesting deeper
// than maxNesting, truncation, and the reserved code 0xc1.
func checkMsgpack(b []byte) error { return checkMsgpackDepth(b, 0) }

// checkMsgpackDepth is checkMsgpack for a value found depth levels down (inside
// extension payloads).
func checkMsgpackDepth(b []byte, depth int) error {
	r := mpReader{b: b, base: errCorruptValue}
	// stack holds, per open container, how many values it still expects.
	var stackBuf [16]int
	stack := append(stackBuf[:0], 1)
	for len(stack) > 0 {
		if stack[len(stack)-1] == 0 {
			stack = stack[:len(stack)-1]
			continue
		}
		stack[len(stack)-1]--
		c := r.byte1()
		if r.err != nil {
			return r.err
		}
		n, skip, ext := 0, 0, -1 // elements opened, bytes skipped, extension payload length
		switch {
		case c <= 0x7f || c >= 0xe0, c == mpNil, c == 0xc2, c == 0xc3:
		case c&0xf0 == 0x80:
			n = 2 * int(c&0x0f)
		case c&0xf0 == mpFixArray:
			n = int(c & 0x0f)
		case c&0xe0 == mpFixStr:
			skip = int(c & 0x1f)
		case c == 0xc4, c == mpStr8:
			skip = int(r.uintN(1))
		case c == 0xc5, c == mpStr16:
			skip = int(r.uintN(2))
		case c == 0xc6, c == mpStr32:
			skip = int(r.uintN(4))
		case c == 0xc7:
			ext = int(r.uintN(1))
		case c == 0xc8:
			ext = int(r.uintN(2))
		case c == 0xc9:
			ext = int(r.uintN(4))
		case c == 0xca:
			skip = 4
		case c == 0xcb:
			skip = 8
		case c >= mpUint8 && c <= mpUint64:
			skip = 1 << (c - mpUint8)
		case c >= mpInt8 && c <= mpInt64:
			skip = 1 << (c - mpInt8)
		case c >= 0xd4 && c <= 0xd8: // fixext 1, 2, 4, 8, 16
			ext = 1 << (c - 0xd4)
		case c == mpArray16:
			n = int(r.uintN(2))
		case c == mpArray32:
			n = int(r.uintN(4))
		case c == 0xde:
			n = 2 * int(r.uintN(2))
		case c == 0xdf:
			n = 2 * int(r.uintN(4))
		default:
			r.fail("reserved msgpack code 0xc1")
		}
		r.take(skip)
		if r.err != nil {
			return r.err
		}
		if ext >= 0 {
			// msgpack decodes an extension's payload as msgpack when the
			// destination is a map, a slice or a struct, so check it like one;
			// only the timestamp extension (type -1) holds raw bytes.
			typ := r.byte1()
			payload := r.take(ext)
			if r.err != nil {
				return r.err
			}
			if typ != 0xff {
				if depth >= maxNesting {
					return fmt.Errorf("%w: extensions nested deeper than %d", errCorruptValue, maxNesting)
				}
				if len(payload) > 0 {
					if err := checkMsgpackDepth(payload, depth+1); err != nil {
						return err
					}
				}
			}
		}
		if n > 0 {
			if n > len(r.b) {
				return fmt.Errorf("%w: container of %d elements in %d bytes", errCorruptValue, n, len(r.b))
			}
			if len(stack) >= maxNesting {
				return fmt.Errorf("%w: nested deeper than %d", errCorruptValue, maxNesting)
			}
			stack = append(stack, n)
		}
	}
	return nil
}

var errCorruptValue = errors.New("malformed msgpack")
