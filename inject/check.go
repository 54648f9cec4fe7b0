package inject

import (
	"encoding/binary"
	"fmt"
)

// checkStructure walks one msgpack value in b without decoding it and verifies that
// it is well formed, that it is the whole of b, that no container is nested deeper
// than maxDepth and that no length announces more items or bytes than b has left.
//
// msgpack's reflection decoder preallocates slices from the announced length
// (v5.4.1), so a 5-byte header could otherwise ask for billions of elements. After
// this check every allocation the decoder makes is bounded by len(b) times the size
// of one element, and recursion is bounded by maxDepth.
func checkStructure(b []byte, maxDepth int) error {
	c := checker{b: b, maxDepth: maxDepth}
	if err := c.value(0); err != nil {
		return err
	}
	if c.off != len(b) {
		return fmt.Errorf("%d trailing bytes after the value", len(b)-c.off)
	}
	return nil
}

type checker struct {
	b        []byte
	off      int
	maxDepth int
}

func (c *checker) need(n uint64) error {
	if n > uint64(len(c.b)-c.off) {
		return fmt.Errorf("truncated at byte %d: %d bytes announced, %d left", c.off, n, len(c.b)-c.off)
	}
	return nil
}

func (c *checker) uint(size int) (uint64, error) {
	if err := c.need(uint64(size)); err != nil {
		return 0, err
	}
	p := c.b[c.off : c.off+size]
	c.off += size
	switch size {
	case 1:
		return uint64(p[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(p)), nil
	default:
		return uint64(binary.BigEndian.Uint32(p)), nil
	}
}

func (c *checker) skip(n uint64) error {
	if err := c.need(n); err != nil {
		return err
	}
	c.off += int(n)
	return nil
}

func (c *checker) items(n uint64, depth int) error {
	// Every item takes at least one byte: refuse counts the input cannot hold.
	if err := c.need(n); err != nil {
		return err
	}
	if depth >= c.maxDepth {
		return fmt.Errorf("nested deeper than %d levels at byte %d", c.maxDepth, c.off)
	}
	for i := uint64(0); i < n; i++ {
		if err := c.value(depth + 1); err != nil {
			return err
		}
	}
	return nil
}

func (c *checker) value(depth int) error {
	if err := c.need(1); err != nil {
		return err
	}
	code := c.b[c.off]
	c.off++
	switch {
	case code <= 0x7f || code >= 0xe0: // fixint
		return nil
	case code >= 0x80 && code <= 0x8f: // fixmap
		return c.items(2*uint64(code&0x0f), depth)
	case code >= 0x90 && code <= 0x9f: // fixarray
		return c.items(uint64(code&0x0f), depth)
	case code >= 0xa0 && code <= 0xbf: // fixstr
		return c.skip(uint64(code & 0x1f))
	}
	switch code {
	case 0xc0, 0xc2, 0xc3: // nil, false, true
		return nil
	case 0xc4, 0xd9: // bin8, str8
		n, err := c.uint(1)
		if err != nil {
			return err
		}
		return c.skip(n)
	case 0xc5, 0xda: // bin16, str16
		n, err := c.uint(2)
		if err != nil {
			return err
		}
		return c.skip(n)
	case 0xc6, 0xdb: // bin32, str32
		n, err := c.uint(4)
		if err != nil {
			return err
		}
		return c.skip(n)
	case 0xc7, 0xc8, 0xc9: // ext8/16/32: length, type byte, data
		n, err := c.uint(1 << (code - 0xc7))
		if err != nil {
			return err
		}
		return c.skip(n + 1)
	case 0xca: // float32
		return c.skip(4)
	case 0xcb: // float64
		return c.skip(8)
	case 0xcc, 0xd0: // uint8, int8
		return c.skip(1)
	case 0xcd, 0xd1:
		return c.skip(2)
	case 0xce, 0xd2:
		return c.skip(4)
	case 0xcf, 0xd3:
		return c.skip(8)
	case 0xd4: // fixext1..16: type byte + data
		return c.skip(2)
	case 0xd5:
		return c.skip(3)
	case 0xd6:
		return c.skip(5)
	case 0xd7:
		return c.skip(9)
	case 0xd8:
		return c.skip(17)
	case 0xdc: // array16
		n, err := c.uint(2)
		if err != nil {
			return err
		}
		return c.items(n, depth)
	case 0xdd: // array32
		n, err := c.uint(4)
		if err != nil {
			return err
		}
		return c.items(n, depth)
	case 0xde: // map16
		n, err := c.uint(2)
		if err != nil {
			return err
		}
		return c.items(2*n, depth)
	case 0xdf: // map32
		n, err := c.uint(4)
		if err != nil {
			return err
		}
		return c.items(2*n, depth)
	}
	return fmt.Errorf("invalid msgpack code 0x%02x at byte %d", code, c.off-1)
}
