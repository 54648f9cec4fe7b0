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
	"github.com/fxsession/fxsession/cache/cachetest"
)

func TestTagsAndAdmin(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
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
		ref := func(id string) string { return id[:RefLength] }

		h.do(bob, func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			if err := s.AddTag(r.Context(), "bad tag"); !errors.Is(err, cache.ErrInvalidKey) {
				t.Errorf("AddTag with a space = %v", err)
			}
			if err := s.RemoveTag(r.Context(), "user:bob"); err != nil {
				t.Error(err)
			}
			if err := s.RemoveTag(r.Context(), "never-there"); err != nil {
				t.Error(err)
			}
			if err := s.AddTag(r.Context(), "user:robert"); err != nil {
				t.Error(err)
			}
			if err := s.AddTag(r.Context(), "user:robert"); err != nil {
				t.Error(err)
			}
			if tags, _ := s.Tags(r.Context()); !slices.Equal(tags, []string{"user:robert"}) {
				t.Errorf("Tags in the request = %v", tags)
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
			if len(md.Ref) != RefLength || md.Created.IsZero() || md.Expires.IsZero() || md.LastUsed.IsZero() {
				t.Errorf("metadata %+v", md)
			}
		}
		refs := func(tag string) []string {
			var out []string
			for md, err := range h.m.ByTag(ctx, tag) {
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, md.Ref)
			}
			slices.Sort(out)
			return out
		}
		want := []string{ref(alice1), ref(alice2)}
		slices.Sort(want)
		if got := refs("user:alice"); !slices.Equal(got, want) {
			t.Errorf("ByTag(user:alice) = %v, want %v", got, want)
		}
		if got := refs("user:bob"); len(got) != 0 {
			t.Errorf("ByTag(user:bob) after RemoveTag = %v", got)
		}
		if got := refs("user:robert"); !slices.Equal(got, []string{ref(bob)}) {
			t.Errorf("ByTag(user:robert) = %v", got)
		}
		for _, err := range h.m.ByTag(ctx, "bad tag") {
			if !errors.Is(err, cache.ErrInvalidKey) {
				t.Errorf("ByTag(bad tag) = %v", err)
			}
		}

		// Admin access by ID and by reference.
		s, err := h.m.Session(ctx, ref(alice1))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.ID(ctx); !errors.Is(err, ErrNotFound) {
			t.Errorf("ID of a session opened by its reference = %v, want ErrNotFound", err)
		}
		if s.Ref() != ref(alice1) {
			t.Errorf("Ref = %q", s.Ref())
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
		md, err := s.Metadata(ctx)
		if err != nil || md.Ref != ref(alice1) || !slices.Equal(md.Tags, tags) {
			t.Errorf("Metadata = %+v, %v", md, err)
		}
		forged := ref(alice1) + newID()[RefLength:]
		for name, refOrID := range map[string]string{
			"unknown":           newID(),
			"unknown reference": ref(newID()),
			"nonsense":          "nonsense",
			"forged verifier":   forged,
		} {
			if _, err := h.m.Session(ctx, refOrID); !errors.Is(err, ErrNotFound) {
				t.Errorf("Session(%s) = %v, want ErrNotFound", name, err)
			}
		}
		entries, err := h.m.Entries(ctx, ref(alice1))
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[string]string{}
		for _, e := range entries {
			kinds[e.Key] = e.Kind + ":" + e.Name
		}
		if kinds["m"] != "metadata:m" || kinds["a"] != "activity:a" || kinds["v:k"] != "value:k" || len(kinds) != 3 {
			t.Errorf("Entries = %v", kinds)
		}
		size, err := h.m.Size(ctx, alice1)
		if err != nil || size <= 0 {
			t.Errorf("Size = %d, %v", size, err)
		}
		if _, err := h.m.Entries(ctx, newID()); !errors.Is(err, ErrNotFound) {
			t.Errorf("Entries(unknown) = %v", err)
		}

		h.calls.Reset()
		n, err := h.m.DestroyByTag(ctx, "user:alice", "logout everywhere")
		if err != nil || n != 2 {
			t.Errorf("DestroyByTag = %d, %v; want 2", n, err)
		}
		h.wantCalls("DestroyByTag", cachetest.OpTagged, cachetest.OpDeleteMany)
		for _, id := range []string{alice1, alice2} {
			if h.started(id) {
				t.Error("session survived DestroyByTag")
			}
		}
		h.calls.Reset()
		ok, err := h.m.Destroy(ctx, ref(anon), "admin") // by reference: one store call
		if !ok || err != nil {
			t.Errorf("Destroy = %v, %v", ok, err)
		}
		h.wantCalls("Manager.Destroy", cachetest.OpDelete)
		if ok, _ := h.m.Destroy(ctx, ref(anon), "again"); ok {
			t.Error("Destroy of a destroyed session reported true")
		}
		if _, err := h.m.Destroy(ctx, "nonsense", "x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Destroy(nonsense) = %v", err)
		}
		var progress []int
		n, err = h.m.DestroyAll(ctx, func(d int) { progress = append(progress, d) })
		if err != nil || n != 1 || !slices.Equal(progress, []int{1}) {
			t.Errorf("DestroyAll = %d, %v, progress %v; want 1, [1]", n, err, progress)
		}
		if left := h.records(); len(left) != 0 {
			t.Errorf("records after DestroyAll: %v", left)
		}
		if n, err := h.m.DestroyAll(ctx, nil); n != 0 || err != nil {
			t.Errorf("DestroyAll of nothing = %d, %v", n, err)
		}
	})
}

// TestDestroyAllBatches: DestroyAll deletes in batches and reports progress
// after each.
func TestDestroyAllBatches(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{})
		ctx := context.Background()
		const n = destroyBatch + 5
		for range n {
			_, s := h.m.NewContext(ctx, "")
			if err := s.Start(ctx); err != nil {
				t.Fatal(err)
			}
			if err := s.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
		var progress []int
		got, err := h.m.DestroyAll(ctx, func(d int) { progress = append(progress, d) })
		if err != nil || got != n || !slices.Equal(progress, []int{destroyBatch, n}) {
			t.Fatalf("DestroyAll = %d, %v, progress %v; want %d, [%d %d]", got, err, progress, n, destroyBatch, n)
		}
		if left := h.records(); len(left) != 0 {
			t.Errorf("%d records after DestroyAll", len(left))
		}
	})
}

// TestGarbageCollection: the collector removes expired sessions, at most
// GCMaxPerRun per run, one collector at a time (the cache lock), and never a
// live session.
func TestGarbageCollection(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{GCMaxPerRun: 3, InactivityTimeout: time.Hour})
		ctx := context.Background()
		var old []string
		for range 5 {
			old = append(old, h.startSession(func(ctx context.Context, s *Session) error {
				_ = s.AddTag(ctx, "user:old")
				return s.Put(ctx, "k", 1)
			}))
		}
		h.clock.Add(50 * time.Minute)
		fresh := h.startSession(func(ctx context.Context, s *Session) error {
			_ = s.AddTag(ctx, "user:old")
			return s.Put(ctx, "k", 2)
		})
		h.clock.Add(20 * time.Minute) // the five are 70 min old, fresh is 20

		// Another process holds the lock: this one does not collect.
		token, err := h.m.store.Lock(ctx, gcLockName, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.m.CollectGarbage(ctx); !errors.Is(err, cache.ErrLocked) {
			t.Errorf("CollectGarbage while locked = %v, want ErrLocked", err)
		}
		if ok, err := h.m.store.Unlock(ctx, gcLockName, token); !ok || err != nil {
			t.Fatalf("the other collector's lock was disturbed: %v, %v", ok, err)
		}

		n, err := h.m.CollectGarbage(ctx)
		if err != nil || n != 3 {
			t.Fatalf("first run = %d, %v; want 3 (GCMaxPerRun)", n, err)
		}
		n, err = h.m.CollectGarbage(ctx)
		if err != nil || n != 2 {
			t.Fatalf("second run = %d, %v; want 2", n, err)
		}
		n, _ = h.m.CollectGarbage(ctx)
		if n != 0 {
			t.Errorf("third run = %d, want 0", n)
		}
		// Only the fresh session remains, and the tag index lists only it.
		if left := h.records(); len(left) != 1 || left[0].Key != fresh[:RefLength] {
			t.Errorf("records left = %v, want the fresh session's", left)
		}
		var tagged []string
		for k, err := range h.ns().Tagged(ctx, "user:old") {
			if err != nil {
				t.Fatal(err)
			}
			tagged = append(tagged, k)
		}
		if !slices.Equal(tagged, []string{fresh[:RefLength]}) {
			t.Errorf("Tagged after GC = %v", tagged)
		}
		if !h.started(fresh) {
			t.Error("the fresh session was collected")
		}
		for _, id := range old {
			if h.started(id) {
				t.Error("a collected session resolves")
			}
		}
		mustContain(t, "logs", h.logs.String(), "reason=expired")
		// The lock was released: another collector can run.
		token, err = h.m.store.Lock(ctx, gcLockName, time.Minute)
		if err != nil {
			t.Errorf("lock after GC: %v", err)
		} else {
			_, _ = h.m.store.Unlock(ctx, gcLockName, token)
		}
	})
}

// TestGarbageCollectionOneAtATime: collectors running at once (as in several
// processes) never both collect: each run either takes the lock or returns
// ErrLocked, and every expired session is removed exactly once.
func TestGarbageCollectionOneAtATime(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{InactivityTimeout: time.Minute, GCMaxPerRun: 7})
		ctx := context.Background()
		const n = 40
		for range n {
			h.startSession(nil)
		}
		h.clock.Add(2 * time.Minute)
		// A second manager on the same store plays the other process.
		other, err := New(b.store, Config{InactivityTimeout: time.Minute, GCMaxPerRun: 7, Now: h.clock.Now, Logger: h.m.log})
		if err != nil {
			t.Fatal(err)
		}
		var (
			mu      sync.Mutex
			removed int
			wg      sync.WaitGroup
		)
		for i := range 4 {
			m := h.m
			if i%2 == 1 {
				m = other
			}
			wg.Go(func() {
				// Each collector runs until a run of its own finds nothing left.
				deadline := time.Now().Add(10 * time.Second)
				for time.Now().Before(deadline) {
					k, err := m.CollectGarbage(ctx)
					if errors.Is(err, cache.ErrLocked) {
						time.Sleep(time.Millisecond)
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					removed += k
					mu.Unlock()
					if k == 0 {
						return
					}
				}
				t.Error("a collector never finished")
			})
		}
		wg.Wait()
		if removed != n {
			t.Errorf("the collectors removed %d sessions, want %d exactly", removed, n)
		}
	})
}

func TestGarbageCollectorLoop(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{GCInterval: 5 * time.Millisecond, InactivityTimeout: time.Minute})
		h.startSession(nil)
		h.clock.Add(2 * time.Minute)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { h.m.RunCollector(ctx) })
		deadline := time.Now().Add(10 * time.Second)
		for len(h.records()) > 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		wg.Wait()
		if n := len(h.records()); n != 0 {
			t.Errorf("the background collector left %d records", n)
		}
	})
}

func TestCollectorNever(t *testing.T) {
	h := newHarness(t, memoryBackend(t), Config{GCInterval: Never})
	done := make(chan struct{})
	go func() { h.m.RunCollector(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunCollector with GCInterval Never did not return")
	}
}

// TestConcurrentTags: concurrent requests of one session that tag it lose no
// tag (tags are merged by the store, not rewritten).
func TestConcurrentTags(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{UpdateMetadataThreshold: Never})
		id := h.startSession(nil)
		h.clock.Add(time.Second)
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
	forEachBackend(t, func(t *testing.T, b *backend) {
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
		h.calls.Reset()
		if err := s.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		h.wantCalls("committing a detached session", cachetest.OpWrite)
		h.calls.Reset()
		if err := s.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		h.wantCalls("committing it again with no change")
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
		// A detached session on an existing ID resumes lazily and commits its change.
		ctx2, s2 := h.m.NewContext(context.Background(), id)
		if err := s2.Put(ctx2, "job", "redone"); err != nil {
			t.Fatal(err)
		}
		if err := s2.Commit(ctx2); err != nil {
			t.Fatal(err)
		}
		var v string
		if s3, err := h.m.Session(ctx, id); err != nil || s3.Get(ctx, "job", &v) != nil || v != "redone" {
			t.Errorf("after a detached commit: %q, %v", v, err)
		}
		// A malformed or unknown ID gives an unstarted session.
		for _, bad := range []string{"nonsense", newID()} {
			ctx3, s3 := h.m.NewContext(context.Background(), bad)
			if ok, err := s3.IsStarted(ctx3); ok || err != nil {
				t.Errorf("NewContext(%q): IsStarted = %v, %v", bad, ok, err)
			}
		}
		// An admin view does not touch the session.
		h.clock.Add(time.Hour - time.Second)
		h.calls.Reset()
		admin, err := h.m.Session(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := admin.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		h.wantCalls("an admin look", cachetest.OpRead)
		// An admin change is one write, and does not touch the activity either.
		_ = admin.AddTag(ctx, "flagged")
		h.calls.Reset()
		if err := admin.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		h.wantCalls("an admin change", cachetest.OpWrite)
		if w := h.calls.Calls()[0].Write; len(w.Fields) != 0 || !slices.Equal(w.AddTags, []string{"flagged"}) {
			t.Errorf("the admin change wrote %+v", w)
		}
	})
}
