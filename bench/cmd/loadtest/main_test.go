package main

import "testing"

const wrkOut = `Running 10s test @ http://127.0.0.1:40000
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.71ms    2.10ms  30.01ms   80.00%
    Req/Sec     1.70k   150.00     2.00k    70.00%
  33872 requests in 10.01s, 12.34MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:   3383.71
Transfer/sec:      1.23MB
`

func TestParseWrk(t *testing.T) {
	w, err := parseWrk(wrkOut)
	if err != nil {
		t.Fatal(err)
	}
	if w.rps != 3383.71 || w.requests != 33872 || w.failed != 7 {
		t.Fatalf("parseWrk = %+v", w)
	}
	if _, err := parseWrk("garbage"); err == nil {
		t.Fatal("parseWrk accepted garbage")
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{7}, 7}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

// TestStealPercent: the eighth field of /proc/stat's cpu line over the sum of
// all, between two readings; readings that cannot be compared give none.
func TestStealPercent(t *testing.T) {
	a := []int64{100, 0, 50, 800, 0, 0, 0, 50, 0, 0}
	b := []int64{200, 0, 100, 1100, 0, 0, 0, 100, 0, 0}
	if got, ok := stealPercent(a, b); !ok || got != 10 {
		t.Fatalf("stealPercent = %v, %v; want 10, true", got, ok)
	}
	if _, ok := stealPercent(a, a); ok {
		t.Fatal("no time passed, yet a steal share")
	}
	if _, ok := stealPercent(nil, b); ok {
		t.Fatal("a steal share without a first reading")
	}
	if m := machineCPU(); len(m) < 8 {
		t.Fatalf("machineCPU() = %v: /proc/stat not read", m)
	}
}

func TestPick(t *testing.T) {
	all := []*system{{name: "fxsession"}, {name: "scs"}, {name: "scs-idle"}, {name: "floor"}}
	got, err := pick(all, "floor, fxsession")
	if err != nil || len(got) != 2 || got[0].name != "fxsession" || got[1].name != "floor" {
		t.Fatalf("pick = %v, %v; want fxsession and floor in that order", got, err)
	}
	for _, bad := range []string{"redis", "fxsession,nope", ","} {
		if _, err := pick(all, bad); err == nil {
			t.Errorf("pick(%q) = nil error, want one", bad)
		}
	}
}
