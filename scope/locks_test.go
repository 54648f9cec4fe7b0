package scope

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestKeyedLocks(t *testing.T) {
	var k keyedLocks
	ctx := context.Background()
	a, b := lockKey{"s1", 0}, lockKey{"s1", 1}
	la, err := k.lock(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	// Another key is independent.
	lb, err := k.lock(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	k.unlock(b, lb)
	// The same key waits, and gives up when its context ends.
	wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := k.lock(wctx, a); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lock of a held key: %v", err)
	}
	got := make(chan struct{})
	go func() {
		l, err := k.lock(ctx, a)
		if err == nil {
			k.unlock(a, l)
		}
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("a held lock was taken")
	case <-time.After(10 * time.Millisecond):
	}
	k.unlock(a, la)
	<-got
	// Many goroutines on one key: one at a time, none lost.
	var wg sync.WaitGroup
	var mu sync.Mutex
	in, n := 0, 0
	for range 8 {
		wg.Go(func() {
			for range 50 {
				l, err := k.lock(ctx, a)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				in++
				if in != 1 {
					t.Error("two holders")
				}
				n++
				mu.Unlock()
				runtime.Gosched()
				mu.Lock()
				in--
				mu.Unlock()
				k.unlock(a, l)
			}
		})
	}
	wg.Wait()
	if n != 400 || len(k.m) != 0 {
		t.Fatalf("n = %d, %d locks left", n, len(k.m))
	}
	if allocs := testing.AllocsPerRun(50, func() {
		l, _ := k.lock(ctx, a)
		k.unlock(a, l)
	}); allocs != 0 {
		t.Errorf("uncontended lock and unlock: %v allocations", allocs)
	}
}
