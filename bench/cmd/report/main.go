// Command report turns a `go test -bench` run of the bench module into the
// generated part of docs/performance.md: the tables side by side with ratios,
// the machine and the date, the store round trips per request counted by
// TestRequestCounts, and every target of the product brief marked met or missed
// with the measured ratio or count.
//
//	go run ./cmd/report -in results/bench.txt -benchstat results/benchstat.txt \
//		-env results/env.txt -loadtest results/loadtest.json -counts results/counts.json \
//		-out ../docs/performance.md
//
// It rewrites only the text between "<!-- bench:begin -->" and
// "<!-- bench:end -->" (creating the file, or the markers, when missing), so the
// load-test section (cmd/loadtest) and the hand-written analysis survive.
// Medians and their 95% confidence intervals are computed with
// golang.org/x/perf/benchmath, as benchstat does.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/perf/benchfmt"
	"golang.org/x/perf/benchmath"

	"github.com/fxsession/fxsession/bench/internal/perfdoc"
)

func main() {
	in := flag.String("in", "results/bench.txt", "raw `go test -bench` output")
	bs := flag.String("benchstat", "results/benchstat.txt", "benchstat output to embed (optional)")
	env := flag.String("env", "results/env.txt", "key: value lines describing the run (optional)")
	lt := flag.String("loadtest", "results/loadtest.json", "load-test results (optional)")
	counts := flag.String("counts", "results/counts.json", "TestRequestCounts' counts (optional)")
	out := flag.String("out", "../docs/performance.md", "the document to update")
	flag.Parse()
	if err := run(*in, *bs, *env, *lt, *counts, *out); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

// extra are the results beside the benchmarks'.
type extra struct {
	load   *perfdoc.LoadTest
	counts *perfdoc.Counts
}

func run(in, bsPath, envPath, ltPath, countsPath, out string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	res, cpu, err := parse(f, in)
	if err != nil {
		return err
	}
	if len(res.samples) == 0 {
		return fmt.Errorf("%s holds no benchmark results", in)
	}
	benchstat, _ := os.ReadFile(bsPath) // optional
	envLines, _ := os.ReadFile(envPath) // optional
	var x extra
	if b, err := os.ReadFile(ltPath); err == nil {
		x.load = &perfdoc.LoadTest{}
		if err := json.Unmarshal(b, x.load); err != nil {
			return fmt.Errorf("%s: %w", ltPath, err)
		}
	}
	if b, err := os.ReadFile(countsPath); err == nil {
		x.counts = &perfdoc.Counts{}
		if err := json.Unmarshal(b, x.counts); err != nil {
			return fmt.Errorf("%s: %w", countsPath, err)
		}
	}
	var doc bytes.Buffer
	write(&doc, res, machine(cpu, string(envLines)), string(benchstat), x)
	return perfdoc.Splice(out, "bench", doc.String())
}

// ---- results ----

// stat is one benchmark's median in one unit with its 95% confidence interval.
type stat struct {
	center, lo, hi float64
	n              int
}

// pct is the half-width of the confidence interval in percent of the median.
func (s stat) pct() float64 {
	if s.center == 0 {
		return 0
	}
	return 100 * math.Max(s.hi-s.center, s.center-s.lo) / s.center
}

type results struct {
	order   []string                        // names in first-seen order
	samples map[string]map[string][]float64 // name -> unit -> values
	units   []string                        // custom units in first-seen order
}

// get returns the stat of name in unit ("ns/op", "B/op", "allocs/op" or a
// custom one).
// ci formats the confidence interval's half-width, "±∞" when there are too
// few runs for one.
func (s stat) ci() string {
	p := s.pct()
	if math.IsInf(p, 0) || math.IsNaN(p) {
		return "±∞"
	}
	return fmt.Sprintf("±%.0f%%", p)
}

func (r *results) get(name, unit string) (stat, bool) {
	vs := r.samples[name][unit]
	if len(vs) == 0 {
		return stat{}, false
	}
	s := benchmath.AssumeNothing.Summary(benchmath.NewSample(slices.Clone(vs), &benchmath.DefaultThresholds), 0.95)
	return stat{center: s.Center, lo: s.Lo, hi: s.Hi, n: len(vs)}, true
}

// best is the fastest run of name in unit: on a shared machine the least
// disturbed one.
func (r *results) best(name, unit string) (float64, bool) {
	vs := r.samples[name][unit]
	if len(vs) == 0 {
		return 0, false
	}
	return slices.Min(vs), true
}

// bestRatio formats the ratio of the fastest runs of a and b.
func (r *results) bestRatio(a, b string) string {
	x, ok1 := r.best(a, "ns/op")
	y, ok2 := r.best(b, "ns/op")
	if !ok1 || !ok2 || y == 0 {
		return ""
	}
	return fmt.Sprintf("; fastest runs: %.2f", x/y)
}

// parse reads benchmark results; names lose their "Benchmark" prefix and the
// GOMAXPROCS suffix.
func parse(rd io.Reader, fileName string) (*results, string, error) {
	res := &results{samples: map[string]map[string][]float64{}}
	br := benchfmt.NewReader(rd, fileName)
	cpu := ""
	for br.Scan() {
		switch rec := br.Result().(type) {
		case *benchfmt.SyntaxError:
			return nil, "", rec
		case *benchfmt.Result:
			if c := rec.GetConfig("cpu"); c != "" {
				cpu = c
			}
			base, parts := rec.Name.Parts()
			name := strings.TrimPrefix(string(base), "Benchmark")
			for _, p := range parts {
				if p[0] == '/' {
					name += string(p)
				}
			}
			if res.samples[name] == nil {
				res.samples[name] = map[string][]float64{}
				res.order = append(res.order, name)
			}
			for _, v := range rec.Values {
				unit, val := v.Unit, v.Value
				if unit == "sec/op" {
					unit, val = "ns/op", val*1e9
				}
				if !slices.Contains([]string{"ns/op", "B/op", "allocs/op"}, unit) && !slices.Contains(res.units, unit) {
					res.units = append(res.units, unit)
				}
				res.samples[name][unit] = append(res.samples[name][unit], val)
			}
		}
	}
	return res, cpu, br.Err()
}

// ---- the machine ----

func machine(cpu, env string) []string {
	var out []string
	if m := cpuModel(); m != "" {
		cpu = m // /proc/cpuinfo's model name; the go test header's otherwise
	}
	if cpu == "" {
		cpu = "unknown CPU"
	}
	out = append(out, fmt.Sprintf("CPU: %s, %d logical CPUs (nproc), %s/%s", cpu, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH))
	out = append(out, "Go: "+runtime.Version())
	for line := range strings.SplitSeq(strings.TrimSpace(env), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// ---- the document ----

type table struct {
	bench, title, ref, note string
}

var tables = []table{
	{"NoSession", "A request without a session", "NoSession/bare",
		"No cookie; the handler never touches a session. gorilla/sessions has no middleware, so its row is the bare handler; like every gorilla row it works on a shallow copy of the prepared request (one allocation), because gorilla stores its per-request registry by overwriting *r and would otherwise skip its work after the first iteration."},
	{"ReadBasket", "Reading the 10-item basket of an existing session", "ReadBasket/floor",
		"Memory stores: fxsession's memstore, scs's memstore, gorilla's FilesystemStore in a temporary folder, and its CookieStore (gorilla-cookie). Nothing changes, nothing is written. floor: a bare handler doing one map read and one msgpack decode."},
	{"AddItem", "Adding to the 10-item basket of an existing session", "AddItem/floor",
		"The add removes the oldest line and appends one (the basket stays at 10). fxsession uses the idiomatic atomic Handle.Update. floor: a bare handler doing one map read, one msgpack decode, the change, one msgpack encode and one map write."},
	{"AddItemGet", "The same add through Get and a change in place (written at the commit point)", "AddItem/fxsession", ""},
	{"AddItemRedis", "Adding on a real redis-server", "AddItemRedis/fxsession",
		"scs with goredisstore. roundtrips/op counts client round trips (a pipeline is one), writes/op those that write; rediscmds/op counts the server's total_commands_processed, which includes the commands a Lua script runs. The counted round trips of more requests are in the table above."},
	{"ReadBasketRedis", "Reading on a real redis-server", "ReadBasketRedis/fxsession", ""},
	{"BasketSize", "The fxsession add by basket size", "BasketSize/fxsession-10", ""},
	{"TouchOneOf20", "20 session-scoped types stored, the request adds to the basket only", "AddItem/fxsession",
		"Compared with BenchmarkAddItem/fxsession, which has one type."},
	{"Resolve", "Getting a fresh session-scoped object for a request", "Resolve/fxsession",
		"fxsession: a request context without a session and Handle.Get (the constructor runs with its singleton). digscope: dig's Scope per request, Provide of the constructor, Invoke."},
	{"ResolveRequest", "Getting a request-scoped object with two dependencies (a singleton and another request-scoped object)", "ResolveRequest/fxsession",
		"fxsession: a request (session.Manager.Begin and Exchange.End, what package grpcsession does per call) and RequestHandle.Get, both constructors running, the end hooks run. digscope: dig's Scope per request, Provide of both constructors, Invoke."},
}

func write(w *bytes.Buffer, r *results, mach []string, benchstat string, x extra) {
	fmt.Fprintf(w, "## Benchmarks\n\n")
	fmt.Fprintf(w, "Generated by `make bench` (bench/run.sh, bench/cmd/report) on %s. ", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "Medians of the runs with their 95%% confidence interval (golang.org/x/perf/benchmath, as benchstat); ratios are between medians of the same run, verdicts use them. The fastest run of each benchmark (the least disturbed on a shared machine) and the ratios of fastest runs are shown beside them. ")
	fmt.Fprintf(w, "The machine is shared with other work, so absolute numbers are noisy: read the ratios.\n\n")
	for _, m := range mach {
		fmt.Fprintf(w, "- %s\n", m)
	}
	fmt.Fprintln(w)

	fmt.Fprintf(w, "### Targets (PRODUCT.md)\n\n")
	fmt.Fprintf(w, "| target | measured | verdict |\n|---|---|---|\n")
	for _, t := range targets(r, x) {
		fmt.Fprintf(w, "| %s | %s | %s |\n", t.what, t.measured, t.verdict)
	}
	fmt.Fprintln(w)
	writeCounts(w, x.counts)

	for _, t := range tables {
		var names []string
		for _, n := range r.order {
			if strings.HasPrefix(n, t.bench+"/") {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			continue
		}
		fmt.Fprintf(w, "### Benchmark%s: %s\n\n", t.bench, t.title)
		if t.note != "" {
			fmt.Fprintf(w, "%s\n\n", t.note)
		}
		ref, haveRef := r.get(t.ref, "ns/op")
		refAllocs, _ := r.get(t.ref, "allocs/op")
		var extra []string
		for _, u := range r.units {
			for _, n := range names {
				if _, ok := r.samples[n][u]; ok && !slices.Contains(extra, u) {
					extra = append(extra, u)
				}
			}
		}
		fmt.Fprintf(w, "| | time/op (median) | × %s | fastest run | × | B/op | allocs/op | Δ allocs |", t.ref)
		for _, u := range extra {
			fmt.Fprintf(w, " %s |", u)
		}
		fmt.Fprintf(w, "\n|---|--:|--:|--:|--:|--:|--:|--:|")
		for range extra {
			fmt.Fprintf(w, "--:|")
		}
		fmt.Fprintln(w)
		for _, n := range names {
			ns, _ := r.get(n, "ns/op")
			bop, _ := r.get(n, "B/op")
			al, _ := r.get(n, "allocs/op")
			ratio := "–"
			if haveRef && ref.center > 0 {
				ratio = fmt.Sprintf("%.2f", ns.center/ref.center)
			}
			bestRatio := "–"
			best, _ := r.best(n, "ns/op")
			if rb, ok := r.best(t.ref, "ns/op"); ok && rb > 0 {
				bestRatio = fmt.Sprintf("%.2f", best/rb)
			}
			fmt.Fprintf(w, "| %s | %s %s | %s | %s | %s | %.0f | %.0f | %+.0f |", strings.TrimPrefix(n, t.bench+"/"), dur(ns.center), ns.ci(), ratio, dur(best), bestRatio, bop.center, al.center, al.center-refAllocs.center)
			for _, u := range extra {
				if s, ok := r.get(n, u); ok {
					fmt.Fprintf(w, " %.2f |", s.center)
				} else {
					fmt.Fprintf(w, " |")
				}
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w)
	}
	if benchstat = strings.TrimSpace(benchstat); benchstat != "" {
		fmt.Fprintf(w, "<details><summary>benchstat output of the run</summary>\n\n```\n%s\n```\n\n</details>\n", benchstat)
	}
}

// dur formats nanoseconds.
func dur(ns float64) string {
	switch {
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 1e4:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	case ns >= 1e3:
		return fmt.Sprintf("%.2f µs", ns/1e3)
	}
	return fmt.Sprintf("%.0f ns", ns)
}

// ---- targets ----

type verdict struct{ what, measured, verdict string }

func verdictOf(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

func targets(r *results, x extra) []verdict {
	var out []verdict
	ns := func(name string) (float64, bool) { s, ok := r.get(name, "ns/op"); return s.center, ok }
	metric := func(name, unit string) (float64, bool) { s, ok := r.get(name, unit); return s.center, ok }
	missing := func(what string, names ...string) verdict {
		return verdict{what, "not measured (" + strings.Join(names, ", ") + " missing from the run)", "–"}
	}

	// Adding to a 10-item basket.
	fx, ok1 := ns("AddItem/fxsession")
	scs, ok2 := ns("AddItem/scs")
	floor, ok3 := ns("AddItem/floor")
	what := "Add to a 10-item basket (memory): at most ¼ of scs's time"
	if ok1 && ok2 {
		q := fx / scs
		out = append(out, verdict{what, fmt.Sprintf("fxsession/scs = %.2f (%s vs %s; %.1fx faster%s)", q, dur(fx), dur(scs), 1/q, r.bestRatio("AddItem/fxsession", "AddItem/scs")), verdictOf(q <= 0.25)})
	} else {
		out = append(out, missing(what, "AddItem/fxsession", "AddItem/scs"))
	}
	what = "Add to a 10-item basket (memory): within 1.3x of the floor"
	if ok1 && ok3 {
		q := fx / floor
		out = append(out, verdict{what, fmt.Sprintf("fxsession/floor = %.2f (%s vs %s%s)", q, dur(fx), dur(floor), r.bestRatio("AddItem/fxsession", "AddItem/floor")), verdictOf(q <= 1.3)})
	} else {
		out = append(out, missing(what, "AddItem/fxsession", "AddItem/floor"))
	}
	rfx, ok1 := ns("ReadBasket/fxsession")
	rfloor, ok2 := ns("ReadBasket/floor")
	what = "Read the 10-item basket (memory): within 1.2x of a read floor (issue 13)"
	if ok1 && ok2 {
		q := rfx / rfloor
		out = append(out, verdict{what, fmt.Sprintf("fxsession/floor = %.2f (%s vs %s%s)", q, dur(rfx), dur(rfloor), r.bestRatio("ReadBasket/fxsession", "ReadBasket/floor")), verdictOf(q <= 1.2)})
	} else {
		out = append(out, missing(what, "ReadBasket/fxsession", "ReadBasket/floor"))
	}

	// No session.
	bare, ok1 := ns("NoSession/bare")
	nfx, ok2 := ns("NoSession/fxsession")
	what = "A request with no session: at most 300 ns over a bare handler"
	if ok1 && ok2 {
		d := nfx - bare
		out = append(out, verdict{what, fmt.Sprintf("+%.0f ns (%s vs %s%s)", d, dur(nfx), dur(bare), bestDelta(r, "NoSession/fxsession", "NoSession/bare")), verdictOf(d <= 300)})
	} else {
		out = append(out, missing(what, "NoSession/bare", "NoSession/fxsession"))
	}
	ab, ok1 := metric("NoSession/bare", "allocs/op")
	af, ok2 := metric("NoSession/fxsession", "allocs/op")
	bb, _ := metric("NoSession/bare", "B/op")
	bf, _ := metric("NoSession/fxsession", "B/op")
	what = "A request with no session: at most 2 allocations over a bare handler"
	if ok1 && ok2 {
		out = append(out, verdict{what, fmt.Sprintf("+%.0f allocs (+%.0f B)", af-ab, bf-bb), verdictOf(af-ab <= 2)})
	} else {
		out = append(out, missing(what, "NoSession/bare", "NoSession/fxsession"))
	}

	// Store round trips, counted.
	out = append(out, countTargets(x.counts)...)

	// Load test.
	load := x.load
	if load != nil && len(load.RPS) > 0 {
		for _, peer := range []struct {
			name, what string
			min        float64
		}{
			{"scs", "Loopback HTTP throughput on Redis (wrk): at least 1.5x scs with goredisstore", 1.5},
			{"scs-idle", "… and against scs with the demo's expiry policy (IdleTimeout 1 h, as fxsession by default)", 1.5},
			{"floor", "Loopback HTTP throughput on Redis (wrk): at least 0.75x a floor server (net/http + go-redis)", 0.75},
		} {
			var parts []string
			ok := true
			for _, route := range sortedKeys(load.RPS) {
				f, p := load.RPS[route]["fxsession"], load.RPS[route][peer.name]
				if p <= 0 {
					ok = false
					parts = append(parts, route+": "+peer.name+" not measured")
					continue
				}
				parts = append(parts, fmt.Sprintf("%s: %.2fx (%.0f vs %.0f req/s)", route, f/p, f, p))
				ok = ok && f/p >= peer.min
			}
			out = append(out, verdict{peer.what, strings.Join(parts, "; ") + " — `make loadtest`, " + load.Date, verdictOf(ok)})
		}
	} else {
		out = append(out, verdict{"Loopback HTTP throughput on Redis (wrk): at least 1.5x scs and 0.75x a floor server", "see the load test section (`make loadtest`)", "–"})
	}

	// Resolve.
	rsfx, ok1 := ns("Resolve/fxsession")
	rdig, ok2 := ns("Resolve/digscope")
	what = "Resolving a session-scoped object: at least 20x faster than a per-request dig child scope"
	if ok1 && ok2 {
		out = append(out, verdict{what, fmt.Sprintf("%.1fx faster (%s vs %s%s)", rdig/rsfx, dur(rsfx), dur(rdig), r.bestRatio("Resolve/digscope", "Resolve/fxsession")), verdictOf(rdig/rsfx >= 20)})
	} else {
		out = append(out, missing(what, "Resolve/fxsession", "Resolve/digscope"))
	}

	rqfx, ok1 := ns("ResolveRequest/fxsession")
	rqdig, ok2 := ns("ResolveRequest/digscope")
	what = "Resolving a request-scoped object with two dependencies: at least 20x faster than a per-request dig child scope"
	if ok1 && ok2 {
		out = append(out, verdict{what, fmt.Sprintf("%.1fx faster (%s vs %s%s)", rqdig/rqfx, dur(rqfx), dur(rqdig), r.bestRatio("ResolveRequest/digscope", "ResolveRequest/fxsession")), verdictOf(rqdig/rqfx >= 20)})
	} else {
		out = append(out, missing(what, "ResolveRequest/fxsession", "ResolveRequest/digscope"))
	}

	// Linear growth.
	t10, ok1 := ns("BasketSize/fxsession-10")
	t100, ok2 := ns("BasketSize/fxsession-100")
	t1000, ok3 := ns("BasketSize/fxsession-1000")
	what = "Cost grows linearly with the size of the object touched"
	if ok1 && ok2 && ok3 {
		s1, s2 := (t100-t10)/90, (t1000-t100)/900
		q := s2 / s1
		out = append(out, verdict{what, fmt.Sprintf("per item: %.0f ns from 10 to 100 items, %.0f ns from 100 to 1000 (ratio %.2f; linear = 1, met within 0.67–1.5)", s1, s2, q), verdictOf(q >= 0.67 && q <= 1.5)})
	} else {
		out = append(out, missing(what, "BasketSize/fxsession-{10,100,1000}"))
	}
	t20, ok1 := ns("TouchOneOf20/fxsession")
	one, ok2 := ns("AddItem/fxsession")
	what = "… and not at all with the number of session-scoped types the request does not touch"
	if ok1 && ok2 {
		a1, _ := metric("AddItem/fxsession", "allocs/op")
		a20, _ := metric("TouchOneOf20/fxsession", "allocs/op")
		q := t20 / one
		out = append(out, verdict{what, fmt.Sprintf("20 types / 1 type = %.2f (%s vs %s; %+.0f allocs%s); met within 1.10", q, dur(t20), dur(one), a20-a1, r.bestRatio("TouchOneOf20/fxsession", "AddItem/fxsession")), verdictOf(q <= 1.10)})
	} else {
		out = append(out, missing(what, "TouchOneOf20/fxsession", "AddItem/fxsession"))
	}
	return out
}

// ---- counted round trips ----

// storeNames are the stores of the counts, in the order shown.
var storeNames = []string{"redis", "memory", "file"}

// countTargets judges the fxsession rows of the counts against
// perfdoc.CountTargets: met when met on every store.
func countTargets(c *perfdoc.Counts) []verdict {
	var out []verdict
	for _, tg := range perfdoc.CountTargets {
		what := "Store round trips: " + tg.What + " (Redis: client round trips; memory, file: store calls)"
		if c == nil {
			out = append(out, verdict{what, "not measured (results/counts.json missing: TestRequestCounts -counts)", "–"})
			continue
		}
		unit := "round trips"
		if tg.Writes {
			unit = "writes"
		}
		var parts []string
		ok, seen := true, false
		for _, st := range storeNames {
			row, found := findRow(c, tg.Scenario, "fxsession", st)
			if !found {
				continue
			}
			seen = true
			ok = ok && tg.Met(row)
			parts = append(parts, fmt.Sprintf("%s %d", st, tg.Value(row)))
		}
		if !seen {
			out = append(out, verdict{what, "not measured (no fxsession " + tg.Scenario + " row)", "–"})
			continue
		}
		m := tg.Scenario + ": " + unit + " on " + strings.Join(parts, ", ")
		if row, found := findRow(c, tg.Scenario, "scs", "redis"); found {
			m += fmt.Sprintf(" (scs on Redis: %d)", tg.Value(row))
		}
		out = append(out, verdict{what, m, verdictOf(ok)})
	}
	return out
}

func findRow(c *perfdoc.Counts, scenario, system, store string) (perfdoc.CountRow, bool) {
	for _, r := range c.Rows {
		if r.Scenario == scenario && r.System == system && r.Store == store {
			return r, true
		}
	}
	return perfdoc.CountRow{}, false
}

// writeCounts writes the table of round trips per request.
func writeCounts(w *bytes.Buffer, c *perfdoc.Counts) {
	if c == nil {
		return
	}
	fmt.Fprintf(w, "### Store round trips per request (counted)\n\n")
	fmt.Fprintf(w, "Counted by `TestRequestCounts` (bench/counts_test.go, %s): counts, not times, the same on every run. ", c.Date)
	fmt.Fprintf(w, "Redis: client round trips as a go-redis hook sees them (a command or a pipeline each), of which writes; then the commands the client sent / the commands the server ran (INFO's total_commands_processed, which counts the commands inside a Lua script beside the script call). ")
	fmt.Fprintf(w, "Memory and file: calls reaching the store (cachetest.Counter for fxsession; a counting wrapper of scs.Store for scs's memstore; scs has no file store). ")
	fmt.Fprintf(w, "scs runs the same requests with goredisstore and memstore; it has no tags and no bags (a preference is a plain value), and reads everything on every request with a cookie.\n\n")
	fmt.Fprintf(w, "| request | target | fxsession Redis: round trips (writes) | commands sent / run | scs Redis | commands | fxsession memory | scs memory | fxsession file |\n")
	fmt.Fprintf(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|\n")
	cell := func(scenario, system, store string, cmds bool) string {
		r, ok := findRow(c, scenario, system, store)
		switch {
		case !ok:
			return "–"
		case cmds:
			return fmt.Sprintf("%d / %d", r.Commands, r.ServerCommands)
		}
		return fmt.Sprintf("%d (%d)", r.RoundTrips, r.Writes)
	}
	for _, sc := range perfdoc.Scenarios {
		var tgs []string
		for _, tg := range perfdoc.CountTargets {
			if tg.Scenario == sc.Name {
				v := fmt.Sprintf("≤ %d", tg.Max)
				if tg.Min == tg.Max {
					v = fmt.Sprintf("= %d", tg.Max)
				}
				if tg.Writes {
					v += " write"
					if tg.Max != 1 {
						v += "s"
					}
				}
				tgs = append(tgs, v)
			}
		}
		target := strings.Join(tgs, ", ")
		if target == "" {
			target = "–"
		}
		fmt.Fprintf(w, "| **%s**: %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", sc.Name, sc.What, target,
			cell(sc.Name, "fxsession", "redis", false), cell(sc.Name, "fxsession", "redis", true),
			cell(sc.Name, "scs", "redis", false), cell(sc.Name, "scs", "redis", true),
			cell(sc.Name, "fxsession", "memory", false), cell(sc.Name, "scs", "memory", false),
			cell(sc.Name, "fxsession", "file", false))
	}
	fmt.Fprintf(w, "\nThe round trips in order (Redis commands, a pipeline in brackets; store calls):\n\n")
	for _, sc := range perfdoc.Scenarios {
		var parts []string
		for _, sys := range []struct{ system, store string }{{"fxsession", "redis"}, {"scs", "redis"}, {"fxsession", "memory"}, {"scs", "memory"}, {"fxsession", "file"}} {
			if r, ok := findRow(c, sc.Name, sys.system, sys.store); ok {
				parts = append(parts, fmt.Sprintf("%s %s: %s", sys.system, sys.store, r.Calls))
			}
		}
		if len(parts) > 0 {
			fmt.Fprintf(w, "- %s — %s\n", sc.Name, strings.Join(parts, "; "))
		}
	}
	fmt.Fprintln(w)
}

func bestDelta(r *results, a, b string) string {
	x, ok1 := r.best(a, "ns/op")
	y, ok2 := r.best(b, "ns/op")
	if !ok1 || !ok2 {
		return ""
	}
	return fmt.Sprintf("; fastest runs: +%.0f ns", x-y)
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
