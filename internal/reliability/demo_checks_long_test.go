//go:build reliability

package reliability_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/fxsession/fxsession/internal/testserver"
)

// TestDemoConcurrentAdds: 64 concurrent adds to one basket through the demo's
// JSON API lose nothing: one process on the memory store, two processes sharing
// one file folder, two processes sharing one redis-server. Requests alternate
// between the processes.
func TestDemoConcurrentAdds(t *testing.T) {
	const concurrent, baskets = 64, 30
	for _, store := range []string{"memory", "file", "redis"} {
		t.Run(store, func(t *testing.T) {
			var procs []*demoProc
			switch store {
			case "memory":
				procs = append(procs, startDemo(t, "demo", "-store", "memory"))
			case "file":
				dir := t.TempDir()
				for _, n := range []string{"demo A", "demo B"} {
					procs = append(procs, startDemo(t, n, "-store", "file", "-dir", dir))
				}
			case "redis":
				r := testserver.StartRedis(t)
				for _, n := range []string{"demo A", "demo B"} {
					procs = append(procs, startDemo(t, n, "-store", "redis", "-redis-url", r.URL(), "-namespace", "adds"))
				}
			}
			tg := demoTarget(t, store, procs...)
			start := time.Now()
			var slowest time.Duration
			for b := range baskets {
				v := &visitor{}
				first := tg.add(v, tg.bases[0])
				if first.Status != 200 || v.Cookie() == "" {
					t.Fatalf("basket %d: first add: %v", b, first)
				}
				var wg sync.WaitGroup
				replies := make([]reply, concurrent)
				for i := range concurrent {
					wg.Go(func() { replies[i] = tg.add(v, tg.bases[i%len(tg.bases)]) })
				}
				wg.Wait()
				for i, r := range replies {
					if r.Err != nil || r.Status != 200 {
						t.Fatalf("basket %d, add %d: %v", b, i, r)
					}
					slowest = max(slowest, r.Took)
				}
				for _, base := range tg.bases {
					if got := demoCount(t, tg.get(v, base)); got != concurrent+1 {
						t.Fatalf("basket %d read through %s holds %d after 1+%d adds", b, base, got, concurrent)
					}
				}
			}
			record(t, figure{
				Area:     "Concurrency",
				Check:    fmt.Sprintf("demo, %s store, %d process(es): %d concurrent POST /api/basket/items (Handle.Update) to one basket, alternating between the processes", store, len(procs), concurrent),
				Amount:   fmt.Sprintf("%d baskets × (1+%d) adds = %d requests", baskets, concurrent, baskets*(concurrent+1)),
				Measured: fmt.Sprintf("every basket held %d through every process; slowest add %v; %v in all", concurrent+1, slowest.Round(time.Millisecond), time.Since(start).Round(time.Millisecond)),
			})
		})
	}
}

// TestDemoRedisFaults: two demo processes on one redis-server (append-only)
// under load while Redis is killed and frozen: /healthz and /api/products keep
// answering 200, the session routes answer 503 within the bound, both
// processes recover by themselves, and every acknowledged add is still there.
func TestDemoRedisFaults(t *testing.T) {
	r := testserver.StartRedis(t, testserver.WithAppendOnly())
	a := startDemo(t, "demo A", "-store", "redis", "-redis-url", r.URL(), "-namespace", "faults")
	b := startDemo(t, "demo B", "-store", "redis", "-redis-url", r.URL(), "-namespace", "faults")
	tg := demoTarget(t, "demo", a, b)
	const cycles = 2
	downFor := 8 * time.Second
	var kills, pauses faultStats
	load := startLoad(t, tg, 8)
	load.steady(t, 2*time.Second)
	for range cycles {
		load.faultCycle(t, &kills, "SIGKILL", r.Kill, r.Start, downFor)
		load.steady(t, 2*time.Second)
		load.faultCycle(t, &pauses, "SIGSTOP", r.Pause, r.Resume, downFor)
		load.steady(t, 2*time.Second)
	}
	load.Stop()
	acked := load.checkBaskets(t)
	requests := len(load.samples)
	record(t, figure{
		Area:   "Faults",
		Check:  "demo, two processes on one redis-server (append-only): Redis killed (SIGKILL, then restarted) and frozen (SIGSTOP, then SIGCONT) under load (8 visitors over both processes: /healthz, /api/products, GET /api/basket, POST /api/basket/items)",
		Amount: fmt.Sprintf("%d kills and %d freezes of %v each, %d requests", cycles, cycles, downFor, requests),
		Measured: joinf(
			fmt.Sprintf("non-session routes during outages: %d, all 200 (slowest %v)", kills.plainOK+pauses.plainOK, max(kills.maxPlain, pauses.maxPlain).Round(time.Millisecond)),
			fmt.Sprintf("session routes while killed: %d, all 503, median %v, slowest %v", kills.unavailable, kills.p50().Round(time.Millisecond), kills.maxUnavailable.Round(time.Millisecond)),
			fmt.Sprintf("session routes while frozen: %d, all 503, median %v, slowest %v; caught mid-request: slowest %v", pauses.unavailable, pauses.p50().Round(time.Millisecond), pauses.maxUnavailable.Round(time.Millisecond), pauses.maxCaught.Round(time.Millisecond)),
			fmt.Sprintf("recovered without restart after %v (kills) and %v (freezes)", roundAll(kills.recoveries), roundAll(pauses.recoveries)),
			fmt.Sprintf("%d acknowledged adds all present", acked),
		),
	})
}

// TestDemoGracefulShutdown: the demo on the file store gets SIGTERM while 64
// visitors keep adding; it exits 0, every add it acknowledged is in the store
// (read back by a new demo process on the same folder), and nothing it did not
// acknowledge is.
func TestDemoGracefulShutdown(t *testing.T) {
	const visitors = 64
	dir := t.TempDir()
	p := startDemo(t, "demo", "-store", "file", "-dir", dir)
	tg := demoTarget(t, "demo", p)
	vs := make([]*visitor, visitors)
	acked := make([]int, visitors)
	for i := range vs {
		vs[i] = &visitor{}
		if r := tg.add(vs[i], p.base); r.Status != 200 {
			t.Fatalf("start: %v", r)
		}
		acked[i] = 1
	}
	var mu sync.Mutex
	var termAt time.Time
	answeredAfter := 0
	var wg sync.WaitGroup
	for i, v := range vs {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 9))
			for {
				sent := time.Now()
				r := tg.add(v, p.base)
				if r.Err != nil {
					return // the server is gone
				}
				if r.Status != http.StatusOK {
					t.Errorf("an add answered %v", r)
					return
				}
				mu.Lock()
				acked[i] = demoCount(t, r)
				if !termAt.IsZero() && sent.Before(termAt) && time.Now().After(termAt) {
					answeredAfter++
				}
				mu.Unlock()
				time.Sleep(time.Duration(rng.IntN(5)) * time.Millisecond)
			}
		})
	}
	time.Sleep(2 * time.Second)
	mu.Lock()
	termAt = time.Now()
	mu.Unlock()
	took, err := p.terminate(t)
	wg.Wait()
	if err != nil {
		t.Fatalf("the demo exited with %v after SIGTERM:\n%s", err, p.out)
	}
	next := startDemo(t, "demo (restarted)", "-store", "file", "-dir", dir)
	ntg := demoTarget(t, "demo", next)
	total := 0
	for i, v := range vs {
		got := demoCount(t, ntg.get(v, next.base))
		if got != acked[i] {
			t.Fatalf("visitor %d: the restarted demo reads %d, the last acknowledged add said %d", i, got, acked[i])
		}
		total += got
	}
	record(t, figure{
		Area:   "Faults",
		Check:  "demo on the file store gets SIGTERM while 64 visitors keep adding (POST /api/basket/items)",
		Amount: fmt.Sprintf("%d visitors, %d units acknowledged", visitors, total),
		Measured: joinf(
			fmt.Sprintf("exit 0 %v after SIGTERM; %d requests sent before it were answered 200 after it", took.Round(time.Millisecond), answeredAfter),
			"a new demo process on the same folder reads exactly the last acknowledged basket of every visitor",
		),
	})
}
