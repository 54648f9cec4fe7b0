package plain

import (
	"reflect"
	"testing"
	"time"
)

func TestType(t *testing.T) {
	type inner struct{ A [2]string }
	type valueEnt struct {
		ID    string
		Price int
		At    time.Time
		Dims  [3]float64
	}
	type sharingEnt struct {
		ID    string
		Attrs map[string]string
	}
	for _, tc := range []struct {
		t    reflect.Type
		want bool
	}{
		{reflect.TypeFor[valueEnt](), true},
		{reflect.TypeFor[struct {
			I inner
			T time.Time
		}](), true},
		{reflect.TypeFor[complex64](), true},
		{reflect.TypeFor[sharingEnt](), false},
		{reflect.TypeFor[struct{ P *int }](), false},
		{reflect.TypeFor[struct{ S []int }](), false},
		{reflect.TypeFor[struct{ X any }](), false},
		{reflect.TypeFor[[2]*int](), false},
		{reflect.TypeFor[struct{ f func() }](), false},
		{reflect.TypeFor[chan int](), false},
	} {
		if got := Type(tc.t); got != tc.want {
			t.Errorf("Type(%v) = %v, want %v", tc.t, got, tc.want)
		}
	}
}

func TestScalar(t *testing.T) {
	for _, tc := range []struct {
		t    reflect.Type
		want bool
	}{
		{reflect.TypeFor[string](), true},
		{reflect.TypeFor[uint8](), true},
		{reflect.TypeFor[bool](), true},
		{reflect.TypeFor[[1]int](), false},
		{reflect.TypeFor[struct{}](), false},
		{reflect.TypeFor[*int](), false},
	} {
		if got := Scalar(tc.t); got != tc.want {
			t.Errorf("Scalar(%v) = %v, want %v", tc.t, got, tc.want)
		}
	}
}
