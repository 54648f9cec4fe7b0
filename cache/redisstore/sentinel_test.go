package redisstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/redisstore"
	"github.com/fxsession/fxsession/internal/testserver"
)

// TestSentinelFailover: a store built by Module from a Sentinel URL, under a
// load of version-checked writes; the master is SIGKILLed. Writes fail with
// ErrUnavailable (never another error) until the sentinels promote the replica,
// and the same store serves every record again within recoveryBound of the
// promotion.
func TestSentinelFailover(t *testing.T) {
	sen := testserver.StartSentinel(t)
	addrs := sen.SentinelAddrs()
	url := "redis://" + addrs[0] + "/0?master_name=" + sen.MasterName() + "&addr=" + strings.Join(addrs[1:], "&addr=")
	var s cache.Store
	app := fxtest.New(t, redisstore.Module(url, redisstore.Options{Namespace: "sen"}), fx.Populate(&s))
	app.RequireStart()
	defer app.RequireStop()
	ctx := t.Context()
	var keys []string
	for i := range 10 {
		k := cacheKey(i)
		keys = append(keys, k)
		if _, err := s.Write(ctx, k, cache.Write{Create: true, Fields: set("n", "0")}); err != nil {
			t.Fatal(err)
		}
	}
	l := newLoad(s, keys)
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	wg := l.run(lctx, 4)
	time.Sleep(500 * time.Millisecond)
	old := sen.Master()
	killed := time.Now()
	if err := old.Kill(); err != nil {
		t.Fatal(err)
	}
	p, err := sen.WaitForPromotion(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("master %s killed; %s promoted %v later", old.Addr(), p.New.Addr(), p.Detected.Sub(killed).Round(time.Millisecond))
	deadline := p.Detected.Add(recoveryBound)
	var recovered time.Time
	for time.Now().Before(deadline.Add(time.Second)) {
		l.mu.Lock()
		all := true
		recovered = time.Time{}
		for _, k := range keys {
			ok := l.lastOK[k]
			if ok.Before(killed) {
				all = false
				break
			}
			if ok.After(recovered) {
				recovered = ok
			}
		}
		l.mu.Unlock()
		if all {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	wg.Wait()
	if len(l.odd) > 0 {
		t.Errorf("%d failures were neither unavailable nor conflicts, e.g. %v", len(l.odd), l.odd[0])
	}
	if recovered.IsZero() || recovered.After(deadline) {
		t.Fatalf("the records were not all written again within %v of the promotion", recoveryBound)
	}
	failures := 0
	for _, k := range keys {
		failures += l.failures[k]
	}
	t.Logf("%d records failed %d times with ErrUnavailable and were all written again %v after the promotion (%v after the kill)",
		len(keys), failures, recovered.Sub(p.Detected).Round(time.Millisecond), recovered.Sub(killed).Round(time.Millisecond))
	lost := 0
	for _, k := range keys {
		lost += l.lost(t, k)
	}
	t.Logf("acknowledged increments lost without the durability mode: %d", lost)
}
