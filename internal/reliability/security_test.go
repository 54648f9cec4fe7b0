package reliability_test

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/session"
)

// TestSessionIDs: every ID the middleware issues is 43 characters of canonical
// base64url holding 256 bits, none repeats, and the bits look like what
// crypto/rand gives (per-position and overall balance, byte histogram,
// incompressibility). The source check confirms that the ID generator reads
// crypto/rand.
func TestSessionIDs(t *testing.T) {
	n := pick(2000, 20000)
	sh := newShop(t, shopConfig{Backend: memBackend(t)})
	seen := make(map[string]bool, n)
	var raw bytes.Buffer
	ones := make([]int, 256)
	var hist [256]int
	for i := range n {
		v := &visitor{}
		mustStatus(t, v.serve(sh.Handler, "POST", "/put?k=x&v=y"), 200, "start")
		id := v.Cookie()
		if len(id) != session.IDLength || !session.ValidID(id) || !wellFormed(id) {
			t.Fatalf("ID %d %q is not 43 characters of canonical base64url", i, id)
		}
		if seen[id] {
			t.Fatalf("ID %q issued twice", id)
		}
		seen[id] = true
		b, _ := base64.RawURLEncoding.DecodeString(id)
		raw.Write(b)
		for j, c := range b {
			hist[c]++
			for k := range 8 {
				if c&(0x80>>k) != 0 {
					ones[j*8+k]++
				}
			}
		}
	}
	// Per position: |p - 1/2| within 5 standard deviations.
	sd := math.Sqrt(0.25 / float64(n))
	worst, total := 0.0, 0
	for _, o := range ones {
		total += o
		worst = max(worst, math.Abs(float64(o)/float64(n)-0.5)/sd)
	}
	if worst > 5 {
		t.Fatalf("a bit position deviates by %.1f standard deviations", worst)
	}
	allSD := math.Sqrt(0.25 * float64(n*256))
	overall := (float64(total) - float64(n*128)) / allSD
	if math.Abs(overall) > 5 {
		t.Fatalf("overall ones deviate by %.1f standard deviations", overall)
	}
	// Byte histogram: chi-square with 255 degrees of freedom, mean 255, sd 22.6.
	exp := float64(n*32) / 256
	chi := 0.0
	for _, h := range hist {
		chi += (float64(h) - exp) * (float64(h) - exp) / exp
	}
	if chi > 255+6*22.6 || chi < 255-6*22.6 {
		t.Fatalf("byte histogram chi-square %.0f (255 expected)", chi)
	}
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.BestCompression)
	w.Write(raw.Bytes())
	w.Close()
	ratio := float64(z.Len()) / float64(raw.Len())
	if ratio < 0.99 {
		t.Fatalf("the IDs compress to %.3f of their size", ratio)
	}
	src := idSource(t)
	record(t, figure{
		Area:   "Security",
		Check:  "session IDs issued by the middleware: length, alphabet, canonical form, uniqueness, randomness",
		Amount: fmt.Sprintf("%d IDs (%d bits)", n, n*256),
		Measured: joinf(
			"all 43 characters of canonical base64url = 256 bits; no repeat",
			fmt.Sprintf("worst bit position %.2f σ, overall %.2f σ", worst, overall),
			fmt.Sprintf("byte χ² %.0f (255 expected)", chi),
			fmt.Sprintf("deflate ratio %.4f", ratio),
			src,
		),
	})
}

// idSource checks in session's source that the ID generator fills its bytes
// with crypto/rand.Read.
func idSource(t testing.TB) string {
	t.Helper()
	path := filepath.Join("..", "..", "session", "id.go")
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		t.Fatalf("reading the ID generator: %v", err)
	}
	randName := ""
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == "crypto/rand" {
			randName = "rand"
			if imp.Name != nil {
				randName = imp.Name.Name
			}
		}
	}
	found := false
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "newID" {
			continue
		}
		ast.Inspect(fn, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "Read" {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == randName && randName != "" {
					found = true
				}
			}
			return true
		})
	}
	if !found {
		t.Fatalf("session/id.go: newID does not read crypto/rand")
	}
	return "session/id.go newID reads crypto/rand (checked in the source)"
}

// idForms are the shapes in which an ID could leak into a store: the cookie
// text, its bytes, and their hex and standard base64 forms.
func idForms(id string) [][]byte {
	b, _ := base64.RawURLEncoding.DecodeString(id)
	return [][]byte{[]byte(id), b, []byte(hex.EncodeToString(b)), []byte(base64.StdEncoding.EncodeToString(b)), []byte(base64.RawStdEncoding.EncodeToString(b))}
}

func hashOf(id string) string {
	s := sha256.Sum256([]byte(id))
	return hex.EncodeToString(s[:])
}

// rawBlob is one piece of a store's raw contents: a key, a value, a file
// name, a file's bytes.
type rawBlob struct {
	where string
	data  []byte
}

// TestStoreHoldsOnlyHashes: visitors start sessions, log in (a new ID), write
// bags and values; then the raw store — every namespace of the memory store,
// every file name and byte of the file store, every Redis key and its DUMP and
// contents — is searched for every ID ever issued, in every form. None is
// there; the SHA-256 of each live ID is (the positive control).
func TestStoreHoldsOnlyHashes(t *testing.T) {
	visitors := pick(20, 200)
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			var backend cache.Backend
			var dir, ns string
			switch kind {
			case "memory":
				backend = memBackend(t)
			case "file":
				dir = t.TempDir()
				backend = fileBackend(t, dir)
			case "redis":
				ns = cachetest.Namespace("hash")
				backend = redisBackend(t, sharedRedis(t), ns)
			}
			sh := newShop(t, shopConfig{Backend: backend})
			var issued, live []string
			for i := range visitors {
				v := &visitor{}
				mustStatus(t, v.serve(sh.Handler, "POST", "/basket/update?sku=tea"), 200, "start")
				issued = append(issued, v.Cookie())
				mustStatus(t, v.serve(sh.Handler, "POST", "/login?user=u"+strconv.Itoa(i)), 200, "login")
				mustStatus(t, v.serve(sh.Handler, "POST", "/bag/prefs?k=k&v=v"), 200, "bag")
				mustStatus(t, v.serve(sh.Handler, "POST", "/put?k=note&v=n"), 200, "value")
				issued = append(issued, v.Cookie())
				live = append(live, v.Cookie())
			}
			blobs := rawContents(t, kind, backend, dir, ns)
			size := 0
			for _, b := range blobs {
				size += len(b.data)
			}
			for _, id := range issued {
				for _, form := range idForms(id) {
					for _, b := range blobs {
						if bytes.Contains(b.data, form) {
							t.Fatalf("the raw store holds session ID %s… (%d-byte form) in %s", id[:6], len(form), b.where)
						}
					}
				}
			}
			for _, id := range live {
				h := []byte(hashOf(id))
				found := false
				for _, b := range blobs {
					found = found || bytes.Contains(b.data, h)
				}
				if !found {
					t.Fatalf("the scan does not see the hash of a live session: is it scanning the store?")
				}
			}
			record(t, figure{
				Area:   "Security",
				Check:  kind + " store scanned raw for session IDs (cookie text, bytes, hex, standard base64) after starts, logins (ID renewal), bag and value writes",
				Amount: fmt.Sprintf("%d IDs issued (%d renewed away), %d raw pieces, %d bytes scanned", len(issued), len(issued)-len(live), len(blobs), size),
				Measured: joinf(
					"0 IDs found in any form",
					fmt.Sprintf("the SHA-256 hex of all %d live IDs found (control)", len(live)),
				),
			})
		})
	}
}

// rawContents reads everything a store holds, bypassing the session layer.
func rawContents(t testing.TB, kind string, backend cache.Backend, dir, ns string) []rawBlob {
	t.Helper()
	ctx := context.Background()
	var out []rawBlob
	switch kind {
	case "memory":
		for _, path := range [][]string{{}, {"session"}, {"session", "meta"}, {"session", "data"}} {
			b := subOf(t, backend, path...)
			for e, err := range b.All(ctx) {
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, rawBlob{b.Namespace() + " key", []byte(e.Key)}, rawBlob{b.Namespace() + " value " + e.Key, e.Value})
				for _, tag := range e.Tags {
					out = append(out, rawBlob{b.Namespace() + " tag", []byte(tag)})
				}
			}
		}
	case "file":
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			out = append(out, rawBlob{"path", []byte(p)})
			if d.Type().IsRegular() {
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				out = append(out, rawBlob{"file " + p, b})
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	case "redis":
		c := sharedRedis(t).Client()
		keys, err := c.Keys(ctx, "*{"+ns+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			t.Fatal("no Redis keys for the namespace")
		}
		for _, k := range keys {
			out = append(out, rawBlob{"key", []byte(k)})
			dump, err := c.Dump(ctx, k).Result()
			if err != nil {
				t.Fatalf("DUMP %s: %v", k, err)
			}
			out = append(out, rawBlob{"DUMP " + k, []byte(dump)})
			switch typ, _ := c.Type(ctx, k).Result(); typ {
			case "hash":
				m, err := c.HGetAll(ctx, k).Result()
				if err != nil {
					t.Fatal(err)
				}
				for f, v := range m {
					out = append(out, rawBlob{"HGETALL " + k, []byte(f + "\x00" + v)})
				}
			case "set":
				m, err := c.SMembers(ctx, k).Result()
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, rawBlob{"SMEMBERS " + k, []byte(strings.Join(m, "\x00"))})
			case "string":
				v, err := c.Get(ctx, k).Result()
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, rawBlob{"GET " + k, []byte(v)})
			}
		}
	}
	return out
}

// TestIDNotAdopted: an ID the client chose (well-formed, never issued; or one
// that was issued and has since been destroyed) is never adopted: starting a
// session sends a fresh ID and nothing is stored under the chosen one. After
// login (RenewID) the old ID reaches nothing, for reads and writes alike, and
// the new one keeps the data.
func TestIDNotAdopted(t *testing.T) {
	rounds := pick(5, 50)
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			backend := sharedBackends(t, kind, 1)[0]
			sh := newShop(t, shopConfig{Backend: backend})
			ctx := context.Background()
			gone := func(id string) bool {
				_, err := sh.Mgr.Session(ctx, id)
				return errors.Is(err, session.ErrNotFound)
			}
			for range rounds {
				// A chosen ID.
				chosen := randomID()
				v := &visitor{}
				v.SetCookie(chosen)
				mustStatus(t, v.serve(sh.Handler, "POST", "/basket/update?sku=tea"), 200, "start with a chosen ID")
				if v.Cookie() == chosen || v.Cookie() == "" || !gone(chosen) {
					t.Fatalf("the chosen ID was adopted (cookie now %q)", v.Cookie())
				}
				// A destroyed ID, presented again.
				dead := v.Cookie()
				mustStatus(t, v.serve(sh.Handler, "POST", "/logout"), 200, "logout")
				if v.Cookie() != "" {
					t.Fatal("logout left the cookie")
				}
				v.SetCookie(dead)
				mustStatus(t, v.serve(sh.Handler, "POST", "/basket/update?sku=tea"), 200, "start with a destroyed ID")
				if v.Cookie() == dead || !gone(dead) {
					t.Fatal("a destroyed ID came back to life")
				}
				// Renewal.
				mustStatus(t, v.serve(sh.Handler, "POST", "/basket/update?sku=mug&qty=2"), 200, "add")
				old := v.Cookie()
				mustStatus(t, v.serve(sh.Handler, "POST", "/login?user=alice"), 200, "login")
				renewed := v.Cookie()
				if renewed == old || !gone(old) {
					t.Fatal("login did not retire the old ID")
				}
				if n := v.serve(sh.Handler, "GET", "/basket").Int(t, "count"); n != 3 {
					t.Fatalf("the renewed session holds %d units, want 3", n)
				}
				stale := &visitor{}
				stale.SetCookie(old)
				r := stale.serve(sh.Handler, "GET", "/basket")
				if m := r.JSON(t); m["count"] != 0.0 || m["started"] != false {
					t.Fatalf("the old ID still reads the session: %s", r.Body)
				}
				mustStatus(t, stale.serve(sh.Handler, "POST", "/basket/update?sku=tea"), 200, "a write with the old ID")
				if stale.Cookie() == old || stale.Cookie() == renewed {
					t.Fatal("a write with the old ID reached a session")
				}
				if n := v.serve(sh.Handler, "GET", "/basket").Int(t, "count"); n != 3 {
					t.Fatalf("the write with the old ID changed the renewed session (%d units)", n)
				}
			}
			record(t, figure{
				Area:     "Security",
				Check:    kind + " store: client-chosen IDs, destroyed IDs presented again, and IDs retired by login (RenewID), for reads and writes",
				Amount:   fmt.Sprintf("%d rounds × (1 chosen, 1 destroyed, 1 renewed ID)", rounds),
				Measured: "none adopted: a fresh ID was issued each time, Manager.Session finds nothing under the old ones, reads with a retired ID see no session, writes with it start a new one; the renewed session kept its basket",
			})
		})
	}
}

// cookieCase is one configuration of the cookie attributes check.
type cookieCase struct {
	name    string
	cfg     session.Config
	tls     bool
	xfp     string // X-Forwarded-Proto sent
	want    http.Cookie
	wantRaw string // a fragment the raw header must hold ("" for none)
}

// TestCookieAttributes: the Set-Cookie header per configuration, over real
// loopback HTTP and HTTPS; Secure auto follows TLS and X-Forwarded-Proto from a
// trusted proxy only. The expiring cookie of a logout carries the same
// attributes.
func TestCookieAttributes(t *testing.T) {
	loop := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	other := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	def := http.Cookie{Name: "fxsession", Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}
	with := func(f func(*http.Cookie)) http.Cookie { c := def; f(&c); return c }
	cases := []cookieCase{
		{name: "defaults over HTTP", want: def},
		{name: "defaults over HTTPS: Secure auto", tls: true, want: with(func(c *http.Cookie) { c.Secure = true })},
		{name: "X-Forwarded-Proto https from a trusted proxy", cfg: session.Config{TrustedProxies: loop}, xfp: "https", want: with(func(c *http.Cookie) { c.Secure = true })},
		{name: "X-Forwarded-Proto HTTPS (any case) from a trusted proxy", cfg: session.Config{TrustedProxies: loop}, xfp: "HTTPS", want: with(func(c *http.Cookie) { c.Secure = true })},
		{name: "X-Forwarded-Proto http from a trusted proxy", cfg: session.Config{TrustedProxies: loop}, xfp: "http", want: def},
		{name: "X-Forwarded-Proto https from an untrusted address", cfg: session.Config{TrustedProxies: other}, xfp: "https", want: def},
		{name: "X-Forwarded-Proto https with no trusted proxies", xfp: "https", want: def},
		{name: "SecureAlways over HTTP", cfg: session.Config{Secure: session.SecureAlways}, want: with(func(c *http.Cookie) { c.Secure = true })},
		{name: "SecureNever over HTTPS", cfg: session.Config{Secure: session.SecureNever}, tls: true, want: def},
		{name: "SameSite Strict", cfg: session.Config{SameSite: session.SameSiteStrict}, want: with(func(c *http.Cookie) { c.SameSite = http.SameSiteStrictMode })},
		{name: "SameSite None forces Secure (even SecureNever)", cfg: session.Config{SameSite: session.SameSiteNone, Secure: session.SecureNever}, want: with(func(c *http.Cookie) { c.SameSite = http.SameSiteNoneMode; c.Secure = true })},
		{name: "__Host- prefix", cfg: session.Config{HostPrefix: true}, want: with(func(c *http.Cookie) { c.Name = "__Host-fxsession"; c.Secure = true })},
		{name: "name, path, domain, lifetime", cfg: session.Config{CookieName: "sid", CookiePath: "/shop", CookieDomain: "shop.example", CookieLifetime: 7200e9},
			want: with(func(c *http.Cookie) { c.Name = "sid"; c.Path = "/shop"; c.Domain = "shop.example"; c.MaxAge = 7200 }), wantRaw: "Max-Age=7200"},
		{name: "HttpOnly off", cfg: session.Config{DisableHTTPOnly: true}, want: with(func(c *http.Cookie) { c.HttpOnly = false })},
	}
	var lines []string
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mem := memBackend(t)
			cfg := c.cfg
			cfg.Logger = slog.New(&logSink{})
			m, err := session.New(mem, cfg)
			if err != nil {
				t.Fatal(err)
			}
			mux := http.NewServeMux()
			mux.HandleFunc("/start", func(w http.ResponseWriter, r *http.Request) {
				s, _ := session.FromContext(r.Context())
				if err := s.Start(r.Context()); err != nil {
					http.Error(w, err.Error(), 500)
				}
			})
			mux.HandleFunc("/end", func(w http.ResponseWriter, r *http.Request) {
				s, _ := session.FromContext(r.Context())
				if err := s.Destroy(r.Context(), "test"); err != nil {
					http.Error(w, err.Error(), 500)
				}
			})
			var srv *httptest.Server
			if c.tls {
				srv = httptest.NewTLSServer(m.Middleware(mux))
			} else {
				srv = httptest.NewServer(m.Middleware(mux))
			}
			defer srv.Close()
			hc := srv.Client()
			defer hc.CloseIdleConnections()
			get := func(path, cookie string) *http.Cookie {
				req, _ := http.NewRequest("GET", srv.URL+path, nil)
				if c.xfp != "" {
					req.Header.Set("X-Forwarded-Proto", c.xfp)
				}
				if cookie != "" {
					req.Header.Set("Cookie", cookie)
				}
				res, err := hc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				sc := res.Header.Values("Set-Cookie")
				if len(sc) != 1 {
					t.Fatalf("%s: Set-Cookie %q", path, sc)
				}
				ck, err := http.ParseSetCookie(sc[0])
				if err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				if path == "/start" && c.wantRaw != "" && !strings.Contains(sc[0], c.wantRaw) {
					t.Fatalf("%s: %q lacks %q", path, sc[0], c.wantRaw)
				}
				if path == "/start" {
					lines = append(lines, c.name+": "+strings.Replace(sc[0], ck.Value, "…", 1))
				}
				return ck
			}
			check := func(got *http.Cookie, want http.Cookie) {
				t.Helper()
				if got.Name != want.Name || got.Path != want.Path || got.Domain != want.Domain || got.MaxAge != want.MaxAge ||
					got.Secure != want.Secure || got.HttpOnly != want.HttpOnly || got.SameSite != want.SameSite {
					t.Fatalf("cookie %+v\nwant   %+v", *got, want)
				}
			}
			started := get("/start", "")
			if !wellFormed(started.Value) {
				t.Fatalf("cookie value %q", started.Value)
			}
			check(started, c.want)
			ended := get("/end", started.Name+"="+started.Value)
			want := c.want
			want.MaxAge = -1
			if ended.Value != "" {
				t.Fatalf("the expiring cookie carries a value: %q", ended.Value)
			}
			check(ended, want)
		})
	}
	record(t, figure{
		Area:     "Security",
		Check:    "Set-Cookie attributes per configuration over real loopback HTTP/HTTPS (defaults, Secure auto via TLS and via X-Forwarded-Proto from trusted / untrusted / no proxies, SecureAlways/Never, SameSite Strict/None, __Host-, name/path/domain/lifetime, HttpOnly off), and the expiring cookie of a logout",
		Amount:   fmt.Sprintf("%d configurations × (start, logout)", len(cases)),
		Measured: "every attribute as configured; Secure from X-Forwarded-Proto only when the peer is a trusted proxy; logout cookies Max-Age=0 with the same Path/Domain/flags",
	})
	t.Logf("Set-Cookie per configuration:\n%s", strings.Join(lines, "\n"))
}
