package reliability_test

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestPerObjectWrites: concurrent requests of one session that change different
// session-scoped objects, or different bags, all survive without Update. A
// barrier makes every request of a round load its object before any of them
// writes, so each round is the worst interleaving, not a lucky one.
func TestPerObjectWrites(t *testing.T) {
	rounds := pick(20, 200)
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			sh := newShop(t, shopConfig{Store: sharedStores(t, kind, 1)[0]})
			v := &visitor{}
			mustStatus(t, v.serve(sh.Handler, "POST", "/put?k=init&v=1"), 200, "start")
			start := time.Now()
			for round := range rounds {
				bar := "r" + strconv.Itoa(round)
				targets := []string{
					"/basket/plain?sku=tea&barrier=" + bar + "&n=4",
					"/wish/plain?sku=w" + strconv.Itoa(round) + "&barrier=" + bar + "&n=4",
					"/bag/prefs?k=p" + strconv.Itoa(round) + "&v=x&barrier=" + bar + "&n=4",
					"/bag/ui?k=u" + strconv.Itoa(round) + "&v=y&barrier=" + bar + "&n=4",
				}
				var wg sync.WaitGroup
				replies := make([]reply, len(targets))
				for i, target := range targets {
					wg.Go(func() { replies[i] = v.serve(sh.Handler, "POST", target) })
				}
				wg.Wait()
				for i, r := range replies {
					mustStatus(t, r, 200, targets[i])
				}
			}
			took := time.Since(start)
			basket := v.serve(sh.Handler, "GET", "/basket").Int(t, "count")
			wish := v.serve(sh.Handler, "GET", "/wish").Int(t, "count")
			prefs := len(v.serve(sh.Handler, "GET", "/bag/prefs").JSON(t))
			ui := len(v.serve(sh.Handler, "GET", "/bag/ui").JSON(t))
			if basket != rounds || wish != rounds || prefs != rounds || ui != rounds {
				t.Fatalf("after %d rounds: basket %d, wishlist %d, bag prefs %d, bag ui %d; want %d each",
					rounds, basket, wish, prefs, ui, rounds)
			}
			record(t, figure{
				Area:     "Concurrency",
				Check:    fmt.Sprintf("%s store: 4 concurrent requests of one session, each changing a different object (basket, wishlist) or bag (prefs, ui), without Update; all four load before any writes", kind),
				Amount:   fmt.Sprintf("%d rounds (%d requests)", rounds, 4*rounds),
				Measured: fmt.Sprintf("basket %d, wishlist %d, prefs %d, ui %d of %d each; %v", basket, wish, prefs, ui, rounds, took.Round(time.Millisecond)),
			})
		})
	}
}

// TestConcurrentUpdates: 64 concurrent Handle.Update adds to one basket, split
// over two app instances sharing the store (two registries, so the in-process
// Update queue does not help: the store's compare-and-set must), lose nothing.
func TestConcurrentUpdates(t *testing.T) {
	const concurrent = 64
	rounds := pick(2, 10)
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			backends := sharedStores(t, kind, 2)
			apps := []*shop{newShop(t, shopConfig{Store: backends[0]}), newShop(t, shopConfig{Store: backends[1]})}
			start := time.Now()
			for round := range rounds {
				v := &visitor{}
				mustStatus(t, v.serve(apps[0].Handler, "POST", "/basket/update?sku=tea"), 200, "first add")
				var wg sync.WaitGroup
				replies := make([]reply, concurrent)
				for i := range concurrent {
					wg.Go(func() { replies[i] = v.serve(apps[i%2].Handler, "POST", "/basket/update?sku=tea") })
				}
				wg.Wait()
				for i, r := range replies {
					mustStatus(t, r, 200, fmt.Sprintf("round %d add %d", round, i))
				}
				for _, app := range apps {
					if got := v.serve(app.Handler, "GET", "/basket").Int(t, "count"); got != concurrent+1 {
						t.Fatalf("round %d: basket holds %d after 1+%d adds", round, got, concurrent)
					}
				}
			}
			record(t, figure{
				Area:     "Concurrency",
				Check:    fmt.Sprintf("%s store, in process: %d concurrent Handle.Update adds to one basket, alternating between two app instances on one store", kind, concurrent),
				Amount:   fmt.Sprintf("%d baskets × (1+%d) adds", rounds, concurrent),
				Measured: fmt.Sprintf("every basket held %d; %v", concurrent+1, time.Since(start).Round(time.Millisecond)),
			})
		})
	}
}
