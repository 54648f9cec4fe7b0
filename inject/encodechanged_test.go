package inject

import (
	"bytes"
	"context"
	"reflect"
	"testing"
)

func TestEncodeChanged(t *testing.T) {
	p, err := NewRegistry().Plan(reflect.TypeFor[*PlainBasket]())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	basket := plainBasket()
	want, err := p.Encode(ctx, basket, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cap(want) < len(want) || len(want) == 0 {
		t.Fatalf("Encode: %d bytes", len(want))
	}
	// No baseline: always changed, a copy of the encoding.
	enc, changed, err := p.EncodeChanged(ctx, basket, nil, nil)
	if err != nil || !changed || !bytes.Equal(enc, want) {
		t.Fatalf("EncodeChanged(nil baseline) = %x, %v, %v", enc, changed, err)
	}
	// Equal to the baseline: the baseline itself, unchanged.
	base := bytes.Clone(want)
	enc, changed, err = p.EncodeChanged(ctx, basket, nil, base)
	if err != nil || changed || &enc[0] != &base[0] {
		t.Fatalf("EncodeChanged(equal) changed=%v err=%v same=%v", changed, err, &enc[0] == &base[0])
	}
	// Changed: a fresh copy, not the reused buffer.
	basket.Items[0].Qty++
	enc1, changed, err := p.EncodeChanged(ctx, basket, nil, base)
	if err != nil || !changed || bytes.Equal(enc1, base) {
		t.Fatalf("EncodeChanged(changed) changed=%v err=%v", changed, err)
	}
	keep := bytes.Clone(enc1)
	basket.Items[1].Qty++
	if _, _, err := p.EncodeChanged(ctx, basket, nil, base); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc1, keep) {
		t.Fatal("a later EncodeChanged overwrote an earlier result")
	}
	got, _ := p.Encode(ctx, basket, nil)
	check := plainBasket()
	if err := p.Decode(ctx, got, check, nil); err != nil || !reflect.DeepEqual(check, basket) {
		t.Fatalf("round trip: %v %+v", err, check)
	}
}
