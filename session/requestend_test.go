package session

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestCookieWrittenWhileSessionChanges: the cookie's Max-Age is decided with
// the session's lock held, so another goroutine destroying the session or
// changing its lifetime while the response begins is no data race (run with
// -race) and leaves a coherent cookie.
func TestCookieWrittenWhileSessionChanges(t *testing.T) {
	h := newHarness(t, memoryBackend(t), Config{})
	id := h.startSession(nil)
	for _, change := range []func(ctx context.Context, s *Session) error{
		func(ctx context.Context, s *Session) error { return s.Destroy(ctx, "") },
		func(ctx context.Context, s *Session) error { return s.SetLifetime(ctx, time.Hour) },
		func(ctx context.Context, s *Session) error { return s.Sync(ctx) },
	} {
		for range 50 {
			h.do(id, func(w http.ResponseWriter, r *http.Request) {
				s := sess(t, r)
				if err := s.RenewID(r.Context()); err != nil {
					t.Fatal(err)
				}
				done := make(chan struct{})
				go func() {
					defer close(done)
					_ = change(r.Context(), s)
				}()
				_, _ = w.Write([]byte("x"))
				<-done
			})
			id = h.startSession(nil)
		}
	}
}

// TestCommitPointsInTurn: commit points of one request run one after the
// other: a Sync from another goroutine while the response begins does not end
// the commit context of the other point (which failed the store write with
// "context canceled" and replaced the response with the error handler's).
func TestCommitPointsInTurn(t *testing.T) {
	h := newHarness(t, memoryBackend(t), Config{})
	id := h.startSession(nil)
	w := h.do(id, func(w http.ResponseWriter, r *http.Request) {
		s := sess(t, r)
		ctx := r.Context()
		entered, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		if err := ExtensionOf(s).OnCommit(func(ctx context.Context) error {
			first := false
			once.Do(func() { first = true })
			if first { // Sync's point: hold it while the response begins
				close(entered)
				<-release
			}
			return ctx.Err()
		}); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, "k", 1); err != nil {
			t.Fatal(err)
		}
		syncErr := make(chan error, 1)
		go func() { syncErr <- s.Sync(context.Background()) }()
		<-entered
		go func() {
			time.Sleep(20 * time.Millisecond)
			close(release)
		}()
		if _, err := w.Write([]byte("x")); err != nil {
			t.Errorf("Write: %v", err)
		}
		if err := <-syncErr; err != nil {
			t.Errorf("Sync: %v", err)
		}
	})
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s; logs: %s", w.Code, w.Body, h.logs)
	}

	// Without hooks: goroutines of one request writing and syncing at once.
	w = h.do(id, func(w http.ResponseWriter, r *http.Request) {
		s := sess(t, r)
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := range 100 {
					if err := s.Put(r.Context(), "k", g*1000+i); err != nil {
						t.Errorf("Put: %v", err)
						return
					}
					if err := s.Sync(r.Context()); err != nil {
						t.Errorf("Sync: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
	})
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
}

// TestStartWhileResponseBegins: a Start from another goroutine as the response
// begins either gets the session's cookie into the response or fails with
// ErrHeadersSent; it never succeeds without a cookie (the session then was
// never saved).
func TestStartWhileResponseBegins(t *testing.T) {
	h := newHarness(t, memoryBackend(t), Config{})
	for i := range 3000 {
		var startErr error
		w := h.do("", func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			if _, err := s.IsStarted(r.Context()); err != nil { // used, not started
				t.Fatal(err)
			}
			ready, done := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(done)
				<-ready
				startErr = s.Start(context.Background())
			}()
			close(ready)
			_, _ = w.Write([]byte("x"))
			<-done
		})
		cookie := sessionCookie(t, w, h.m.cfg.cookieName)
		switch {
		case startErr == nil && cookie == nil:
			t.Fatalf("request %d: Start succeeded, no cookie was sent", i)
		case startErr != nil && !errors.Is(startErr, ErrHeadersSent):
			t.Fatalf("request %d: Start: %v", i, startErr)
		case startErr == nil && !h.started(cookie.Value):
			t.Fatalf("request %d: the started session was not saved", i)
		}
	}
}

// TestChangeAfterRequestEnded: once the handler returned, a change from a
// goroutine it left behind is refused with ErrRequestEnded (it would never be
// saved); reads still answer from the request's view.
func TestChangeAfterRequestEnded(t *testing.T) {
	h := newHarness(t, memoryBackend(t), Config{})
	id := h.startSession(func(ctx context.Context, s *Session) error { return s.Put(ctx, "k", 1) })
	var used, unused *Session
	h.do(id, func(w http.ResponseWriter, r *http.Request) {
		used = sess(t, r)
		var v int
		if err := used.Get(r.Context(), "k", &v); err != nil || v != 1 {
			t.Fatalf("Get: %d, %v", v, err)
		}
	})
	h.do("", func(w http.ResponseWriter, r *http.Request) { unused = sess(t, r) })
	ctx := context.Background()
	for name, err := range map[string]error{
		"Put":             used.Put(ctx, "k", 2),
		"Sync":            used.Sync(ctx),
		"RenewID":         used.RenewID(ctx),
		"Destroy":         used.Destroy(ctx, ""),
		"Start (unused)":  unused.Start(ctx),
		"Put (unused)":    unused.Put(ctx, "k", 3),
		"Touch (unused)":  unused.Touch(ctx),
		"AddTag (unused)": unused.AddTag(ctx, "t"),
	} {
		if !errors.Is(err, ErrRequestEnded) {
			t.Errorf("%s after the request ended: %v, want ErrRequestEnded", name, err)
		}
	}
	var v int
	if err := used.Get(ctx, "k", &v); err != nil || v != 1 {
		t.Errorf("Get after the request ended: %d, %v", v, err)
	}
	h.do(id, func(w http.ResponseWriter, r *http.Request) {
		if err := sess(t, r).Get(r.Context(), "k", &v); err != nil || v != 1 {
			t.Errorf("the stored value: %d, %v", v, err)
		}
	})

	// A handler that panics ends its request too.
	func() {
		defer func() { _ = recover() }()
		h.do(id, func(w http.ResponseWriter, r *http.Request) {
			used = sess(t, r)
			panic("boom")
		})
	}()
	if err := used.Put(ctx, "k", 4); !errors.Is(err, ErrRequestEnded) {
		t.Errorf("Put after a panic ended the request: %v", err)
	}
}
