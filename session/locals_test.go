package session

import (
	"context"
	"testing"
)

func TestLocalsAndHooks(t *testing.T) {
	st := &state{}
	s := &Session{st: st}
	type k1 struct{}
	type k2 struct{ n int }
	if s.Local(k1{}) != nil || s.Local(nil) != nil {
		t.Fatal("a local before any SetLocal")
	}
	s.SetLocal(k1{}, 1)
	s.SetLocal(k2{1}, 2)
	s.SetLocal(k2{2}, 3)
	s.SetLocal(k1{}, 4)
	s.SetLocal(k2{1}, 5)
	for _, c := range []struct {
		k    any
		want any
	}{{k1{}, 4}, {k2{1}, 5}, {k2{2}, 3}, {k2{3}, nil}, {nil, nil}} {
		if got := s.Local(c.k); got != c.want {
			t.Errorf("Local(%v) = %v, want %v", c.k, got, c.want)
		}
	}
	var ran []int
	for i := range 3 {
		s.OnCommit(func(context.Context) error { ran = append(ran, i); return nil })
	}
	if err := st.runHooks(context.Background()); err != nil || len(ran) != 3 || ran[0] != 0 || ran[2] != 2 {
		t.Fatalf("hooks ran %v, %v", ran, err)
	}
}
