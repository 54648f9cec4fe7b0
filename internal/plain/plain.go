// Package plain tells which Go types hold no references: values a shallow
// copy duplicates entirely, sharing nothing with the original. Equal compares
// two values of such a type without reflection.
package plain

import (
	"reflect"
	"time"
)

var timeType = reflect.TypeFor[time.Time]()

// Scalar reports whether t is a boolean, a number or a string.
func Scalar(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128, reflect.String:
		return true
	}
	return false
}

// Type reports whether values of t hold no reference to memory a copy would
// share: scalars (strings are immutable), time.Time (its location is shared
// by design and never changed), and arrays and structs of them.
func Type(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Array:
		return Type(t.Elem())
	case reflect.Struct:
		if t == timeType {
			return true
		}
		for i := range t.NumField() {
			if !Type(t.Field(i).Type) {
				return false
			}
		}
		return true
	}
	return Scalar(t)
}
