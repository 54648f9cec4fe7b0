package session

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestExclusive: a read-modify-write handler that is not atomic loses updates
// under concurrency; through Exclusive, 64 concurrent requests of one session
// lose none.
func TestExclusive(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		// A generous LockWait: 64 requests queue for one lock on a loaded machine.
		h := newHarness(t, b, Config{LockWait: time.Minute})
		id := h.startSession(func(ctx context.Context, s *Session) error { return s.Put(ctx, "n", 0) })
		incr := func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			var n int
			if err := s.Get(r.Context(), "n", &n); err != nil {
				t.Errorf("Get: %v", err)
				return
			}
			time.Sleep(time.Millisecond) // widen the race window
			if err := s.Put(r.Context(), "n", n+1); err != nil {
				t.Errorf("Put: %v", err)
			}
		}
		const n = 64
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				w := h.do(id, Exclusive(http.HandlerFunc(incr)).ServeHTTP)
				if w.Code != http.StatusOK {
					t.Errorf("status %d: %s", w.Code, w.Body)
				}
			})
		}
		wg.Wait()
		var got int
		h.do(id, func(w http.ResponseWriter, r *http.Request) {
			if err := sess(t, r).Get(r.Context(), "n", &got); err != nil {
				t.Errorf("Get: %v", err)
			}
		})
		if got != n {
			t.Fatalf("counter = %d after %d exclusive increments", got, n)
		}
	})
}

// TestExclusiveTimeout: a request that cannot get the lock within LockWait is
// answered by the error handler with ErrLockTimeout, and writes nothing.
func TestExclusiveTimeout(t *testing.T) {
	var handled error
	h := newHarness(t, memoryBackend(t), Config{LockWait: 50 * time.Millisecond, ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
		handled = err
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}})
	id := h.startSession(func(ctx context.Context, s *Session) error { return s.Put(ctx, "v", "old") })

	// Another process holds the session's lock.
	token, err := h.m.store.Lock(context.Background(), "lock."+id[:RefLength], time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ran := false
	start := time.Now()
	w := h.do(id, Exclusive(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ran = true
		_ = sess(t, r).Put(r.Context(), "v", "new")
	})).ServeHTTP)
	if w.Code != http.StatusServiceUnavailable || ran || !errors.Is(handled, ErrLockTimeout) {
		t.Fatalf("status %d, handler ran %v, error %v", w.Code, ran, handled)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("gave up after %v, LockWait is 50ms", d)
	}
	if ok, err := h.m.store.Unlock(context.Background(), "lock."+id[:RefLength], token); !ok || err != nil {
		t.Fatalf("the other owner's lock was disturbed: %v %v", ok, err)
	}
	var v string
	h.do(id, func(w http.ResponseWriter, r *http.Request) { _ = sess(t, r).Get(r.Context(), "v", &v) })
	if v != "old" {
		t.Fatalf("v = %q", v)
	}
}

// TestExclusiveSkips: read-only routes and requests without a session never lock.
func TestExclusiveSkips(t *testing.T) {
	h := newHarness(t, memoryBackend(t), Config{LockWait: 20 * time.Millisecond})
	id := h.startSession(nil)
	if _, err := h.m.store.Lock(context.Background(), "lock."+id[:RefLength], time.Minute); err != nil {
		t.Fatal(err)
	}
	ran := 0
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ran++ })
	if w := h.do(id, ReadOnly(Exclusive(next)).ServeHTTP); w.Code != http.StatusOK {
		t.Fatalf("read-only route: %d", w.Code)
	}
	if w := h.do("", Exclusive(next).ServeHTTP); w.Code != http.StatusOK {
		t.Fatalf("no-cookie route: %d", w.Code)
	}
	if ran != 2 {
		t.Fatalf("handler ran %d times, want 2", ran)
	}
}
