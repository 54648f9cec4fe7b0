package session

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"

	"github.com/fxsession/fxsession/cache"
)

func TestBags(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b cache.Backend) {
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
		dataEntries := 0
		for _, e := range h.storedEntries() {
			if e.Key[:5] == "data/" {
				dataEntries++
			}
		}
		if dataEntries != 1 {
			t.Errorf("a bag should be one entry; data entries = %d", dataEntries)
		}
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
		for _, e := range h.storedEntries() {
			if e.Key[:5] == "data/" {
				t.Errorf("a cleared bag left its entry %s", e.Key)
			}
		}
	})
}

func TestFlashes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b cache.Backend) {
		h := newHarness(t, b, Config{})
		id := h.startSession(func(ctx context.Context, s *Session) error {
			f := s.Flashes()
			if err := f.Add(ctx, "notice", "saved"); err != nil {
				return err
			}
			if err := f.Add(ctx, "notice", "again"); err != nil {
				return err
			}
			return f.Add(ctx, "error", "oops")
		})
		h.do(id, func(w http.ResponseWriter, r *http.Request) {
			f := sess(t, r).Flashes()
			if msgs, _ := f.Peek(r.Context(), "notice"); !slices.Equal(msgs, []string{"saved", "again"}) {
				t.Errorf("Peek = %v", msgs)
			}
			if ok, _ := f.Has(r.Context(), "error"); !ok {
				t.Error("Has(error) = false")
			}
		})
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
	forEachBackend(t, func(t *testing.T, b cache.Backend) {
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
			for name, err := range map[string]error{
				"Put":      s.Put(ctx, "k", "w"),
				"Remove":   s.Remove(ctx, "k"),
				"Start":    s.Start(ctx),
				"RenewID":  s.RenewID(ctx),
				"Destroy":  s.Destroy(ctx, "x"),
				"AddTag":   s.AddTag(ctx, "t"),
				"Touch":    s.Touch(ctx),
				"PutEntry": s.PutEntry(ctx, "scope:x", []byte{1}),
				"BagSet":   bag.Set(ctx, "a", 1),
				"FlashAdd": s.Flashes().Add(ctx, "n", "m"),
			} {
				if !errors.Is(err, ErrReadOnly) {
					t.Errorf("%s on a read-only session = %v, want ErrReadOnly", name, err)
				}
			}
			if _, err := s.Flashes().Get(ctx, "notice"); !errors.Is(err, ErrReadOnly) {
				t.Errorf("consuming flashes read-only = %v", err)
			}
			if !s.IsReadOnly() {
				t.Error("IsReadOnly = false")
			}
		}
		t.Run("route", func(t *testing.T) {
			h.clock.Add(10 * 60e9) // past the touch threshold: a read-only request still writes nothing
			w0 := h.counts.writes.Load()
			r, _ := http.NewRequest(http.MethodGet, "/", nil)
			r.Header.Set("Cookie", "fxsession="+id)
			w := newRecorder()
			h.m.Middleware(ReadOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s := sess(t, r)
				s.OnCommit(func(context.Context) error { t.Error("a hook ran on a read-only route"); return nil })
				writesOK(t, s, r.Context())
			}))).ServeHTTP(w, r)
			if got := h.counts.writes.Load() - w0; got != 0 {
				t.Errorf("a read-only request wrote %d times", got)
			}
			if w.Code != 200 {
				t.Errorf("status %d", w.Code)
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
	forEachBackend(t, func(t *testing.T, b cache.Backend) {
		for _, dev := range []bool{true, false} {
			name := map[bool]string{true: "development", false: "production"}[dev]
			t.Run(name, func(t *testing.T) {
				h := newHarness(t, b, Config{Development: dev, Namespace: name})
				r, _ := http.NewRequest(http.MethodGet, "/api/health", nil)
				w := newRecorder()
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

func TestEntriesContract(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b cache.Backend) {
		h := newHarness(t, b, Config{})
		type localKey struct{}
		// PutEntry before Start is written once a hook starts the session.
		w := h.do("", func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			if _, _, err := s.GetEntry(r.Context(), "scope:basket"); !errors.Is(err, ErrNotStarted) {
				t.Errorf("GetEntry without a session = %v", err)
			}
			if _, err := s.CompareAndPutEntry(r.Context(), "scope:basket", []byte("x"), 0); !errors.Is(err, ErrNotStarted) {
				t.Errorf("CompareAndPutEntry without a session = %v", err)
			}
			s.SetLocal(localKey{}, 42)
			if s.Local(localKey{}) != 42 {
				t.Error("Local")
			}
			if err := s.PutEntry(r.Context(), "scope:basket", []byte("v1")); err != nil {
				t.Fatal(err)
			}
			if err := s.PutEntry(r.Context(), "scope:basket", []byte("v2")); err != nil {
				t.Fatal(err)
			}
			calls := 0
			s.OnCommit(func(ctx context.Context) error {
				calls++
				if calls == 1 {
					return s.Start(ctx)
				}
				return nil
			})
			_, _ = w.Write([]byte("body"))
			if calls != 1 {
				t.Errorf("hook calls at the first commit point = %d", calls)
			}
		})
		c := sessionCookie(t, w, "fxsession")
		if c == nil {
			t.Fatal("a hook's Start did not set the cookie")
		}
		var ver cache.Version
		h.do(c.Value, func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			if s.Local(localKey{}) != nil {
				t.Error("locals leaked into another request")
			}
			v, version, err := s.GetEntry(r.Context(), "scope:basket")
			if err != nil || string(v) != "v2" || version == 0 {
				t.Fatalf("GetEntry = %q, %d, %v; want the last staged value", v, version, err)
			}
			ver = version
			many, err := s.GetEntries(r.Context(), []string{"scope:other", "scope:basket"})
			if err != nil || len(many) != 2 || many[0].Exists() || many[0].Key != "scope:other" ||
				string(many[1].Value) != "v2" || many[1].Version != version || many[1].Key != "scope:basket" {
				t.Errorf("GetEntries = %+v, %v", many, err)
			}
			if _, _, err := s.GetEntry(r.Context(), "scope:other"); !errors.Is(err, cache.ErrNotFound) {
				t.Errorf("absent entry = %v", err)
			}
			// A staged value is cleared by an immediate CompareAndPut.
			_ = s.PutEntry(r.Context(), "scope:basket", []byte("staged"))
			nv, err := s.CompareAndPutEntry(r.Context(), "scope:basket", []byte("v3"), version)
			if err != nil || nv == version {
				t.Fatalf("CompareAndPutEntry = %d, %v", nv, err)
			}
			if _, err := s.CompareAndPutEntry(r.Context(), "scope:basket", []byte("v4"), version); !errors.Is(err, cache.ErrConflict) {
				t.Errorf("stale CompareAndPutEntry = %v, want ErrConflict", err)
			}
		})
		h.do(c.Value, func(w http.ResponseWriter, r *http.Request) {
			v, version, _ := sess(t, r).GetEntry(r.Context(), "scope:basket")
			if string(v) != "v3" || version == ver {
				t.Errorf("after CompareAndPutEntry: %q (a staged PutEntry must not override it)", v)
			}
		})
		// CompareAndPutEntry on a session started in this request saves it first.
		w = h.do("", func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			_ = s.Start(r.Context())
			if _, err := s.CompareAndPutEntry(r.Context(), "scope:x", []byte("1"), 0); err != nil {
				t.Fatal(err)
			}
		})
		c = sessionCookie(t, w, "fxsession")
		h.do(c.Value, func(w http.ResponseWriter, r *http.Request) {
			if v, _, err := sess(t, r).GetEntry(r.Context(), "scope:x"); err != nil || string(v) != "1" {
				t.Errorf("entry of a new session = %q, %v", v, err)
			}
		})
	})
}
