package inject

import (
	"bytes"
	"context"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// The alternative to codecs compiled at startup: code written per type by a
// generator (go generate), straight-line, without closures. These are what such
// a generator would write for PlainBasket, on the same wire primitives, to
// measure how much faster it would be than the closures
// (BenchmarkEncodePlainBasket10 and BenchmarkDecodePlainBasket10).

func genEncodePlainBasket(b []byte, v *PlainBasket) []byte {
	b = append(b, 0x81, 0xa5, 'i', 't', 'e', 'm', 's')
	if v.Items == nil {
		return appendNil(b)
	}
	b = appendArrayLen(b, len(v.Items))
	for i := range v.Items {
		it := &v.Items[i]
		b = append(b, 0x84, 0xa3, 's', 'k', 'u')
		b = appendString(b, it.SKU)
		b = append(b, 0xa4, 'n', 'a', 'm', 'e')
		b = appendString(b, it.Name)
		b = append(b, 0xa3, 'q', 't', 'y')
		b = appendInt(b, int64(it.Qty))
		b = append(b, 0xa5, 'p', 'r', 'i', 'c', 'e')
		b = appendInt(b, int64(it.Price))
	}
	return b
}

func genDecodePlainBasket(d *decState, v *PlainBasket) error {
	at := d.off
	c, err := d.code()
	if err != nil {
		return err
	}
	l, ok, err := d.mapLenCode(at, c)
	if !ok || err != nil || l < 0 {
		return d.fail(at, "not a map")
	}
	if err := d.enter(at, l); err != nil {
		return err
	}
	for range l {
		key, err := d.rawString()
		if err != nil {
			return err
		}
		switch string(key) {
		case "items":
			if err := genDecodeItems(d, &v.Items); err != nil {
				return err
			}
		default:
			if err := d.skip(); err != nil {
				return err
			}
		}
	}
	d.depth--
	return nil
}

func genDecodeItems(d *decState, items *[]PlainItem) error {
	at := d.off
	n, err := d.arrayLen()
	if err != nil {
		return err
	}
	if n < 0 {
		*items = nil
		return nil
	}
	if err := d.enter(at, n); err != nil {
		return err
	}
	s := make([]PlainItem, n)
	for i := range s {
		it := &s[i]
		at := d.off
		c, err := d.code()
		if err != nil {
			return err
		}
		l, ok, err := d.mapLenCode(at, c)
		if !ok || err != nil {
			return d.fail(at, "not a map")
		}
		if err := d.enter(at, l); err != nil {
			return err
		}
		for range l {
			key, err := d.rawString()
			if err != nil {
				return err
			}
			switch string(key) {
			case "sku":
				it.SKU, err = d.string()
			case "name":
				it.Name, err = d.string()
			case "qty":
				var q int64
				q, err = d.int64()
				it.Qty = int(q)
			case "price":
				var p int64
				p, err = d.int64()
				it.Price = int(p)
			default:
				err = d.skip()
			}
			if err != nil {
				return err
			}
		}
		d.depth--
	}
	*items = s
	d.depth--
	return nil
}

func TestGeneratedMatchesCompiled(t *testing.T) {
	p, err := NewRegistry().Plan(reflect.TypeFor[*PlainBasket]())
	if err != nil {
		t.Fatal(err)
	}
	want, err := p.Encode(context.Background(), plainBasket(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := genEncodePlainBasket(nil, plainBasket()); string(got) != string(want) {
		t.Fatalf("generated encoding differs:\n%x\n%x", got, want)
	}
	got := &PlainBasket{}
	d := p.reg.getDec(want, nil)
	defer p.reg.putDec(d)
	if err := genDecodePlainBasket(d, got); err != nil || !reflect.DeepEqual(got, plainBasket()) {
		t.Fatalf("generated decode: %v %+v", err, got)
	}
}

func BenchmarkGeneratedEncodePlainBasket10(b *testing.B) {
	basket := plainBasket()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = genEncodePlainBasket(buf[:0], basket)
	}
}

func BenchmarkGeneratedDecodePlainBasket10(b *testing.B) {
	p, err := NewRegistry().Plan(reflect.TypeFor[*PlainBasket]())
	if err != nil {
		b.Fatal(err)
	}
	data, _ := p.Encode(context.Background(), plainBasket(), nil)
	b.ReportAllocs()
	for b.Loop() {
		d := p.reg.getDec(data, nil)
		if err := genDecodePlainBasket(d, &PlainBasket{}); err != nil {
			b.Fatal(err)
		}
		p.reg.putDec(d)
	}
}

// msgpack itself on the same basket, for scale.

func BenchmarkMsgpackEncodePlainBasket10(b *testing.B) {
	basket := plainBasket()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if err := enc.Encode(basket); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMsgpackDecodePlainBasket10(b *testing.B) {
	data, err := msgpack.Marshal(plainBasket())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var v PlainBasket
		if err := msgpack.Unmarshal(data, &v); err != nil {
			b.Fatal(err)
		}
	}
}
