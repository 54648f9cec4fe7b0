package session

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
)

func TestBags(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{})
		if err := h.m.RegisterBag("cart"); err != nil {
			t.Fatal(err)
		}
		if err := h.m.RegisterBag("cart"); err != nil {
			t.Errorf("registering twice: %v", err)
		}
		if err := h.m.RegisterBag("bad name"); !errors.Is(err, cache.ErrInvalidKey) {
			t.Errorf("bad bag name: %v", err)
		}
		// No session: the bag reads empty, writes need a session.
		h.do("", func(w http.ResponseWriter, r *http.Request) {
			bag, err := sess(t, r).Bag("cart")
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := bag.Has(r.Context(), "x"); ok || err != nil {
				t.Errorf("Has = %v, %v", ok, err)
			}
			if keys, err := bag.Keys(r.Context()); len(keys) != 0 || err != nil {
				t.Errorf("Keys = %v, %v", keys, err)
			}
			if err := bag.Set(r.Context(), "x", 1); !errors.Is(err, ErrNotStarted) {
				t.Errorf("Set without a session = %v", err)
			}
			if _, err := sess(t, r).Bag("nope"); !errors.Is(err, ErrUnknownBag) {
				t.Errorf("unknown bag: %v", err)
			}
		})
		if err := h.m.RegisterBag("late"); !errors.Is(err, ErrRegistrationClosed) {
			t.Errorf("RegisterBag after serving = %v", err)
		}
		id := h.startSession(func(ctx context.Context, s *Session) error {
			bag, _ := s.Bag("cart")
			if err := bag.Set(ctx, "foo", 1); err != nil {
				return err
			}
			if err := bag.Set(ctx, "items", []string{"a", "b"}); err != nil {
				return err
			}
			return bag.Set(ctx, "tmp", true)
		})
		if got, want := fieldNames(h.record(id)), []string{"a", "b:cart", "m"}; !slices.Equal(got, want) {
			t.Errorf("a bag should be one field; fields = %v, want %v", got, want)
		}
		h.calls.Reset()
		h.do(id, func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			bag, _ := sess(t, r).Bag("cart")
			var foo int
			if err := bag.Get(ctx, "foo", &foo); err != nil || foo != 1 {
				t.Errorf("foo = %d, %v", foo, err)
			}
			all, err := bag.All(ctx)
			if err != nil || len(all) != 3 {
				t.Fatalf("All = %v, %v", all, err)
			}
			var items []string
			if err := all["items"].Decode(&items); err != nil || !slices.Equal(items, []string{"a", "b"}) {
				t.Errorf("items = %v, %v", items, err)
			}
			if err := bag.Get(ctx, "missing", &foo); !errors.Is(err, ErrNotFound) {
				t.Errorf("missing = %v", err)
			}
			if err := bag.Remove(ctx, "tmp"); err != nil {
				t.Error(err)
			}
			if keys, _ := bag.Keys(ctx); !slices.Equal(keys, []string{"foo", "items"}) {
				t.Errorf("Keys = %v", keys)
			}
		})
		h.wantCalls("reading and changing a bag", cachetest.OpRead, cachetest.OpWrite)
		if w := h.calls.Calls()[1].Write; len(w.Fields) != 1 || w.Fields[0].Name != "b:cart" {
			t.Errorf("the bag's change wrote %+v, want its one field", w)
		}
		h.do(id, func(w http.ResponseWriter, r *http.Request) {
			bag, _ := sess(t, r).Bag("cart")
			if ok, _ := bag.Has(r.Context(), "tmp"); ok {
				t.Error("removed key came back")
			}
			if err := bag.Clear(r.Context()); err != nil {
				t.Error(err)
			}
		})
		h.do(id, func(w http.ResponseWriter, r *http.Request) {
			bag, _ := sess(t, r).Bag("cart")
			if keys, _ := bag.Keys(r.Context()); len(keys) != 0 {
				t.Errorf("Keys after Clear = %v", keys)
			}
		})
		if _, ok := h.record(id).Field("b:cart"); ok {
			t.Error("a cleared bag left its field")
		}
	})
}

func TestFlashes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{})
		id := h.startSession(func(ctx context.Context, s *Session) error {
			f := s.Flashes()
			if err := f.Add(ctx, "notice", "dropped"); err != nil {
				return err
			}
			if msgs, err := f.Get(ctx, "notice"); err != nil || !slices.Equal(msgs, []string{"dropped"}) {
				t.Errorf("Get in the request that added = %v, %v", msgs, err)
			}
			if err := f.Add(ctx, "notice", "saved"); err != nil {
				return err
			}
			if err := f.Add(ctx, "notice", "again"); err != nil {
				return err
			}
			return f.Add(ctx, "error", "oops")
		})
		if got, want := fieldNames(h.record(id)), []string{"a", "f", "m"}; !slices.Equal(got, want) {
			t.Errorf("the flash bag should be one field; fields = %v, want %v", got, want)
		}
		h.calls.Reset()
		h.do(id, func(w http.ResponseWriter, r *http.Request) {
			f := sess(t, r).Flashes()
			if msgs, _ := f.Peek(r.Context(), "notice"); !slices.Equal(msgs, []string{"saved", "again"}) {
				t.Errorf("Peek = %v", msgs)
			}
			if ok, _ := f.Has(r.Context(), "error"); !ok {
				t.Error("Has(error) = false")
			}
		})
		h.wantCalls("peeking at flashes", cachetest.OpRead)
		h.do(id, func(w http.ResponseWriter, r *http.Request) {
			f := sess(t, r).Flashes()
			if msgs, _ := f.Get(r.Context(), "notice"); !slices.Equal(msgs, []string{"saved", "again"}) {
				t.Errorf("Get after Peek = %v (Peek must not consume)", msgs)
			}
			if msgs, _ := f.Get(r.Context(), "notice"); msgs != nil {
				t.Errorf("second Get = %v", msgs)
			}
			all, _ := f.PeekAll(r.Context())
			if len(all) != 1 || !slices.Equal(all["error"], []string{"oops"}) {
				t.Errorf("PeekAll = %v", all)
			}
		})
		h.do(id, func(w http.ResponseWriter, r *http.Request) {
			f := sess(t, r).Flashes()
			if msgs, _ := f.Peek(r.Context(), "notice"); msgs != nil {
				t.Errorf("consumed notice came back: %v", msgs)
			}
			all, _ := f.All(r.Context())
			if len(all) != 1 {
				t.Errorf("All = %v", all)
			}
		})
		h.do(id, func(w http.ResponseWriter, r *http.Request) {
			all, _ := sess(t, r).Flashes().PeekAll(r.Context())
			if len(all) != 0 {
				t.Errorf("after All: %v", all)
			}
		})
	})
}

func TestReadOnly(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{})
		_ = h.m.RegisterBag("admin")
		id := h.startSession(func(ctx context.Context, s *Session) error {
			_ = s.Flashes().Add(ctx, "notice", "hi")
			return s.Put(ctx, "k", "v")
		})
		writesOK := func(t *testing.T, s *Session, ctx context.Context) {
			t.Helper()
			var v string
			if err := s.Get(ctx, "k", &v); err != nil || v != "v" {
				t.Errorf("read on a read-only session = %q, %v", v, err)
			}
			if msgs, err := s.Flashes().Peek(ctx, "notice"); err != nil || len(msgs) != 1 {
				t.Errorf("Peek = %v, %v", msgs, err)
			}
			bag, _ := s.Bag("admin")
			x := ExtensionOf(s)
			_, werr := x.WriteField(ctx, "x", []byte{1}, 0)
			for name, err := range map[string]error{
				"Put":        s.Put(ctx, "k", "w"),
				"Remove":     s.Remove(ctx, "k"),
				"Start":      s.Start(ctx),
				"RenewID":    s.RenewID(ctx),
				"Destroy":    s.Destroy(ctx, "x"),
				"AddTag":     s.AddTag(ctx, "t"),
				"RemoveTag":  s.RemoveTag(ctx, "t"),
				"Touch":      s.Touch(ctx),
				"StageField": x.StageField(ctx, "x", []byte{1}),
				"WriteField": werr,
				"BagSet":     bag.Set(ctx, "a", 1),
				"BagRemove":  bag.Remove(ctx, "a"),
				"BagClear":   bag.Clear(ctx),
				"FlashAdd":   s.Flashes().Add(ctx, "n", "m"),
			} {
				if !errors.Is(err, ErrReadOnly) {
					t.Errorf("%s on a read-only session = %v, want ErrReadOnly", name, err)
				}
			}
			if _, err := s.Flashes().Get(ctx, "notice"); !errors.Is(err, ErrReadOnly) {
				t.Errorf("consuming flashes read-only = %v", err)
			}
			if _, err := s.Flashes().All(ctx); !errors.Is(err, ErrReadOnly) {
				t.Errorf("consuming all flashes read-only = %v", err)
			}
			if !s.IsReadOnly() {
				t.Error("IsReadOnly = false")
			}
		}
		t.Run("route", func(t *testing.T) {
			h.clock.Add(10 * time.Minute) // past the touch threshold: a read-only request still writes nothing
			h.calls.Reset()
			w := h.do(id, ReadOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s := sess(t, r)
				_ = ExtensionOf(s).OnCommit(func(context.Context) error { t.Error("a hook ran on a read-only route"); return nil })
				writesOK(t, s, r.Context())
			})).ServeHTTP)
			h.wantCalls("a read-only request", cachetest.OpRead)
			if w.Code != 200 || len(w.Header().Values("Set-Cookie")) != 0 {
				t.Errorf("status %d, Set-Cookie %q", w.Code, w.Header().Values("Set-Cookie"))
			}
			// A read-only request with a dead cookie writes nothing to the store,
			// but tells the browser to forget the dead ID.
			h.calls.Reset()
			w = h.do(newID(), ReadOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = sess(t, r).IsStarted(r.Context())
			})).ServeHTTP)
			h.wantCalls("a read-only request with a dead cookie", cachetest.OpRead)
			if !expiresCookie(t, w, h.m.cfg.cookieName) {
				t.Errorf("a read-only route kept a dead cookie: %q", w.Header().Values("Set-Cookie"))
			}
		})
		t.Run("view", func(t *testing.T) {
			h.do(id, func(w http.ResponseWriter, r *http.Request) {
				s := sess(t, r)
				writesOK(t, s.ReadOnly(), r.Context())
				if s.IsReadOnly() {
					t.Error("the session itself became read-only")
				}
				if err := s.Put(r.Context(), "k2", 1); err != nil {
					t.Errorf("write through the session beside a view: %v", err)
				}
			})
		})
	})
}

func TestStateless(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		for _, dev := range []bool{true, false} {
			name := map[bool]string{true: "development", false: "production"}[dev]
			t.Run(name, func(t *testing.T) {
				h := newHarness(t, b, Config{Development: dev, Namespace: name})
				r := httptest.NewRequest(http.MethodGet, "/api/health", nil)
				w := httptest.NewRecorder()
				h.m.Middleware(Stateless(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					s := sess(t, r)
					_, err := s.IsStarted(r.Context())
					err2 := s.Start(r.Context())
					if dev {
						if !errors.Is(err, ErrStateless) || !errors.Is(err2, ErrStateless) {
							t.Errorf("development: %v, %v; want ErrStateless", err, err2)
						}
					} else if err != nil || err2 != nil {
						t.Errorf("production: %v, %v; want a warning only", err, err2)
					}
				}))).ServeHTTP(w, r)
				if !dev {
					mustContain(t, "logs", h.logs.String(), "level=WARN")
					mustContain(t, "logs", h.logs.String(), "/api/health")
				}
			})
		}
	})
}
