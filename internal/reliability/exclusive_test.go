package reliability_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/internal/reliability"
	"github.com/fxsession/fxsession/session"
)

// exclusiveServers starts two app servers of kind sharing one store: memory
// in this process (two apps on one store), file and Redis as two child
// processes. It returns how to send a request to server i.
func exclusiveServers(t *testing.T, kind string, lockWait time.Duration) (send func(v *visitor, i int, method, target string) reply, procs int) {
	t.Helper()
	cfg := session.Config{LockWait: lockWait}
	switch kind {
	case "memory":
		b := memStore(t)
		apps := []*shop{newShop(t, shopConfig{Store: b, Session: cfg}), newShop(t, shopConfig{Store: b, Session: cfg})}
		return func(v *visitor, i int, method, target string) reply {
			return v.serve(apps[i%2].Handler, method, target)
		}, 1
	case "file", "redis":
		env := []string{envStore + "=" + kind, envLockWait + "=" + lockWait.String()}
		if kind == "file" {
			env = append(env, envDir+"="+t.TempDir())
		} else {
			env = append(env, envRedisAddr+"="+sharedRedis(t).Addr(), envNS+"="+cachetest.Namespace("excl"))
		}
		bases := []string{startShopProcess(t, env...), startShopProcess(t, env...)}
		hc := httpClient(t)
		return func(v *visitor, i int, method, target string) reply {
			return v.send(hc, bases[i%2], method, target)
		}, 2
	}
	t.Fatalf("unknown store %q", kind)
	return nil, 0
}

// TestExclusiveConcurrentAdds: 64 concurrent read-change-write requests of one
// session that do not use Update (Get, change, 5 ms more work, commit) lose
// nothing behind session.Exclusive, across two app servers (two processes for
// the file and Redis stores). Without the lock the same requests lose updates:
// the control shows that the check can fail.
func TestExclusiveConcurrentAdds(t *testing.T) {
	const concurrent = 64
	baskets := pick(1, 10)
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			send, procs := exclusiveServers(t, kind, 30*time.Second)
			run := func(route string) (counts []int, slowest time.Duration) {
				for range baskets {
					v := &visitor{}
					mustStatus(t, send(v, 0, "POST", route+"?sku=tea"), 200, "first add")
					var wg sync.WaitGroup
					replies := make([]reply, concurrent)
					for i := range concurrent {
						wg.Go(func() { replies[i] = send(v, i, "POST", route+"?sku=tea&sleep_ms=5") })
					}
					wg.Wait()
					for i, r := range replies {
						mustStatus(t, r, 200, fmt.Sprintf("%s add %d", route, i))
						slowest = max(slowest, r.Took)
					}
					counts = append(counts, send(v, 1, "GET", "/basket").Int(t, "count"))
				}
				return counts, slowest
			}
			locked, slowest := run("/excl/basket/plain")
			for _, n := range locked {
				if n != concurrent+1 {
					t.Fatalf("behind Exclusive: baskets hold %v after 1+%d adds each", locked, concurrent)
				}
			}
			unlocked, _ := run("/basket/plain")
			lost := 0
			for _, n := range unlocked {
				lost += concurrent + 1 - n
			}
			if lost == 0 {
				t.Fatalf("control: without the lock no update was lost (%v): the check cannot tell", unlocked)
			}
			record(t, figure{
				Area:     "Concurrency",
				Check:    fmt.Sprintf("%s store, %d process(es), two app servers: %d concurrent read-change-write requests of one session without Update (Get, change, 5 ms of work, commit), behind session.Exclusive", kind, procs, concurrent),
				Amount:   fmt.Sprintf("%d basket(s) × (1+%d) requests", baskets, concurrent),
				Measured: fmt.Sprintf("every basket held %d (slowest request %v, waiting its turn); control without Exclusive: %d of %d updates lost", concurrent+1, slowest.Round(time.Millisecond), lost, baskets*concurrent),
			})
		})
	}
}

// TestExclusiveLock: the lock's wait timeout (a clear 503 within LockWait), its
// lifetime (a holder that outlives LockTTL loses the lock to the next request),
// the owner token (that late holder's release leaves the new holder's lock in
// place), and read-only and cookieless requests that never lock.
func TestExclusiveLock(t *testing.T) {
	const ttl = 1500 * time.Millisecond
	mem := memStore(t)
	counting := reliability.NewCounting(mem)
	var handled []error
	var hmu sync.Mutex
	cfg := session.Config{
		LockTTL:  ttl,
		LockWait: ttl / 10,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			hmu.Lock()
			handled = append(handled, err)
			hmu.Unlock()
			apiError(w, err)
		},
	}
	sh := newShop(t, shopConfig{Store: counting, Session: cfg})

	// A cookieless request through Exclusive starts a session without locking.
	v := &visitor{}
	locks := counting.Locks()
	mustStatus(t, v.serve(sh.Handler, "POST", "/excl/basket/plain?sku=tea"), 200, "first add")
	if n := counting.Locks() - locks; n != 0 {
		t.Fatalf("a request without a session took %d lock calls", n)
	}

	// A holds the lock past its lifetime.
	aDone := make(chan reply, 1)
	aStart := time.Now()
	go func() {
		aDone <- v.serve(sh.Handler, "POST", fmt.Sprintf("/excl/basket/plain?sku=a&sleep_ms=%d", (22*ttl/10).Milliseconds()))
	}()
	time.Sleep(ttl / 2)

	// While A holds it: a second writer gets a clear 503 within LockWait; a
	// read-only route through Exclusive answers at once, without lock calls.
	busy := v.serve(sh.Handler, "POST", "/excl/basket/plain?sku=b")
	if busy.Status != http.StatusServiceUnavailable || !strings.Contains(string(busy.Body), "timed out waiting for the session lock") {
		t.Fatalf("a writer while the lock is held: %v; want 503 naming the lock", busy)
	}
	if busy.Took > cfg.LockWait+300*time.Millisecond {
		t.Fatalf("the busy answer took %v (LockWait %v)", busy.Took, cfg.LockWait)
	}
	locks = counting.Locks()
	ro := v.serve(sh.Handler, "GET", "/ro/excl/basket")
	mustStatus(t, ro, 200, "a read-only route while the lock is held")
	if n := counting.Locks() - locks; n != 0 || ro.Took > 200*time.Millisecond {
		t.Fatalf("the read-only route took %d lock calls and %v", n, ro.Took)
	}

	// B arrives after A's lock expired: it gets the lock although A still runs.
	time.Sleep(15*ttl/10 - time.Since(aStart))
	bDone := make(chan reply, 1)
	go func() {
		bDone <- v.serve(sh.Handler, "POST", fmt.Sprintf("/excl/basket/plain?sku=b&sleep_ms=%d", (95*ttl/100).Milliseconds()))
	}()

	// A ends and releases with its own token: B's lock must stay.
	a := <-aDone
	mustStatus(t, a, 200, "the holder that outlived its lock")
	c := v.serve(sh.Handler, "POST", "/excl/basket/plain?sku=c")
	if c.Status != http.StatusServiceUnavailable {
		t.Fatalf("after the expired holder released, a third writer got in while the new holder runs: %v", c)
	}
	cAt := time.Since(aStart)
	b := <-bDone
	mustStatus(t, b, 200, "the holder that took the expired lock")
	lostWarn := sh.Logs.Matching("session lock lost or not released")
	if len(lostWarn) != 1 {
		t.Fatalf("warnings about the expired holder's release: %q", lostWarn)
	}
	// After B released properly, the lock is free at once.
	mustStatus(t, v.serve(sh.Handler, "POST", "/excl/basket/plain?sku=d"), 200, "a writer after the holder released")

	hmu.Lock()
	defer hmu.Unlock()
	if len(handled) != 2 || !errors.Is(handled[0], session.ErrLockTimeout) || !errors.Is(handled[1], session.ErrLockTimeout) {
		t.Fatalf("the refusals reached the error handler with %v", handled)
	}
	record(t, figure{
		Area:   "Concurrency",
		Check:  fmt.Sprintf("session.Exclusive lock semantics (LockTTL %v, LockWait %v): wait timeout, lifetime, owner token on release, read-only and cookieless requests", ttl, cfg.LockWait),
		Amount: "1 holder outliving its lock, 1 taker of the expired lock, 2 refused writers, 1 read-only and 1 cookieless request",
		Measured: joinf(
			fmt.Sprintf("writer while held: 503 after %v %s (matches ErrLockTimeout)", busy.Took.Round(time.Millisecond), strings.TrimSpace(string(busy.Body))),
			fmt.Sprintf("read-only route through Exclusive while held: 200 after %v, 0 lock calls", ro.Took.Round(time.Millisecond)),
			"cookieless request: 0 lock calls",
			fmt.Sprintf("a request arriving after the holder's lifetime got the lock; the late holder's release (%v) left it in place: a third writer at %v was refused; one warning %q", (22*ttl/10), cAt.Round(time.Millisecond), "session lock lost or not released"),
		),
	})
}
