package session

import (
	"errors"
	"fmt"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/internal/msgpackcheck"
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
