package reliability_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/internal/reliability"
	"github.com/fxsession/fxsession/session"
)

// ---- cookies ----

const b64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// randomID is a well-formed session ID the server never issued: a 16-byte
// selector and a 32-byte verifier, each in unpadded base64url.
func randomID() string {
	var sel [16]byte
	var ver [32]byte
	_, _ = rand.Read(sel[:])
	_, _ = rand.Read(ver[:])
	return base64.RawURLEncoding.EncodeToString(sel[:]) + base64.RawURLEncoding.EncodeToString(ver[:])
}

// wellFormed is the test's own oracle for a session ID: 65 characters of
// strict (canonical) unpadded base64url, a 22-character selector holding 16
// bytes and a 43-character verifier holding 32.
func wellFormed(v string) bool {
	if len(v) != 65 {
		return false
	}
	sel, err1 := base64.RawURLEncoding.Strict().DecodeString(v[:22])
	ver, err2 := base64.RawURLEncoding.Strict().DecodeString(v[22:])
	return err1 == nil && err2 == nil && len(sel) == 16 && len(ver) == 32
}

// The last character of each part of an ID, and how many of its low bits the
// part leaves unused (they must be zero in the canonical form).
const (
	selectorEnd, selectorPad = 21, 4
	verifierEnd, verifierPad = 64, 2
)

// presentedID returns the first well-formed value of a cookie called name in
// the Cookie header lines, as RFC 6265 reads them (pairs split at ";", spaces and
// tabs trimmed around them, the name matched exactly).
func presentedID(lines []string, name string) (string, bool) {
	for _, line := range lines {
		for part := range strings.SplitSeq(line, ";") {
			part = strings.Trim(part, " \t")
			k, v, ok := strings.Cut(part, "=")
			if !ok || k != name {
				continue
			}
			if v = strings.Trim(v, " \t"); wellFormed(v) {
				return v, true
			}
		}
	}
	return "", false
}

// expiresCookie reports whether the Set-Cookie headers of h are exactly one,
// expiring the session cookie (no value, Max-Age=0).
func expiresCookie(h http.Header) bool {
	cs := (&http.Response{Header: h}).Cookies()
	return len(cs) == 1 && cs[0].Name == cookieName && cs[0].Value == "" && cs[0].MaxAge < 0
}

// cookieGen builds Cookie header lines of every kind.
type cookieGen struct {
	rng  *mrand.Rand
	real []string // IDs of live sessions
}

// kinds of generated headers, for the figures.
const (
	kindMalformed = "malformed"
	kindUnknown   = "well-formed, never issued"
	kindMutated   = "a live ID with one character changed"
	kindReal      = "a live ID (control)"
)

func (g *cookieGen) pickChar(alphabet string) byte { return alphabet[g.rng.IntN(len(alphabet))] }

func (g *cookieGen) b64(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = g.pickChar(b64url)
	}
	return string(b)
}

// malformedValue is a value that must never reach the store.
func (g *cookieGen) malformedValue() string {
	id := randomID()
	switch g.rng.IntN(16) {
	case 0:
		return ""
	case 1:
		return id[:g.rng.IntN(len(id))]
	case 2:
		return id + g.b64(1+g.rng.IntN(3))
	case 3:
		return id + "="
	case 4: // one character outside base64url
		b := []byte(id)
		b[g.rng.IntN(len(b))] = g.pickChar("+/=.~!*'()%$&,:@[]{} \"\\\x00\x01\x7f")
		return string(b)
	case 5: // canonical form broken: the unused bits of a part's last character set
		b := []byte(id)
		end, pad := selectorEnd, selectorPad
		if g.rng.IntN(2) == 0 {
			end, pad = verifierEnd, verifierPad
		}
		for {
			c := g.pickChar(b64url)
			if strings.IndexByte(b64url, c)&(1<<pad-1) != 0 {
				b[end] = c
				return string(b)
			}
		}
	case 6:
		return `"` + id + `"`
	case 7:
		return base64.StdEncoding.EncodeToString([]byte(id[:32]))
	case 8: // bytes of any value
		b := make([]byte, g.rng.IntN(80))
		for i := range b {
			b[i] = byte(g.rng.IntN(256))
		}
		return string(b)
	case 9:
		return strings.Repeat(id, 1+g.rng.IntN(100))
	case 10:
		return "é" + id[2:]
	case 11:
		return id[:20] + "\r\nX-Injected: 1" + id[20:]
	case 12:
		return strings.ToUpper(id[:10]) + "+" + id[11:]
	case 13:
		return id[:21] + " " + id[22:]
	case 14:
		return "../../" + id
	default:
		return g.b64(g.rng.IntN(200))
	}
}

// header returns Cookie header lines of the given kind.
func (g *cookieGen) header(kind string) []string {
	var value string
	switch kind {
	case kindMalformed:
		value = g.malformedValue()
	case kindUnknown:
		value = randomID()
	case kindMutated:
		b := []byte(g.real[g.rng.IntN(len(g.real))])
		// Any character but the last of each part (kept canonical): a changed
		// selector names no record, a changed verifier does not open it.
		i := g.rng.IntN(verifierEnd - 1)
		if i >= selectorEnd {
			i++
		}
		for c := b[i]; c == b[i]; {
			b[i] = g.pickChar(b64url)
		}
		value = string(b)
	case kindReal:
		value = g.real[g.rng.IntN(len(g.real))]
	}
	pair := cookieName + "=" + value
	if kind == kindMalformed {
		switch g.rng.IntN(6) {
		case 0: // our ID under a name that is not ours
			pair = []string{"FXSESSION", "fxsession ", "xfxsession", "fxsession_", "__Host-fxsession"}[g.rng.IntN(5)] + "=" + randomID()
		case 1: // several malformed values under our name
			pair = pair + "; " + cookieName + "=" + g.malformedValue()
		}
	}
	others := []string{"theme=dark", "_ga=GA1.2.3.4", "a=", "=b", ";;", "x", "csrf=" + g.b64(20)}
	var parts []string
	for range g.rng.IntN(3) {
		parts = append(parts, others[g.rng.IntN(len(others))])
	}
	parts = append(parts, pair)
	for range g.rng.IntN(3) {
		parts = append(parts, others[g.rng.IntN(len(others))])
	}
	g.rng.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
	sep := []string{"; ", ";", " ; ", ";\t"}[g.rng.IntN(4)]
	if g.rng.IntN(8) == 0 { // split over two header lines
		k := g.rng.IntN(len(parts) + 1)
		return []string{strings.Join(parts[:k], sep), strings.Join(parts[k:], sep)}
	}
	return []string{strings.Join(parts, sep)}
}

// TestHostileCookies: random well-formed and malformed cookies through the
// middleware (with a route that reads the session). A malformed cookie costs no
// store access at all and gets no Set-Cookie; a well-formed unknown one costs
// exactly one read and no write, and its response only expires the cookie;
// none is adopted as a session (no session cookie set, nothing stored); memory
// stays flat. Live IDs (1%) are the control that adoption would be seen.
func TestHostileCookies(t *testing.T) {
	total := pick(10_000, 100_000)
	mem := memStore(t)
	counting := reliability.NewCounting(mem)
	sh := newShop(t, shopConfig{Store: counting})
	g := &cookieGen{rng: mrand.New(mrand.NewPCG(1, 2))}
	for range 100 {
		v := &visitor{}
		mustStatus(t, v.serve(sh.Handler, "POST", "/basket/update?sku=tea"), 200, "a live session")
		g.real = append(g.real, v.Cookie())
	}
	recordsBefore := len(sessionKeys(t, mem))

	counts := map[string]int{}
	var heapBefore, heapAfter runtime.MemStats
	send := func(i int) {
		var kind string
		switch p := g.rng.IntN(100); {
		case p < 60:
			kind = kindMalformed
		case p < 90:
			kind = kindUnknown
		case p < 99:
			kind = kindMutated
		default:
			kind = kindReal
		}
		lines := g.header(kind)
		id, presented := presentedID(lines, cookieName)
		if kind == kindMalformed && presented {
			kind = kindUnknown // the generator made a valid one by chance
		}
		counts[kind]++
		r := httptest.NewRequest("GET", "/basket", nil)
		r.Header["Cookie"] = lines
		w := httptest.NewRecorder()
		reads, writes := counting.Reads(), counting.Writes()
		sh.Handler.ServeHTTP(w, r)
		dr, dw := counting.Reads()-reads, counting.Writes()-writes
		if w.Code != 200 {
			t.Fatalf("request %d (%s, %q): status %d %s", i, kind, lines, w.Code, w.Body)
		}
		started := bytes.Contains(w.Body.Bytes(), []byte(`"started":true`))
		setCookie := w.Header().Get("Set-Cookie")
		switch {
		case !presented:
			if dr != 0 || dw != 0 || started || setCookie != "" {
				t.Fatalf("request %d: malformed cookie %q reached the store (%d reads, %d writes), started %v, Set-Cookie %q",
					i, lines, dr, dw, started, setCookie)
			}
		case kind == kindReal:
			if !started || dw != 0 || setCookie != "" {
				t.Fatalf("request %d: the live session %s… did not resume (%s), wrote (%d) or set a cookie %q", i, id[:6], w.Body, dw, setCookie)
			}
		default:
			// The ID names no live session: the response expires the cookie
			// (so that the browser stops sending a dead ID) and sets no other.
			if dr != 1 || dw != 0 || started || !expiresCookie(w.Header()) {
				t.Fatalf("request %d: well-formed unknown ID (%s): %d reads, %d writes, started %v, Set-Cookie %q; want 1 read and the cookie expired",
					i, kind, dr, dw, started, w.Header().Values("Set-Cookie"))
			}
		}
	}
	const warm = 1000
	for i := range warm {
		send(i)
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&heapBefore)
	start := time.Now()
	for i := warm; i < total; i++ {
		send(i)
	}
	took := time.Since(start)
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&heapAfter)
	growth := int64(heapAfter.HeapAlloc) - int64(heapBefore.HeapAlloc)
	if growth > 4<<20 {
		t.Fatalf("heap grew by %d bytes over %d requests (%d → %d)", growth, total-warm, heapBefore.HeapAlloc, heapAfter.HeapAlloc)
	}
	if after := len(sessionKeys(t, mem)); after != recordsBefore {
		t.Fatalf("the store holds %d session records after the flood, %d before", after, recordsBefore)
	}
	record(t, figure{
		Area:   "Hostile input",
		Check:  "random Cookie headers through the middleware on a route that reads the session (store wrapped in a counting decorator): malformed values (bad length, alphabet, padding, non-canonical, quoted, binary, CR LF, huge, wrong name, several), well-formed never-issued IDs, live IDs with one character changed, live IDs as control",
		Amount: fmt.Sprintf("%d requests: %d malformed, %d never issued, %d mutated, %d live", total, counts[kindMalformed], counts[kindUnknown], counts[kindMutated], counts[kindReal]),
		Measured: joinf(
			"malformed: 0 store calls",
			"well-formed unknown: exactly 1 read, 0 writes each, the cookie expired (Max-Age=0)",
			"none adopted: no session cookie set, no session, session records unchanged ("+fmt.Sprint(recordsBefore)+")",
			fmt.Sprintf("heap %+d bytes after %d requests (%.1f MiB → %.1f MiB, GC'd)", growth, total-warm, float64(heapBefore.HeapAlloc)/(1<<20), float64(heapAfter.HeapAlloc)/(1<<20)),
			fmt.Sprintf("%v", took.Round(time.Millisecond)),
		),
	})
}

// ---- oversized payloads ----

// TestOversizedPayloads: a basket grown past Config.MaxPayload is refused with
// an error that says so, through Update and through a plain change committed by
// the middleware; the same for a raw value and a bag. The stored versions stay
// exactly as they were.
func TestOversizedPayloads(t *testing.T) {
	const limit = 64 << 10
	backend := fileStore(t, t.TempDir())
	var handled []error
	cfg := session.Config{
		MaxPayload: limit,
		// The app maps a too-large value to 413 (the default handler answers
		// every commit failure with 503).
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			handled = append(handled, err)
			apiError(w, err)
		},
	}
	sh := newShop(t, shopConfig{Store: backend, Session: cfg})
	v := &visitor{}
	for i := range 6 {
		mustStatus(t, v.serve(sh.Handler, "POST", fmt.Sprintf("/basket/update?sku=s%d&note_kb=10", i)), 200, "growing the basket")
	}
	mustStatus(t, v.serve(sh.Handler, "POST", "/put?k=big&v=small"), 200, "a small raw value")
	mustStatus(t, v.serve(sh.Handler, "POST", "/bag/prefs?k=a&v=1"), 200, "a small bag")
	ten := strings.Repeat("q", 10<<10)
	for i := range 6 {
		mustStatus(t, v.serve(sh.Handler, "POST", fmt.Sprintf("/bag/ui?k=k%d&v=%s", i, ten)), 200, "growing a bag")
	}
	_, basket := storedField(t, backend, basketField)
	_, raw := storedField(t, backend, "v:big")
	_, bag := storedField(t, backend, "b:prefs")
	_, grown := storedField(t, backend, "b:ui")

	type attempt struct{ what, method, target string }
	var measured []string
	for _, a := range []attempt{
		{"Update past the limit", "POST", "/basket/update?sku=s7&note_kb=10"},
		{"plain change past the limit (committed by the middleware)", "POST", "/basket/plain?sku=s8&note_kb=10"},
		{"Session.Put past the limit", "POST", "/put?k=big&v_kb=70"},
		{"bag value past the limit", "POST", "/bag/prefs?k=b&v=" + strings.Repeat("z", limit+1)},
		{"bag grown past the limit by a seventh 10 KiB value (committed by the middleware)", "POST", "/bag/ui?k=k6&v=" + ten},
	} {
		r := v.serve(sh.Handler, a.method, a.target)
		body := strings.TrimSpace(string(r.Body))
		if r.Status != http.StatusRequestEntityTooLarge || !strings.Contains(body, "too large") || !strings.Contains(body, "limit 65536") {
			t.Fatalf("%s: %v; want 413 naming the size and the limit", a.what, r)
		}
		measured = append(measured, fmt.Sprintf("%s: 413 %s", a.what, body))
	}
	if len(handled) != 2 || !errors.Is(handled[0], cache.ErrValueTooLarge) || !errors.Is(handled[1], cache.ErrValueTooLarge) {
		t.Fatalf("the commits past the limit reached the error handler with %v", handled)
	}
	r := v.serve(sh.Handler, "GET", "/basket")
	mustStatus(t, r, 200, "reading the basket")
	if n := r.Int(t, "lines"); n != 6 {
		t.Fatalf("basket has %d lines after the refusals, want the previous 6", n)
	}
	for _, c := range []struct {
		name   string
		before cache.Field
		field  string
	}{{"basket", basket, basketField}, {"raw value", raw, "v:big"}, {"bag", bag, "b:prefs"}, {"grown bag", grown, "b:ui"}} {
		_, after := storedField(t, backend, c.field)
		if after.Version != c.before.Version || !bytes.Equal(after.Value, c.before.Value) {
			t.Fatalf("the stored %s changed: version %d → %d", c.name, c.before.Version, after.Version)
		}
	}

	// The same plain change with the default error handler: refused too, but
	// answered as a generic 503.
	plain := newShop(t, shopConfig{Store: backend, Session: session.Config{MaxPayload: limit}})
	r = v.serve(plain.Handler, "POST", "/basket/plain?sku=s9&note_kb=10")
	if r.Status < 400 {
		t.Fatalf("default error handler: a too-large basket was accepted: %v", r)
	}
	if _, after := storedField(t, backend, basketField); after.Version != basket.Version {
		t.Fatal("default error handler: the stored basket changed")
	}
	measured = append(measured, fmt.Sprintf("with the default ErrorHandler the plain change answers %d %q", r.Status, strings.TrimSpace(string(r.Body))))
	measured = append(measured, fmt.Sprintf("stored basket (%d bytes), raw value and both bags (%d bytes): same version and bytes as before", len(basket.Value), len(grown.Value)))
	record(t, figure{
		Area:     "Hostile input",
		Check:    "oversized payloads (MaxPayload 64 KiB, file store): a basket of six 10 KiB lines grown by a seventh through Update and through a plain change; a raw value and a bag value past the limit; a bag of six 10 KiB values grown by a seventh",
		Amount:   "6 refused writes",
		Measured: joinf(measured...),
	})
}

// ---- changed Go types ----

// TestChangedType: sessions written by one build (Basket with Items []Line)
// are read by the next, whose Basket stored under the same key has Items string.
// The basket loads fresh with a warning naming the type, the request succeeds,
// and the session's other objects, bag and values survive.
func TestChangedType(t *testing.T) {
	dir := t.TempDir()
	v := &visitor{}
	{
		old := newShop(t, shopConfig{Store: fileStore(t, dir)})
		for _, target := range []string{"/basket/update?sku=tea&qty=3", "/basket/update?sku=mug", "/wish/plain?sku=pot", "/bag/prefs?k=lang&v=de", "/put?k=user&v=alice"} {
			mustStatus(t, v.serve(old.Handler, "POST", target), 200, target)
		}
		if err := old.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	id := v.Cookie()

	next := newShop(t, shopConfig{Store: fileStore(t, dir), V2: true})
	r := v.serve(next.Handler, "GET", "/basket")
	mustStatus(t, r, 200, "reading the changed basket")
	if m := r.JSON(t); m["count"] != 0.0 || m["started"] != true {
		t.Fatalf("the changed basket: %s; want a fresh one in the same session", r.Body)
	}
	warn := next.Logs.Matching("no longer fits")
	if len(warn) != 1 || !strings.Contains(warn[0], "BasketV2") {
		t.Fatalf("warnings: %q; want one naming the type", warn)
	}
	if n := v.serve(next.Handler, "GET", "/wish").Int(t, "count"); n != 1 {
		t.Fatalf("the wishlist did not survive: %d", n)
	}
	if got := v.serve(next.Handler, "GET", "/bag/prefs").JSON(t)["lang"]; got != "de" {
		t.Fatalf("the bag did not survive: %v", got)
	}
	if got := v.serve(next.Handler, "GET", "/put?k=user").JSON(t)["head"]; got != "alice" {
		t.Fatalf("the raw value did not survive: %v", got)
	}
	mustStatus(t, v.serve(next.Handler, "POST", "/basket/update?sku=abc"), 200, "writing the new type")
	r = v.serve(next.Handler, "GET", "/basket")
	if n := r.Int(t, "count"); n != 3 {
		t.Fatalf("the new basket holds %d characters, want 3", n)
	}
	if v.Cookie() != id {
		t.Fatal("the session ID changed")
	}
	if w := next.Logs.Matching("no longer fits"); len(w) != 1 {
		t.Fatalf("the replaced basket still warns: %q", w)
	}
	record(t, figure{
		Area:   "Hostile input",
		Check:  "changed Go type: a session written by a build whose Basket.Items is []Line, read by a build whose Basket.Items is a string (same storage key), file store",
		Amount: "1 session with 2 session-scoped objects, 1 bag, 1 raw value",
		Measured: joinf(
			"read: 200, a fresh basket, one warning: "+warn[0],
			"wishlist, bag and raw value intact; same session ID",
			"the next write replaced the old basket; no further warning",
		),
	})
}
