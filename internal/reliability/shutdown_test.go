package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// shutdownLoad runs one goroutine per visitor, each sending add after add
// until a request fails or stop is closed, and records what was acknowledged.
type shutdownLoad struct {
	mu       sync.Mutex
	acked    []int // 200 answers per visitor
	attempts []int
	inflight int // requests under way when the shutdown began, all answered 200
	failures []string
}

// TestGracefulShutdown: the app is shut down (http.Server.Shutdown, as the
// demo's fx stop hook does) while every visitor has an add in flight whose
// handler is still working; every in-flight request is answered 200 and its
// change is in the store when a fresh app reads it.
func TestGracefulShutdown(t *testing.T) {
	visitors := pick(16, 64)
	dir := t.TempDir()
	sh := newShop(t, shopConfig{Store: fileStore(t, dir)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The server notes when each request's handler began: a request is in
	// flight at the shutdown when its handler began before it (a request the
	// client sent on a keep-alive connection the server was just closing never
	// reached a handler, and the client sees a reset).
	var begunMu sync.Mutex
	begun := map[string]time.Time{}
	track := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.URL.Query().Get("req"); id != "" {
			begunMu.Lock()
			begun[id] = time.Now()
			begunMu.Unlock()
		}
		sh.Handler.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: track, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	base := "http://" + ln.Addr().String()
	hc := httpClient(t)

	vs := make([]*visitor, visitors)
	l := &shutdownLoad{acked: make([]int, visitors), attempts: make([]int, visitors)}
	for i := range vs {
		vs[i] = &visitor{}
		mustStatus(t, vs[i].send(hc, base, "POST", "/basket/update?sku=tea"), 200, "start")
		l.acked[i], l.attempts[i] = 1, 1
	}
	var shutdownAt time.Time
	var atMu sync.Mutex
	var wg sync.WaitGroup
	for i, v := range vs {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 3))
			for n := 0; ; n++ {
				id := strconv.Itoa(i) + "-" + strconv.Itoa(n)
				target := "/basket/plain?sku=tea&req=" + id + "&sleep_ms=" + strconv.Itoa(20+rng.IntN(130))
				l.mu.Lock()
				l.attempts[i]++
				l.mu.Unlock()
				r := v.send(hc, base, "POST", target)
				atMu.Lock()
				at := shutdownAt
				atMu.Unlock()
				begunMu.Lock()
				began, reached := begun[id]
				begunMu.Unlock()
				inflight := reached && !at.IsZero() && began.Before(at)
				l.mu.Lock()
				switch {
				case r.Err == nil && r.Status == 200:
					l.acked[i]++
					if inflight {
						l.inflight++
					}
				case inflight:
					l.failures = append(l.failures, r.String())
				case reached:
					l.failures = append(l.failures, "a request that reached its handler failed: "+r.String())
				}
				l.mu.Unlock()
				if r.Err != nil || r.Status != 200 {
					return // the server is gone
				}
			}
		})
	}
	time.Sleep(pick(400*time.Millisecond, 2*time.Second))
	atMu.Lock()
	shutdownAt = time.Now()
	atMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	took := time.Since(shutdownAt)
	wg.Wait()
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("serve: %v", err)
	}
	if err := sh.Stop(); err != nil {
		t.Fatal(err)
	}
	if len(l.failures) > 0 {
		t.Fatalf("requests in flight at the shutdown failed: %v", l.failures)
	}
	if l.inflight == 0 {
		t.Fatal("no request was in flight at the shutdown")
	}

	// A fresh app on the same folder reads every basket.
	next := newShop(t, shopConfig{Store: fileStore(t, dir)})
	total := 0
	for i, v := range vs {
		got := v.serve(next.Handler, "GET", "/basket").Int(t, "count")
		if got != l.acked[i] {
			t.Fatalf("visitor %d: basket holds %d after the restart, %d adds were acknowledged (%d attempted)", i, got, l.acked[i], l.attempts[i])
		}
		total += got
	}
	record(t, figure{
		Area:   "Faults",
		Check:  "graceful shutdown (http.Server.Shutdown, as the demo's stop hook) of the test shop on the file store while every visitor has an add in flight (handlers working 20–150 ms after changing the basket)",
		Amount: fmt.Sprintf("%d visitors, %d adds acknowledged, %d in flight at the shutdown", visitors, total, l.inflight),
		Measured: joinf(
			fmt.Sprintf("all %d in-flight requests answered 200; shutdown took %v", l.inflight, took.Round(time.Millisecond)),
			"a fresh app on the same folder reads exactly the acknowledged count in every basket",
		),
	})
}
