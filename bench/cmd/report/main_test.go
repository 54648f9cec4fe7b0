package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/fxsession/fxsession/bench/internal/perfdoc"
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
	write(&doc, res, []string{"machine"}, "", extra{})
	out := doc.String()
	for _, want := range []string{
		"| Add to a 10-item basket (memory): at most ¼ of scs's time | fxsession/scs = 0.30",
		"| Add to a 10-item basket (memory): within 1.3x of the floor | fxsession/floor = 1.20",
		"+200 ns",
		"| fxsession | 12.0 µs ±∞ | 1.20 |",
		"not measured (results/counts.json missing",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "**met**"); n != 3 {
		t.Errorf("%d targets met, want 3 (1.3x the floor, 300 ns, 2 allocations; 0.30 of scs misses ¼):\n%s", n, out)
	}
	if !strings.Contains(out, "not measured (TouchOneOf20/fxsession, AddItem/fxsession missing from the run)") {
		t.Errorf("a target with a missing benchmark is not marked unmeasured:\n%s", out)
	}
}

func TestReportCounts(t *testing.T) {
	res, _, err := parse(strings.NewReader(sample), "sample")
	if err != nil {
		t.Fatal(err)
	}
	row := func(scenario, system, store string, rt, wr int64, calls string) perfdoc.CountRow {
		return perfdoc.CountRow{Scenario: scenario, System: system, Store: store, RoundTrips: rt, Writes: wr, Calls: calls}
	}
	counts := &perfdoc.Counts{Date: "today", Rows: []perfdoc.CountRow{
		row("page", "fxsession", "redis", 1, 0, "HGETALL"),
		row("page", "fxsession", "memory", 1, 0, "Read"),
		row("page", "scs", "redis", 1, 0, "GET"),
		row("add", "fxsession", "redis", 3, 1, "HGETALL, HMGET, EVALSHA"),
		row("add", "fxsession", "memory", 2, 1, "Read, Write"),
		row("add", "scs", "redis", 2, 1, "GET, SET"),
	}}
	counts.Rows[0].Commands, counts.Rows[0].ServerCommands = 1, 1
	var doc bytes.Buffer
	write(&doc, res, []string{"machine"}, "", extra{counts: counts})
	out := doc.String()
	for _, want := range []string{
		"| Store round trips: resume and read every object and value an HTML page uses = 1 round trip (Redis: client round trips; memory, file: store calls) | page: round trips on redis 1, memory 1 (scs on Redis: 1) | **met** |",
		"| Store round trips: a request that changes nothing = 0 writes (Redis: client round trips; memory, file: store calls) | page: writes on redis 0, memory 0 (scs on Redis: 0) | **met** |",
		"| Store round trips: an add through Update ≤ 2 round trips (Redis: client round trips; memory, file: store calls) | add: round trips on redis 3, memory 2 (scs on Redis: 2) | **missed** |",
		"not measured (no fxsession login row)",
		"| 1 (0) | 1 / 1 | 1 (0) | 0 / 0 | 1 (0) | – | – |",
		"- add — fxsession redis: HGETALL, HMGET, EVALSHA; scs redis: GET, SET; fxsession memory: Read, Write",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
