package sessionctl

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/fxsession/fxsession/session"
)

// Kind is what a stored value is to the session.
type Kind string

// The kinds of stored values.
const (
	KindValue   Kind = "value"   // a Session.Put value, named by its key
	KindObject  Kind = "object"  // an extension's field, such as a session-scoped object ("scope:basket")
	KindBag     Kind = "bag"     // one member of a named attribute bag
	KindFlashes Kind = "flashes" // the flash messages
	KindOther   Kind = "other"   // a value this package does not know how to read
)

// Value is one value a session holds, as "show" prints it.
type Value struct {
	// Key is the name of the value's field in the session's record, as show
	// prints it ("v:user", "e:scope:basket", "b:prefs", "f").
	Key string
	// Kind says what the value is; Name names it within its kind: the
	// Session.Put key, the extension's key ("scope:" and the scope.Key name of a
	// session-scoped object), the bag's name, or "flashes".
	Kind Kind
	Name string
	// Field is a bag member's key ("" for the other kinds).
	Field string
	// Size is the value's size in the store, in bytes.
	Size int
	// Data is the value's msgpack encoding (nil when it could not be read).
	Data session.Value

	known any   // already decoded (flashes)
	err   error // why Data could not be read
}

// A Decoder turns a stored value whose Go type the program knows into one that
// encoding/json prints: show prints it as JSON. ok is false for a value the
// decoder does not know; show then tries the next decoder and at last prints the
// msgpack in hex. An error (bytes that do not fit the type) is shown with the
// hex, it does not fail the command.
type Decoder func(ctx context.Context, v Value) (out any, ok bool, err error)

// PutValue decodes the Session.Put value stored under name into a T.
func PutValue[T any](name string) Decoder {
	return func(_ context.Context, v Value) (any, bool, error) {
		if v.Kind != KindValue || v.Name != name {
			return nil, false, nil
		}
		var out T
		if err := v.Data.Decode(&out); err != nil {
			return nil, true, err
		}
		return out, true, nil
	}
}

// Object decodes the extension field stored under key (for a session-scoped
// object, "scope:" followed by its scope.Key name) with decode.
func Object(key string, decode func(ctx context.Context, data session.Value) (any, error)) Decoder {
	return func(ctx context.Context, v Value) (any, bool, error) {
		if v.Kind != KindObject || v.Name != key {
			return nil, false, nil
		}
		out, err := decode(ctx, v.Data)
		return out, true, err
	}
}

// decoded is a value as show presents it: JSON when its type is known, the
// msgpack in hex otherwise.
type decoded struct {
	Key     string `json:"key"`
	Kind    Kind   `json:"kind"`
	Name    string `json:"name"`
	Field   string `json:"field,omitempty"`
	Size    int    `json:"size"`
	JSON    any    `json:"json,omitempty"`
	Msgpack string `json:"msgpack,omitempty"` // hex
	Note    string `json:"note,omitempty"`    // why the value is not decoded
	known   bool
}

func decode(ctx context.Context, v Value, decoders []Decoder) decoded {
	d := decoded{Key: v.Key, Kind: v.Kind, Name: v.Name, Field: v.Field, Size: v.Size}
	switch {
	case v.err != nil:
		d.Note = "not readable: " + v.err.Error()
		return d
	case v.known != nil:
		d.JSON, d.known = v.known, true
		return d
	}
	for _, dec := range decoders {
		out, ok, err := dec(ctx, v)
		if !ok {
			continue
		}
		if err != nil {
			d.Note = fmt.Sprintf("does not decode as its type: %v", err)
			break
		}
		d.JSON, d.known = out, true
		return d
	}
	d.Msgpack = hex.EncodeToString(v.Data)
	return d
}
