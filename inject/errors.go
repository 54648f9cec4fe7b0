package inject

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
)

var (
	// ErrIncompatible reports stored state that does not decode into the current Go
	// type: the type changed incompatibly since the state was written (a field
	// changed its kind, an interface implementation is no longer registered) or the
	// bytes are damaged. Callers usually start over with a fresh instance.
	ErrIncompatible = errors.New("inject: stored state does not fit the type")

	// ErrEntityNotFound may be returned (wrapped) by a repository's Find to say that
	// the entity does not exist; the reference then loads as absent.
	ErrEntityNotFound = errors.New("inject: entity not found")

	// ErrInvalidType reports, when a plan is built, a type that cannot be stored.
	// The error is a [*TypeError] (or several joined) naming the field and the fix.
	ErrInvalidType = errors.New("inject: type cannot be stored")
)

// TypeError describes one field that makes a type unfit for storage. It matches
// [ErrInvalidType].
type TypeError struct {
	// Type is the type the plan was built for.
	Type reflect.Type
	// Path is the field's path from Type, such as "Items[].Product.Supplier".
	Path string
	// FieldType is the type of the offending field or element.
	FieldType reflect.Type
	// Problem says what is wrong; Fix how to correct it.
	Problem, Fix string
}

func (e *TypeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "inject: %s", e.Type)
	if e.Path != "" {
		fmt.Fprintf(&b, " field %s", e.Path)
	}
	if e.FieldType != nil {
		fmt.Fprintf(&b, " (%s)", e.FieldType)
	}
	fmt.Fprintf(&b, ": %s", e.Problem)
	if e.Fix != "" {
		fmt.Fprintf(&b, "; fix: %s", e.Fix)
	}
	return b.String()
}

// Is makes a TypeError match ErrInvalidType.
func (e *TypeError) Is(target error) bool { return target == ErrInvalidType }

func incompatible(t reflect.Type, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrIncompatible, t, fmt.Sprintf(format, args...))
}
