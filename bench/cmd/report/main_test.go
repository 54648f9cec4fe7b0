package main

import (
	"bytes"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/fxsession/fxsession/bench
cpu: Test CPU
BenchmarkNoSession/bare-2         	1000	        10 ns/op	       0 B/op	       0 allocs/op
BenchmarkNoSession/fxsession-2    	1000	       210 ns/op	     496 B/op	       2 allocs/op
BenchmarkAddItem/floor-2          	1000	     10000 ns/op	    1960 B/op	      22 allocs/op
BenchmarkAddItem/fxsession-2      	1000	     12000 ns/op	    7376 B/op	      80 allocs/op
BenchmarkAddItem/scs-2            	1000	     40000 ns/op	   14913 B/op	     297 allocs/op
BenchmarkBasketSize/fxsession-10-2	1000	     12000 ns/op	    7376 B/op	      80 allocs/op
BenchmarkReadBasketRedis/fxsession-2	1000	  60000 ns/op	  2.000 roundtrips/op	 0 writes/op	 6897 B/op	 100 allocs/op
`

func TestReport(t *testing.T) {
	res, cpu, err := parse(strings.NewReader(sample+sample), "sample")
	if err != nil {
		t.Fatal(err)
	}
	if cpu != "Test CPU" {
		t.Errorf("cpu %q", cpu)
	}
	if s, ok := res.get("BasketSize/fxsession-10", "ns/op"); !ok || s.center != 12000 || s.n != 2 {
		t.Errorf("BasketSize/fxsession-10: %+v %v (the -10 is part of the name, -2 is GOMAXPROCS)", s, ok)
	}
	var doc bytes.Buffer
	write(&doc, res, []string{"machine"}, "", nil)
	out := doc.String()
	for _, want := range []string{
		"| Add to a 10-item basket (memory): at most ⅓ of scs's time | fxsession/scs = 0.30",
		"| Add to a 10-item basket (memory): within 1.3x of the floor | fxsession/floor = 1.20",
		"+200 ns",
		"read: 2.00 round trips/request, 0.00 of them writes | **missed** |",
		"| fxsession | 12.0 µs ±∞ | 1.20 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "**met**"); n != 4 {
		t.Errorf("%d targets met, want 4 (⅓ of scs, 1.3x the floor, 300 ns, 3 allocations):\n%s", n, out)
	}
	if !strings.Contains(out, "not measured (TouchOneOf20/fxsession, AddItem/fxsession missing from the run)") {
		t.Errorf("a target with a missing benchmark is not marked unmeasured:\n%s", out)
	}
}
