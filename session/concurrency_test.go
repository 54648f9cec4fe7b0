package session

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache/cachetest"
)

// TestRenewalConflictMerged: a renewal whose conditional metadata write meets
// another renewal of the same session (a conflict on m) reads the metadata
// again and writes its own verifier on top; the other request's tag survives,
// the data stays, and only the last renewal's ID works.
func TestRenewalConflictMerged(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{})
		id := h.startSession(func(ctx context.Context, s *Session) error { return s.Put(ctx, "basket", 3) })
		login := func(tag string, got *string) func(w http.ResponseWriter, r *http.Request) {
			return func(w http.ResponseWriter, r *http.Request) {
				s := sess(t, r)
				if err := s.RenewID(r.Context()); err != nil {
					t.Error(err)
				}
				if err := s.AddTag(r.Context(), tag); err != nil {
					t.Error(err)
				}
				*got, _ = s.ID(r.Context())
			}
		}
		var idA, idB string
		var armed atomic.Bool
		armed.Store(true)
		defer h.onCall(func(ctx context.Context, c cachetest.Call) error {
			if c.Op == cachetest.OpWrite && armed.CompareAndSwap(true, false) {
				// Another request of the session renews and commits first.
				h.do(id, login("b", &idB))
			}
			return nil
		})()
		h.calls.Reset()
		w := h.do(id, login("a", &idA))
		h.wantCalls("A (B inside its first write)",
			cachetest.OpRead, cachetest.OpWrite, // A resumes, A's first write (conflicts)
			cachetest.OpRead, cachetest.OpWrite, // B
			cachetest.OpRead, cachetest.OpWrite) // A reads m again and writes
		if c := sessionCookie(t, w, "fxsession"); c == nil || c.Value != idA {
			t.Fatalf("A's cookie = %v, want %s", c, idA)
		}
		if idA[:RefLength] != id[:RefLength] || idB[:RefLength] != id[:RefLength] || idA == idB {
			t.Fatalf("renewals changed the reference: %s %s %s", id, idA, idB)
		}
		if h.started(id) || h.started(idB) {
			t.Error("the old ID or the overwritten renewal's ID still works")
		}
		h.do(idA, func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			tags, _ := s.Tags(r.Context())
			slices.Sort(tags)
			if !slices.Equal(tags, []string{"a", "b"}) {
				t.Errorf("tags = %v, want both requests' tags", tags)
			}
			var n int
			if err := s.Get(r.Context(), "basket", &n); err != nil || n != 3 {
				t.Errorf("basket = %d, %v", n, err)
			}
		})
	})
}

// TestConcurrentRenewAndTouch: requests of one session that all resume before
// any commits (a barrier), then renew, tag and touch at once: no tag is lost,
// exactly one renewal's ID works, the old ID does not, and the data stays.
// Rounds repeat the race on the ID that survived.
func TestConcurrentRenewAndTouch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{UpdateMetadataThreshold: Never})
		id := h.startSession(func(ctx context.Context, s *Session) error { return s.Put(ctx, "basket", 7) })
		var want []string
		for round := range 5 {
			h.clock.Add(time.Second)
			const renewers, taggers, touchers = 2, 4, 2
			n := renewers + taggers + touchers
			var (
				resumed sync.WaitGroup
				done    sync.WaitGroup
				mu      sync.Mutex
				renewed []string
			)
			resumed.Add(n)
			for i := range n {
				done.Go(func() {
					w := h.do(id, func(w http.ResponseWriter, r *http.Request) {
						ctx, s := r.Context(), sess(t, r)
						ok, err := s.IsStarted(ctx)
						resumed.Done()
						resumed.Wait() // every request has read the record
						if !ok || err != nil {
							t.Errorf("IsStarted = %v, %v", ok, err)
							return
						}
						switch {
						case i < renewers:
							if err := s.RenewID(ctx); err != nil {
								t.Error(err)
							}
							nid, _ := s.ID(ctx)
							mu.Lock()
							renewed = append(renewed, nid)
							mu.Unlock()
						case i < renewers+taggers:
							if err := s.AddTag(ctx, fmt.Sprintf("r%d-t%d", round, i)); err != nil {
								t.Error(err)
							}
						default:
							if err := s.Touch(ctx); err != nil {
								t.Error(err)
							}
						}
					})
					if w.Code != http.StatusOK {
						t.Errorf("status %d: %s", w.Code, w.Body)
					}
				})
			}
			done.Wait()
			for i := renewers; i < renewers+taggers; i++ {
				want = append(want, fmt.Sprintf("r%d-t%d", round, i))
			}
			if h.started(id) {
				t.Fatalf("round %d: the old ID still works", round)
			}
			var live []string
			for _, nid := range renewed {
				if nid[:RefLength] != id[:RefLength] {
					t.Fatalf("round %d: a renewal changed the reference", round)
				}
				if h.started(nid) {
					live = append(live, nid)
				}
			}
			if len(live) != 1 {
				t.Fatalf("round %d: %d of the renewed IDs work, want exactly 1\n%s", round, len(live), h.logs)
			}
			id = live[0]
			h.do(id, func(w http.ResponseWriter, r *http.Request) {
				s := sess(t, r)
				tags, _ := s.Tags(r.Context())
				slices.Sort(tags)
				slices.Sort(want)
				if !slices.Equal(tags, want) {
					t.Errorf("round %d: tags = %v, want %v", round, tags, want)
				}
				var n int
				if err := s.Get(r.Context(), "basket", &n); err != nil || n != 7 {
					t.Errorf("round %d: basket = %d, %v", round, n, err)
				}
			})
		}
		if len(h.records()) != 1 {
			t.Errorf("records = %d, want the one session", len(h.records()))
		}
	})
}

// TestRequestRacingDestroy: a request of a session that another request (or an
// admin) destroys between its resume and its commit never brings the session
// back: its write finds no record, the store stays empty, and its response
// expires the cookie.
func TestRequestRacingDestroy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		for name, change := range map[string]func(ctx context.Context, s *Session) error{
			"put": func(ctx context.Context, s *Session) error { return s.Put(ctx, "k", 2) },
			"bag and flash": func(ctx context.Context, s *Session) error {
				bag, _ := s.Bag("cart")
				if err := bag.Set(ctx, "sku", 1); err != nil {
					return err
				}
				return s.Flashes().Add(ctx, "notice", "added")
			},
			"tag":   func(ctx context.Context, s *Session) error { return s.AddTag(ctx, "user:alice") },
			"renew": func(ctx context.Context, s *Session) error { return s.RenewID(ctx) },
			"touch": func(ctx context.Context, s *Session) error { return s.Touch(ctx) },
			"stage field": func(ctx context.Context, s *Session) error {
				return ExtensionOf(s).StageField(ctx, "basket", []byte{1})
			},
		} {
			t.Run(name, func(t *testing.T) {
				h := newHarness(t, b, Config{Namespace: cachetest.Namespace("race")})
				_ = h.m.RegisterBag("cart")
				id := h.startSession(func(ctx context.Context, s *Session) error { return s.Put(ctx, "k", 1) })
				var armed atomic.Bool
				armed.Store(true)
				defer h.onCall(func(ctx context.Context, c cachetest.Call) error {
					if c.Op == cachetest.OpWrite && armed.CompareAndSwap(true, false) {
						if ok, err := h.m.Destroy(ctx, id[:RefLength], "admin"); !ok || err != nil {
							t.Errorf("Destroy = %v, %v", ok, err)
						}
					}
					return nil
				})()
				w := h.do(id, func(w http.ResponseWriter, r *http.Request) {
					if err := change(r.Context(), sess(t, r)); err != nil {
						t.Error(err)
					}
				})
				if armed.Load() {
					t.Fatal("the request never wrote")
				}
				if recs := h.records(); len(recs) != 0 {
					t.Errorf("the destroyed session came back: %v", recs)
				}
				if w.Code != http.StatusOK || !expiresCookie(t, w, "fxsession") {
					t.Errorf("response %d, Set-Cookie %q; want 200 and the cookie expired", w.Code, w.Header().Values("Set-Cookie"))
				}
				mustContain(t, "logs", h.logs.String(), "destroyed or expired concurrently")
			})
		}
		t.Run("write field", func(t *testing.T) {
			h := newHarness(t, b, Config{Namespace: cachetest.Namespace("race")})
			id := h.startSession(nil)
			h.do(id, func(w http.ResponseWriter, r *http.Request) {
				x := ExtensionOf(sess(t, r))
				if _, _, err := x.Field(r.Context(), "basket"); !errors.Is(err, ErrNotFound) {
					t.Fatal(err)
				}
				_, _ = h.m.Destroy(r.Context(), id, "admin")
				if _, err := x.WriteField(r.Context(), "basket", []byte{1}, 0); !errors.Is(err, ErrNotStarted) {
					t.Errorf("WriteField on a destroyed session = %v, want ErrNotStarted", err)
				}
				if ok, _ := sess(t, r).IsStarted(r.Context()); ok {
					t.Error("the request still has the session")
				}
			})
			if recs := h.records(); len(recs) != 0 {
				t.Errorf("the destroyed session came back: %v", recs)
			}
		})
	})
}

// TestConcurrentRequestsAndDestroy: many requests of a session change it while
// one destroys it, all having resumed before any commit: nothing survives.
func TestConcurrentRequestsAndDestroy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{UpdateMetadataThreshold: Never})
		for round := range 5 {
			id := h.startSession(func(ctx context.Context, s *Session) error { return s.Put(ctx, "n", 0) })
			h.clock.Add(time.Second)
			const n = 8
			var resumed, done sync.WaitGroup
			resumed.Add(n)
			for i := range n {
				done.Go(func() {
					h.do(id, func(w http.ResponseWriter, r *http.Request) {
						ctx, s := r.Context(), sess(t, r)
						_, _ = s.IsStarted(ctx)
						resumed.Done()
						resumed.Wait()
						if i == 0 {
							if err := s.Destroy(ctx, "logout"); err != nil {
								t.Error(err)
							}
							return
						}
						_ = s.Put(ctx, "n", i)
						_ = s.AddTag(ctx, fmt.Sprintf("t%d", i))
					})
				})
			}
			done.Wait()
			if recs := h.records(); len(recs) != 0 {
				t.Fatalf("round %d: records after a destroy raced by %d requests: %v", round, n-1, recs)
			}
		}
	})
}
