package reliability_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/redisstore"
	"github.com/fxsession/fxsession/internal/testserver"
)

// updateOutcome is one Handle.Update add of the Sentinel failover load.
type updateOutcome struct {
	start, end time.Time
	status     int // 0: no HTTP answer
	n          int // the count an acknowledged add wrote
	err        string
}

func (o updateOutcome) ok() bool { return o.status == http.StatusOK }

// updateWorker sends adds for its visitor (a session shared with other
// workers) in a loop and keeps every outcome.
type updateWorker struct {
	v  *visitor
	mu sync.Mutex
	os []updateOutcome
}

// add sends one add and reads the count it wrote.
func (w *updateWorker) add(hc *http.Client, base string) updateOutcome {
	o := updateOutcome{start: time.Now()}
	r := w.v.send(hc, base, "POST", "/basket/update?sku=tea")
	o.end = time.Now()
	var body struct {
		Count *int `json:"count"`
	}
	switch {
	case r.Err != nil:
		o.err = r.Err.Error()
	case r.Status != http.StatusOK:
		o.status, o.err = r.Status, strings.TrimSpace(string(r.Body))
	case json.Unmarshal(r.Body, &body) != nil || body.Count == nil:
		o.err = fmt.Sprintf("bad answer %q", r.Body)
	default:
		o.status, o.n = r.Status, *body.Count
	}
	return o
}

func (w *updateWorker) run(hc *http.Client, base string, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		o := w.add(hc, base)
		w.mu.Lock()
		w.os = append(w.os, o)
		w.mu.Unlock()
		if !o.ok() {
			time.Sleep(10 * time.Millisecond) // no busy loop while the store is away
		}
	}
}

func (w *updateWorker) outcomes() []updateOutcome {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.os)
}

// TestSentinelFailoverUnderUpdates runs the test shop (session and scope,
// Handle.Update adds to a session-scoped basket) on redisstore over Sentinel,
// with the client and store an app builds (redisstore.NewClient's defaults from
// the master name and the sentinels' addresses), under a load of adds from two
// goroutines per session; SIGKILLs the master mid-load; and checks that the adds
// fail as unavailable (503, never otherwise) for a while and then succeed again,
// with the same app, store and client, within 30 s of the sentinels' promotion.
// Asynchronous replication may roll back acknowledged adds in the failover: the
// test counts them (each count acknowledged twice is one lost add) and reports
// the figure, but does not require zero (redisstore's durability mode, tested
// in its package, does).
func TestSentinelFailoverUnderUpdates(t *testing.T) {
	const (
		sessions    = 4
		perSession  = 2
		warmAcks    = 50               // acknowledged adds per worker before the kill (and 1 s at least)
		recoverWith = 30 * time.Second // bound from the promotion to working adds
	)
	s := testserver.StartSentinel(t)
	client := redisstore.NewClient(redis.UniversalOptions{MasterName: s.MasterName(), Addrs: s.SentinelAddrs()})
	t.Cleanup(func() { _ = client.Close() })
	store, err := redisstore.New(client, redisstore.Options{Namespace: cachetest.Namespace("failover")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	sh := newShop(t, shopConfig{Store: store})
	srv := httptest.NewServer(sh.Handler)
	t.Cleanup(srv.Close) // before the shop stops
	hc := httpClient(t)

	var workers []*updateWorker
	var visitors []*visitor
	first := make(map[*visitor]updateOutcome)
	for range sessions {
		w := &updateWorker{v: &visitor{}}
		o := w.add(hc, srv.URL)
		if !o.ok() || w.v.Cookie() == "" || o.n != 1 {
			t.Fatalf("first add: status %d, n %d, cookie %q: %s", o.status, o.n, w.v.Cookie(), o.err)
		}
		visitors = append(visitors, w.v)
		first[w.v] = o
		workers = append(workers, w)
		for range perSession - 1 {
			workers = append(workers, &updateWorker{v: w.v})
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { w.run(hc, srv.URL, stop) })
	}
	stopLoad := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopLoad()

	// waitUntil polls cond every 20 ms for up to limit.
	waitUntil := func(limit time.Duration, what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for !cond() {
			if time.Now().After(deadline) {
				stopLoad()
				t.Fatalf("%s: not after %v", what, limit)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	loadStart := time.Now()
	waitUntil(60*time.Second, "warm-up", func() bool {
		if time.Since(loadStart) < time.Second {
			return false
		}
		for _, w := range workers {
			if n := countAcked(w.outcomes()); n < warmAcks {
				return false
			}
		}
		return true
	})

	old := s.Master()
	killed := time.Now() // Kill returns once the process is gone
	if err := old.Kill(); err != nil {
		t.Fatal(err)
	}
	warm := killed.Sub(loadStart)
	p, err := s.WaitForPromotion(t.Context(), old)
	if err != nil {
		stopLoad()
		t.Fatal(err)
	}
	// Every worker's adds succeed again: five in a row started after the promotion.
	waitUntil(recoverWith, "adds working again after the promotion", func() bool {
		for _, w := range workers {
			os := w.outcomes()
			if len(os) < 5 {
				return false
			}
			for _, o := range os[len(os)-5:] {
				if !o.ok() || o.start.Before(p.Detected) {
					return false
				}
			}
		}
		return true
	})
	// Go on until every session's count is past the highest acknowledged before
	// the kill, so that each add the failover rolled back has had its count
	// acknowledged a second time (see lostAcks).
	waitUntil(60*time.Second, "counts past their pre-kill highs", func() bool {
		for _, v := range visitors {
			var before, after int
			for _, w := range workers {
				if w.v != v {
					continue
				}
				for _, o := range w.outcomes() {
					switch {
					case !o.ok():
					case o.start.Before(killed): // the old master's, or later
						before = max(before, o.n)
					case !o.start.Before(p.Detected):
						after = max(after, o.n)
					}
				}
			}
			if after <= before {
				return false
			}
		}
		return true
	})
	stopLoad()
	end := time.Now()

	f := summarizeFailover(workers, killed)
	var dupLost, countLost int
	for _, v := range visitors {
		ns := []int{first[v].n}
		for _, w := range workers {
			if w.v == v {
				for _, o := range w.outcomes() {
					if o.ok() {
						ns = append(ns, o.n)
					}
				}
			}
		}
		r := v.send(hc, srv.URL, "GET", "/basket")
		if r.Err != nil || r.Status != http.StatusOK {
			t.Fatalf("final count: %v", r)
		}
		dupLost += lostAcks(ns)
		countLost += max(0, len(ns)-r.Int(t, "count"))
	}
	acked := f.acked + sessions // and the first adds
	since := func(at time.Time) string { return at.Sub(killed).Round(time.Millisecond).String() }
	load := fmt.Sprintf("%d sessions × %d workers; %d adds in %v (%d acknowledged, %d failed); %d acknowledged in the %v before the kill (%.0f adds/s)",
		sessions, perSession, acked+f.failed, end.Sub(loadStart).Round(time.Millisecond), acked, f.failed,
		f.beforeKill, warm.Round(time.Millisecond), float64(f.beforeKill)/warm.Seconds())
	t.Log("load: " + load)
	failover := fmt.Sprintf("promotion seen at +%v", since(p.Detected))
	if f.failed > 0 {
		failover = fmt.Sprintf("promotion seen at +%v; adds failed from +%v to +%v (%d with 503); all workers succeeding from +%v, %v after the promotion",
			since(p.Detected), since(f.firstFail), since(f.lastFail), f.unavailable, since(f.recovered), f.recovered.Sub(p.Detected).Round(time.Millisecond))
	}
	t.Log("after the kill: " + failover)
	lost := fmt.Sprintf("%d acknowledged adds lost in the failover (rolled-back counts acknowledged twice); acknowledged minus final counts: %d; of %d acknowledged",
		dupLost, countLost, acked)
	t.Log(lost)

	if f.unavailable == 0 {
		t.Errorf("no add failed with 503 while the master was dead")
	}
	if len(f.others) > 0 {
		t.Errorf("%d adds failed otherwise than with 503 (unavailable), e.g. %q", f.failed-f.unavailable, f.others)
	}
	if d := f.recovered.Sub(p.Detected); d > recoverWith {
		t.Errorf("adds worked again %v after the promotion, want within %v", d, recoverWith)
	}
	record(t, figure{
		Area:     "Faults",
		Check:    "Redis Sentinel (master, replica, 3 sentinels; client from redisstore.NewClient with the master name): the master SIGKILLed under Handle.Update adds (test shop, 2 goroutines per session)",
		Amount:   load,
		Lost:     fmt.Sprintf("%d of %d acknowledged adds (asynchronous replication; without redisstore's durability mode a failover may roll back acknowledged writes)", dupLost, acked),
		Measured: joinf(failover, "every failure a 503 (unavailable)", "same app, store and client throughout", lost),
	})
}

// failoverFigures sum up the workers' outcomes.
type failoverFigures struct {
	acked, failed, unavailable int
	beforeKill                 int      // acknowledged adds that ended before the kill
	others                     []string // a few failures other than 503
	firstFail, lastFail        time.Time
	recovered                  time.Time // when every worker had succeeded after its last failure
}

func summarizeFailover(workers []*updateWorker, killed time.Time) failoverFigures {
	var f failoverFigures
	for _, w := range workers {
		os := w.outcomes()
		var lastFail time.Time
		for _, o := range os {
			if o.ok() {
				f.acked++
				if o.end.Before(killed) {
					f.beforeKill++
				}
				continue
			}
			f.failed++
			if o.status == http.StatusServiceUnavailable {
				f.unavailable++
			} else if len(f.others) < 5 {
				f.others = append(f.others, fmt.Sprintf("status %d: %s", o.status, o.err))
			}
			if f.firstFail.IsZero() || o.end.Before(f.firstFail) {
				f.firstFail = o.end
			}
			f.lastFail = later(f.lastFail, o.end)
			lastFail = o.end
		}
		for _, o := range os {
			if o.ok() && o.start.After(lastFail) {
				f.recovered = later(f.recovered, o.end)
				break
			}
		}
	}
	return f
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// lostAcks counts the acknowledged adds a rollback undid, from the counts the
// acknowledged adds of one session wrote. Update is a compare-and-set, so on
// one timeline every count is written once; after a failover that lost the
// adds that wrote counts m+1..k, the new master goes on from m and writes
// those counts again. Each count acknowledged twice is one lost add (an add
// that failed but was applied on the new master only makes this an undercount).
func lostAcks(ns []int) int {
	seen := map[int]int{}
	lost := 0
	for _, n := range ns {
		if seen[n] > 0 {
			lost++
		}
		seen[n]++
	}
	return lost
}

// countAcked counts the acknowledged adds.
func countAcked(os []updateOutcome) int {
	n := 0
	for _, o := range os {
		if o.ok() {
			n++
		}
	}
	return n
}
