package reliability_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/internal/reliability"
	"github.com/fxsession/fxsession/session"
)

// FuzzBagDecode stores arbitrary bytes as a session's attribute bag (flash=false)
// or flash bag (flash=true) and uses the session: every read must work or fail
// with an error (a bag that does not decode starts empty with a warning), never
// panic; a write and commit afterwards must work, and what was written must read
// back.
func FuzzBagDecode(f *testing.F) {
	ctx := context.Background()
	mem := memstore.New(memstore.Options{Namespace: "fuzz"})
	f.Cleanup(func() { mem.Close() })
	m, err := session.New(mem, session.Config{Logger: slog.New(&logSink{}), MaxPayload: 64 << 10})
	if err != nil {
		f.Fatal(err)
	}
	if err := m.RegisterBag("prefs"); err != nil {
		f.Fatal(err)
	}
	sctx, s := m.NewContext(ctx, "")
	if err := s.Start(sctx); err != nil {
		f.Fatal(err)
	}
	bag, _ := s.Bag("prefs")
	if err := bag.Set(sctx, "lang", "de"); err != nil {
		f.Fatal(err)
	}
	if err := bag.Set(sctx, "n", 42); err != nil {
		f.Fatal(err)
	}
	if err := s.Flashes().Add(sctx, "info", "hello"); err != nil {
		f.Fatal(err)
	}
	if err := s.Commit(sctx); err != nil {
		f.Fatal(err)
	}
	id, _ := s.ID(sctx)
	ref, bagField := storedField(f, mem, "b:prefs")
	_, flashField := storedField(f, mem, "f")

	f.Add(bagField.Value, false)
	f.Add(flashField.Value, true)
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff}, false)
	f.Add([]byte{0x81, 0xa4, 'i', 'n', 'f', 'o', 0x91, 0xc1}, true)
	f.Add([]byte{0x92, 0x01, 0x02}, false)
	f.Add([]byte{}, true)
	f.Fuzz(func(t *testing.T, value []byte, flash bool) {
		name := bagField.Name
		if flash {
			name = flashField.Name
		}
		overwriteField(t, mem, ref, name, value)
		rctx, rs := m.NewContext(ctx, id)
		b, err := rs.Bag("prefs")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Keys(rctx); err != nil {
			t.Fatalf("Keys: %v", err)
		}
		all, err := b.All(rctx)
		if err != nil {
			t.Fatalf("All: %v", err)
		}
		for _, v := range all {
			var a any
			if err := v.Decode(&a); err != nil && !errors.Is(err, session.ErrDecode) {
				t.Fatalf("Decode: %v", err)
			}
		}
		var lang string
		if err := b.Get(rctx, "lang", &lang); err != nil && !errors.Is(err, session.ErrDecode) && !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("Get: %v", err)
		}
		if _, err := rs.Flashes().PeekAll(rctx); err != nil {
			t.Fatalf("PeekAll: %v", err)
		}
		if _, err := rs.Flashes().All(rctx); err != nil {
			t.Fatalf("Flashes.All: %v", err)
		}
		if err := b.Set(rctx, "written", "after"); err != nil {
			t.Fatalf("Set: %v", err)
		}
		if err := rs.Flashes().Add(rctx, "info", "again"); err != nil {
			t.Fatalf("Flashes.Add: %v", err)
		}
		if err := rs.Commit(rctx); err != nil && !errors.Is(err, cache.ErrValueTooLarge) {
			t.Fatalf("Commit: %v", err)
		}
		cctx, cs := m.NewContext(ctx, id)
		cb, _ := cs.Bag("prefs")
		var got string
		if err := cb.Get(cctx, "written", &got); err != nil || got != "after" {
			t.Fatalf("the value written after loading the fuzzed bag reads back as %q, %v", got, err)
		}
	})
}

// FuzzCookieHeader sends arbitrary Cookie header lines through the session
// middleware to a route that reads the session, on a store that counts its
// calls: no panic; a line without a well-formed session ID (the test's own
// RFC 6265 reading) costs no store call and gets no Set-Cookie; a line with one
// costs exactly one read, never yields a session (no ID was ever issued here)
// and only expires the cookie.
func FuzzCookieHeader(f *testing.F) {
	mem := memstore.New(memstore.Options{Namespace: "fuzz"})
	f.Cleanup(func() { mem.Close() })
	counting := reliability.NewCounting(mem)
	m, err := session.New(counting, session.Config{Logger: slog.New(&logSink{})})
	if err != nil {
		f.Fatal(err)
	}
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		started, err := s.IsStarted(r.Context())
		if err != nil || started {
			http.Error(w, "unexpected session", http.StatusTeapot)
		}
	}))
	id := randomID()
	for _, s := range []string{
		"fxsession=" + id,
		"a=1; fxsession=" + id + "; b=2",
		"fxsession=" + id[:len(id)-1],
		"fxsession=" + id[:session.RefLength],
		"fxsession=" + id + "=",
		"fxsession=\"" + id + "\"",
		"fxsession=\t" + id + " ",
		"FXSESSION=" + id,
		"fxsession=bad; fxsession=" + id,
		"fxsession =" + id,
		";;;=",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if strings.ContainsAny(line, "\r\n") {
			return // a header line cannot hold CR or LF on the wire
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.Header["Cookie"] = []string{line}
		w := httptest.NewRecorder()
		reads, writes := counting.Reads(), counting.Writes()
		h.ServeHTTP(w, r)
		dr, dw := counting.Reads()-reads, counting.Writes()-writes
		if w.Code != 200 {
			t.Fatalf("%q: status %d", line, w.Code)
		}
		_, presented := presentedID([]string{line}, cookieName)
		switch setCookie := w.Header().Values("Set-Cookie"); {
		case !presented && (dr != 0 || dw != 0 || len(setCookie) != 0):
			t.Fatalf("%q holds no well-formed ID but cost %d reads, %d writes, Set-Cookie %q", line, dr, dw, setCookie)
		case presented && (dr != 1 || dw != 0 || !expiresCookie(w.Header())):
			t.Fatalf("%q holds a well-formed ID and cost %d reads, %d writes, Set-Cookie %q; want 1 read and the cookie expired", line, dr, dw, setCookie)
		}
	})
}
