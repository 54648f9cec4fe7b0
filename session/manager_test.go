package session

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache"
)

func TestTagsAndAdmin(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b cache.Backend) {
		h := newHarness(t, b, Config{})
		ctx := context.Background()
		tag := func(tags ...string) func(context.Context, *Session) error {
			return func(ctx context.Context, s *Session) error {
				for _, tg := range tags {
					if err := s.AddTag(ctx, tg); err != nil {
						return err
					}
				}
				return s.Put(ctx, "k", "v")
			}
		}
		alice1 := h.startSession(tag("user:alice", "admin"))
		alice2 := h.startSession(tag("user:alice"))
		bob := h.startSession(tag("user:bob"))
		anon := h.startSession(nil)

		h.do(bob, func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			if err := s.AddTag(r.Context(), "bad tag"); !errors.Is(err, cache.ErrInvalidKey) {
				t.Errorf("AddTag with a space = %v", err)
			}
			if err := s.RemoveTag(r.Context(), "user:bob"); err != nil {
				t.Error(err)
			}
			if err := s.AddTag(r.Context(), "user:robert"); err != nil {
				t.Error(err)
			}
		})

		var all []Metadata
		for md, err := range h.m.All(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, md)
		}
		if len(all) != 4 {
			t.Fatalf("All = %d sessions, want 4", len(all))
		}
		for _, md := range all {
			if len(md.Hash) != HashLength || md.Created.IsZero() || md.Expires.IsZero() {
				t.Errorf("metadata %+v", md)
			}
		}
		hashes := func(tag string) []string {
			var out []string
			for md, err := range h.m.ByTag(ctx, tag) {
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, md.Hash)
			}
			slices.Sort(out)
			return out
		}
		want := []string{hashID(alice1), hashID(alice2)}
		slices.Sort(want)
		if got := hashes("user:alice"); !slices.Equal(got, want) {
			t.Errorf("ByTag(user:alice) = %v, want %v", got, want)
		}
		if got := hashes("user:bob"); len(got) != 0 {
			t.Errorf("ByTag(user:bob) after RemoveTag = %v", got)
		}
		if got := hashes("user:robert"); !slices.Equal(got, []string{hashID(bob)}) {
			t.Errorf("ByTag(user:robert) = %v", got)
		}

		// Admin access by ID and by hash.
		s, err := h.m.Session(ctx, hashID(alice1))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.ID(ctx); !errors.Is(err, ErrNotFound) {
			t.Errorf("ID of a session opened by hash = %v, want ErrNotFound", err)
		}
		byID, err := h.m.Session(ctx, alice1)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := byID.ID(ctx); got != alice1 {
			t.Errorf("ID of a session opened by ID = %q", got)
		}
		tags, _ := s.Tags(ctx)
		if !slices.Equal(tags, []string{"user:alice", "admin"}) {
			t.Errorf("Tags = %v", tags)
		}
		var v string
		if err := s.Get(ctx, "k", &v); err != nil || v != "v" {
			t.Errorf("admin Get = %q, %v", v, err)
		}
		if _, err := h.m.Session(ctx, newID()); !errors.Is(err, ErrNotFound) {
			t.Errorf("Session(unknown) = %v", err)
		}
		if _, err := h.m.Session(ctx, "nonsense"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Session(nonsense) = %v", err)
		}

		n, err := h.m.DestroyByTag(ctx, "user:alice", "logout everywhere")
		if err != nil || n != 2 {
			t.Errorf("DestroyByTag = %d, %v; want 2", n, err)
		}
		for _, id := range []string{alice1, alice2} {
			h.do(id, func(w http.ResponseWriter, r *http.Request) {
				if ok, _ := sess(t, r).IsStarted(r.Context()); ok {
					t.Error("session survived DestroyByTag")
				}
			})
		}
		ok, err := h.m.Destroy(ctx, anon, "admin")
		if !ok || err != nil {
			t.Errorf("Destroy = %v, %v", ok, err)
		}
		if ok, _ := h.m.Destroy(ctx, anon, "again"); ok {
			t.Error("Destroy of a destroyed session reported true")
		}
		n, err = h.m.DestroyAll(ctx)
		if err != nil || n != 1 {
			t.Errorf("DestroyAll = %d, %v; want 1", n, err)
		}
		if left := h.storedEntries(); len(left) != 0 {
			t.Errorf("entries after DestroyAll: %v", left)
		}
	})
}

func TestGarbageCollection(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b cache.Backend) {
		h := newHarness(t, b, Config{GCMaxPerRun: 3, InactivityTimeout: time.Hour})
		ctx := context.Background()
		var old []string
		for range 5 {
			old = append(old, h.startSession(func(ctx context.Context, s *Session) error { return s.Put(ctx, "k", 1) }))
		}
		h.clock.Add(50 * time.Minute)
		fresh := h.startSession(func(ctx context.Context, s *Session) error { return s.Put(ctx, "k", 2) })
		h.clock.Add(20 * time.Minute) // the five are 70 min old, fresh is 20

		// Another process holds the lock: this one does not collect.
		token, err := h.m.meta.Lock(ctx, gcLockName, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.m.CollectGarbage(ctx); !errors.Is(err, cache.ErrLocked) {
			t.Errorf("CollectGarbage while locked = %v, want ErrLocked", err)
		}
		if _, err := h.m.meta.Unlock(ctx, gcLockName, token); err != nil {
			t.Fatal(err)
		}

		n, err := h.m.CollectGarbage(ctx)
		if err != nil || n != 3 {
			t.Fatalf("first run = %d, %v; want 3 (MaxPerRun)", n, err)
		}
		n, err = h.m.CollectGarbage(ctx)
		if err != nil || n != 2 {
			t.Fatalf("second run = %d, %v; want 2", n, err)
		}
		n, _ = h.m.CollectGarbage(ctx)
		if n != 0 {
			t.Errorf("third run = %d, want 0", n)
		}
		// Only the fresh session's two entries remain.
		if left := h.storedEntries(); len(left) != 2 {
			t.Errorf("entries left = %d, want 2 (fresh session)", len(left))
		}
		h.do(fresh, func(w http.ResponseWriter, r *http.Request) {
			if ok, _ := sess(t, r).IsStarted(r.Context()); !ok {
				t.Error("the fresh session was collected")
			}
		})
		// The lock was released: another collector can run.
		token, err = h.m.meta.Lock(ctx, gcLockName, time.Minute)
		if err != nil {
			t.Errorf("lock after GC: %v", err)
		} else {
			_, _ = h.m.meta.Unlock(ctx, gcLockName, token)
		}
		_ = old
	})
}

func TestGarbageCollectorLoop(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b cache.Backend) {
		c := newClock()
		h := newHarness(t, b, Config{GCInterval: 5 * time.Millisecond, InactivityTimeout: time.Minute, Now: c.Now})
		h.clock = c
		h.startSession(nil)
		c.Add(2 * time.Minute)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { h.m.RunCollector(ctx) })
		deadline := time.Now().Add(10 * time.Second)
		for len(h.storedEntries()) > 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		wg.Wait()
		if n := len(h.storedEntries()); n != 0 {
			t.Errorf("the background collector left %d entries", n)
		}
	})
}

func TestConcurrentMetadataUpdates(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b cache.Backend) {
		h := newHarness(t, b, Config{})
		id := h.startSession(nil)
		const n = 8
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				w := h.do(id, func(w http.ResponseWriter, r *http.Request) {
					if err := sess(t, r).AddTag(r.Context(), "t"+string(rune('a'+i))); err != nil {
						t.Error(err)
					}
				})
				if w.Code != http.StatusOK {
					t.Errorf("request %d: %d %s", i, w.Code, w.Body.String())
				}
			})
		}
		wg.Wait()
		s, err := h.m.Session(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		tags, _ := s.Tags(context.Background())
		if len(tags) != n {
			t.Errorf("tags after %d concurrent requests = %v: updates were lost\n%s", n, tags, h.logs.String())
		}
	})
}

func TestDetachedSessions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b cache.Backend) {
		h := newHarness(t, b, Config{})
		ctx := context.Background()
		ctx, s := h.m.NewContext(ctx, "")
		if got, _ := FromContext(ctx); got != s {
			t.Fatal("NewContext: FromContext does not return the session")
		}
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, "job", "done"); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		id, _ := s.ID(ctx)
		h.do(id, func(w http.ResponseWriter, r *http.Request) {
			var v string
			if err := sess(t, r).Get(r.Context(), "job", &v); err != nil || v != "done" {
				t.Errorf("value from a detached session = %q, %v", v, err)
			}
			if err := sess(t, r).Commit(r.Context()); !errors.Is(err, ErrNotDetached) {
				t.Errorf("Commit on a request session = %v", err)
			}
		})
		// An admin view does not touch the session.
		w0 := h.counts.writes.Load()
		h.clock.Add(time.Hour - time.Second)
		admin, err := h.m.Session(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := admin.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if h.counts.writes.Load() != w0 {
			t.Error("an admin look touched the session")
		}
	})
}
