package session

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
)

func TestLocalsAndHooks(t *testing.T) {
	x := ExtensionOf(&Session{st: &state{}})
	type k1 struct{}
	type k2 struct{ n int }
	if x.Local(k1{}) != nil || x.Local(nil) != nil {
		t.Fatal("a local before any SetLocal")
	}
	for _, kv := range [][2]any{{k1{}, 1}, {k2{1}, 2}, {k2{2}, 3}, {k1{}, 4}, {k2{1}, 5}} {
		if err := x.SetLocal(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		k    any
		want any
	}{{k1{}, 4}, {k2{1}, 5}, {k2{2}, 3}, {k2{3}, nil}, {nil, nil}} {
		if got := x.Local(c.k); got != c.want {
			t.Errorf("Local(%v) = %v, want %v", c.k, got, c.want)
		}
	}
	var ran []int
	for i := range 3 {
		_ = x.OnCommit(func(context.Context) error {
			ran = append(ran, i)
			if i == 0 { // a hook registered while hooks run runs too
				_ = x.OnCommit(func(context.Context) error { ran = append(ran, 9); return nil })
			}
			return nil
		})
	}
	if err := x.s.st.runHooks(context.Background()); err != nil || len(ran) != 4 || ran[0] != 0 || ran[2] != 2 || ran[3] != 9 {
		t.Fatalf("hooks ran %v, %v", ran, err)
	}
	boom := errors.New("boom")
	_ = x.OnCommit(func(context.Context) error { return boom })
	if err := x.s.st.runHooks(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("a hook's error = %v", err)
	}
}

// TestExtensionFields is the contract package scope relies on: fields under the
// extension's own names, read with the resume's one store read, staged for the
// commit or written at once with a version check.
func TestExtensionFields(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		h := newHarness(t, b, Config{})
		type localKey struct{}
		// A field staged before Start is written once a hook starts the session.
		w := h.do("", func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			x := ExtensionOf(s)
			if x.Session() != s || x.Development() || x.Logger() != h.m.log {
				t.Error("the extension view does not show its session's manager")
			}
			if _, _, err := x.Field(r.Context(), "basket"); !errors.Is(err, ErrNotStarted) {
				t.Errorf("Field without a session = %v", err)
			}
			if _, _, err := x.ReadField(r.Context(), "basket"); !errors.Is(err, ErrNotStarted) {
				t.Errorf("ReadField without a session = %v", err)
			}
			if _, err := x.WriteField(r.Context(), "basket", []byte("x"), 0); !errors.Is(err, ErrNotStarted) {
				t.Errorf("WriteField without a session = %v", err)
			}
			if err := x.StageField(r.Context(), "bad name", []byte("x")); !errors.Is(err, cache.ErrInvalidKey) {
				t.Errorf("StageField(bad name) = %v", err)
			}
			_ = x.SetLocal(localKey{}, 42)
			if x.Local(localKey{}) != 42 {
				t.Error("Local")
			}
			if err := x.StageField(r.Context(), "basket", []byte("v1")); err != nil {
				t.Fatal(err)
			}
			if err := x.StageField(r.Context(), "basket", []byte("v2")); err != nil {
				t.Fatal(err)
			}
			calls := 0
			_ = x.OnCommit(func(ctx context.Context) error {
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
		id := c.Value
		var ver cache.Version
		h.calls.Reset()
		h.do(id, func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			x := ExtensionOf(s)
			if x.Local(localKey{}) != nil {
				t.Error("locals leaked into another request")
			}
			v, version, err := x.Field(r.Context(), "basket")
			if err != nil || string(v) != "v2" || version == 0 {
				t.Fatalf("Field = %q, %d, %v; want the last staged value", v, version, err)
			}
			ver = version
			if _, _, err := x.Field(r.Context(), "other"); !errors.Is(err, cache.ErrNotFound) {
				t.Errorf("absent field = %v", err)
			}
			// An extension's field is not a user value, and the reverse.
			if ok, _ := s.Has(r.Context(), "basket"); ok {
				t.Error("an extension's field shows as a user value")
			}
			// A staged value is read back (version 0) and replaced by an
			// immediate WriteField.
			_ = x.StageField(r.Context(), "basket", []byte("staged"))
			if v, version, _ := x.Field(r.Context(), "basket"); string(v) != "staged" || version != 0 {
				t.Errorf("staged Field = %q, %d", v, version)
			}
			nv, err := x.WriteField(r.Context(), "basket", []byte("v3"), ver)
			if err != nil || nv == ver {
				t.Fatalf("WriteField = %d, %v", nv, err)
			}
			if v, version, _ := x.Field(r.Context(), "basket"); string(v) != "v3" || version != nv {
				t.Errorf("Field after WriteField = %q, %d; want v3, %d", v, version, nv)
			}
			if _, err := x.WriteField(r.Context(), "basket", []byte("v4"), ver); !errors.Is(err, cache.ErrConflict) {
				t.Errorf("stale WriteField = %v, want ErrConflict", err)
			}
			if _, err := x.WriteField(r.Context(), "other", []byte("o"), 0); err != nil {
				t.Errorf("WriteField of an absent field expecting 0 = %v", err)
			}
			if _, err := x.WriteField(r.Context(), "other", []byte("o2"), 0); !errors.Is(err, cache.ErrConflict) {
				t.Errorf("WriteField of a present field expecting 0 = %v", err)
			}
		})
		h.wantCalls("resume, Field, WriteField x4", cachetest.OpRead, cachetest.OpWrite, cachetest.OpWrite, cachetest.OpWrite, cachetest.OpWrite)
		h.do(id, func(w http.ResponseWriter, r *http.Request) {
			x := ExtensionOf(sess(t, r))
			v, version, _ := x.Field(r.Context(), "basket")
			if string(v) != "v3" || version == ver {
				t.Errorf("after WriteField: %q (a staged value must not override it)", v)
			}
		})
		// ReadField reads afresh after another request changed the field.
		h.do(id, func(w http.ResponseWriter, r *http.Request) {
			x := ExtensionOf(sess(t, r))
			_, stale, _ := x.Field(r.Context(), "basket")
			h.do(id, func(w http.ResponseWriter, r *http.Request) {
				x := ExtensionOf(sess(t, r))
				if _, err := x.WriteField(r.Context(), "basket", []byte("other request"), stale); err != nil {
					t.Error(err)
				}
			})
			if _, err := x.WriteField(r.Context(), "basket", []byte("mine"), stale); !errors.Is(err, cache.ErrConflict) {
				t.Errorf("WriteField on a stale version = %v", err)
			}
			v, fresh, err := x.ReadField(r.Context(), "basket")
			if err != nil || string(v) != "other request" || fresh == stale {
				t.Errorf("ReadField = %q, %d, %v", v, fresh, err)
			}
			if v, version, _ := x.Field(r.Context(), "basket"); string(v) != "other request" || version != fresh {
				t.Errorf("Field after ReadField = %q, %d", v, version)
			}
			if _, _, err := x.ReadField(r.Context(), "nothing"); !errors.Is(err, ErrNotFound) {
				t.Errorf("ReadField(absent) = %v", err)
			}
		})
		// WriteField on a session started in this request creates its record in
		// the same store write, with the request's other changes.
		h.calls.Reset()
		w = h.do("", func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			_ = s.Start(r.Context())
			_ = s.Put(r.Context(), "k", 1)
			x := ExtensionOf(s)
			if _, _, err := x.ReadField(r.Context(), "x"); !errors.Is(err, ErrNotFound) {
				t.Errorf("ReadField on a session not stored yet = %v", err)
			}
			if _, err := x.WriteField(r.Context(), "x", []byte("1"), 0); err != nil {
				t.Fatal(err)
			}
		})
		h.wantCalls("WriteField on a new session", cachetest.OpWrite)
		c = sessionCookie(t, w, "fxsession")
		h.do(c.Value, func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			if v, _, err := ExtensionOf(s).Field(r.Context(), "x"); err != nil || string(v) != "1" {
				t.Errorf("field of a new session = %q, %v", v, err)
			}
			var k int
			if err := s.Get(r.Context(), "k", &k); err != nil || k != 1 {
				t.Errorf("value written with it = %d, %v", k, err)
			}
		})
	})
}
