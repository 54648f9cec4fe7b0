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
//
// The holders do not sleep: A and B wait at a barrier of the shop (after they
// took the lock and loaded the basket) until the test releases them, and the
// test polls the barrier to know that a holder is inside its handler. The only
// clock the test waits on is the lock's own lifetime: B is sent once LockTTL
// has passed since A was seen holding the lock, so A's lock has expired for
// sure. A stall can only delay steps, never reorder them; what must stay
// inside a live lock (the refused writer while A holds it, C and B's release
// while B holds it) takes far less than LockTTL.
func TestExclusiveLock(t *testing.T) {
	const (
		ttl   = 1500 * time.Millisecond
		slack = 2 * time.Second // for the Took bounds: a loaded 2-core machine under -race
	)
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
	lostWarnings := func() []string { return sh.Logs.Matching("session lock lost or not released") }

	// A cookieless request through Exclusive starts a session without locking.
	v := &visitor{}
	locks := counting.Locks()
	mustStatus(t, v.serve(sh.Handler, "POST", "/excl/basket/plain?sku=tea"), 200, "first add")
	if n := counting.Locks() - locks; n != 0 {
		t.Fatalf("a request without a session took %d lock calls", n)
	}

	// A takes the lock and holds it (waits at its barrier) until released.
	const barA, barB = "excl-holder-a", "excl-holder-b"
	aDone := make(chan reply, 1)
	go func() {
		aDone <- v.serve(sh.Handler, "POST", "/excl/basket/plain?sku=a&barrier="+barA+"&n=2")
	}()
	aHeld := awaitHolder(t, sh, barA, aDone, "the first holder")

	// While A holds it: a second writer gets a clear 503 within LockWait; a
	// read-only route through Exclusive answers at once, without lock calls.
	busy := v.serve(sh.Handler, "POST", "/excl/basket/plain?sku=b")
	if busy.Status != http.StatusServiceUnavailable || !strings.Contains(string(busy.Body), "timed out waiting for the session lock") {
		t.Fatalf("a writer while the lock is held: %v; want 503 naming the lock", busy)
	}
	if busy.Took > cfg.LockWait+slack {
		t.Fatalf("the busy answer took %v (LockWait %v)", busy.Took, cfg.LockWait)
	}
	locks = counting.Locks()
	ro := v.serve(sh.Handler, "GET", "/ro/excl/basket")
	mustStatus(t, ro, 200, "a read-only route while the lock is held")
	if n := counting.Locks() - locks; n != 0 || ro.Took > slack {
		t.Fatalf("the read-only route took %d lock calls and %v", n, ro.Took)
	}

	// B arrives after A's lock expired (A took it before aHeld; the store
	// expires it LockTTL later): it gets the lock although A still runs.
	time.Sleep(time.Until(aHeld.Add(ttl)))
	bDone := make(chan reply, 1)
	go func() {
		bDone <- v.serve(sh.Handler, "POST", "/excl/basket/plain?sku=b&barrier="+barB+"&n=2")
	}()
	awaitHolder(t, sh, barB, bDone, "a writer after the first holder's lifetime")

	// A ends and releases with its own token: B's lock must stay, and A's
	// release is reported once.
	releaseHolder(t, sh, barA, aDone, "the first holder")
	a := <-aDone
	mustStatus(t, a, 200, "the holder that outlived its lock")
	if w := lostWarnings(); len(w) != 1 {
		t.Fatalf("warnings after the expired holder's release: %q; want one", w)
	}
	c := v.serve(sh.Handler, "POST", "/excl/basket/plain?sku=c")
	if c.Status != http.StatusServiceUnavailable {
		t.Fatalf("after the expired holder released, a third writer got in while the new holder runs: %v", c)
	}
	cAfterA := time.Since(aHeld)

	// B ends and releases its own lock: no further warning, and the lock is free
	// at once.
	releaseHolder(t, sh, barB, bDone, "the second holder")
	b := <-bDone
	mustStatus(t, b, 200, "the holder that took the expired lock")
	if w := lostWarnings(); len(w) != 1 {
		t.Fatalf("warnings after both holders released: %q; want only the expired holder's", w)
	}
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
			fmt.Sprintf("a request arriving after the holder's lifetime got the lock; the late holder's release (after %v) left it in place: a third writer %v after the first holder took the lock was refused; one warning %q", a.Took.Round(time.Millisecond), cAfterA.Round(time.Millisecond), "session lock lost or not released"),
		),
	})
}

// awaitHolder waits until the request sent with barrier name (whose reply
// comes on done) is inside its handler, waiting at the barrier: for a route
// behind Exclusive, holding the lock. It returns when it saw it there.
func awaitHolder(t *testing.T, sh *shop, name string, done <-chan reply, what string) time.Time {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if sh.barrier.arrived(name) == 1 {
			return time.Now()
		}
		select {
		case r := <-done:
			t.Fatalf("%s answered before it reached its handler's barrier: %v", what, r)
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not reach its handler's barrier within 30 s", what)
		}
	}
}

// releaseHolder lets the holder waiting at barrier name go on. The barrier also
// lets a waiter go after 10 s; a holder that already answered failed the
// ordering the test depends on.
func releaseHolder(t *testing.T, sh *shop, name string, done <-chan reply, what string) {
	t.Helper()
	select {
	case r := <-done:
		t.Fatalf("%s answered before the test released it (the barrier's 10 s fallback?): %v", what, r)
	default:
	}
	sh.barrier.wait(name, 2)
}

// arrived is how many requests wait at barrier name (0 before the first and
// after it opened).
func (b *barriers) arrived(name string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if br := b.m[name]; br != nil {
		return br.seen
	}
	return 0
}
