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

	"github.com/redis/go-redis/v9"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/session"
)

// TestSessionIDs: every ID the middleware issues is 65 characters of canonical
// base64url: a 22-character selector (128 bits, the session's reference) and a
// 43-character verifier (256 bits, the secret); no ID, selector or verifier
// repeats, and the bits of both parts look like what crypto/rand gives
// (per-position and overall balance, byte histogram, incompressibility). The
// source check confirms that the ID and verifier generators read crypto/rand.
func TestSessionIDs(t *testing.T) {
	const idBytes = 16 + 32
	n := pick(2000, 20000)
	sh := newShop(t, shopConfig{Store: memStore(t)})
	seen := make(map[string]bool, 2*n)
	var raw bytes.Buffer
	ones := make([]int, idBytes*8)
	var hist [256]int
	for i := range n {
		v := &visitor{}
		mustStatus(t, v.serve(sh.Handler, "POST", "/put?k=x&v=y"), 200, "start")
		id := v.Cookie()
		if len(id) != session.IDLength || !session.ValidID(id) || !wellFormed(id) {
			t.Fatalf("ID %d %q is not 65 characters of canonical base64url (22 + 43)", i, id)
		}
		sel, ver := id[:session.RefLength], id[session.RefLength:]
		for _, part := range []string{"s" + sel, "v" + ver} {
			if seen[part] {
				t.Fatalf("ID %q: its %s issued twice", id, map[byte]string{'s': "selector", 'v': "verifier"}[part[0]])
			}
			seen[part] = true
		}
		sb, _ := base64.RawURLEncoding.DecodeString(sel)
		vb, _ := base64.RawURLEncoding.DecodeString(ver)
		b := append(sb, vb...)
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
	bits := n * idBytes * 8
	allSD := math.Sqrt(0.25 * float64(bits))
	overall := (float64(total) - float64(bits/2)) / allSD
	if math.Abs(overall) > 5 {
		t.Fatalf("overall ones deviate by %.1f standard deviations", overall)
	}
	// Byte histogram: chi-square with 255 degrees of freedom, mean 255, sd 22.6.
	exp := float64(n*idBytes) / 256
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
		Check:  "session IDs issued by the middleware: length, alphabet, canonical form, uniqueness, randomness of the selector and the verifier",
		Amount: fmt.Sprintf("%d IDs (%d bits: 128 of selector and 256 of verifier each)", n, bits),
		Measured: joinf(
			"all 65 characters of canonical base64url = 22 of selector (128 bits) + 43 of verifier (256 bits); no selector or verifier repeats",
			fmt.Sprintf("worst bit position %.2f σ, overall %.2f σ", worst, overall),
			fmt.Sprintf("byte χ² %.0f (255 expected)", chi),
			fmt.Sprintf("deflate ratio %.4f", ratio),
			src,
		),
	})
}

// idSource checks in session's source that the ID generator (newID) and the
// verifier generator of renewals (newVerifier) fill their bytes with
// crypto/rand.Read.
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
	found := map[string]bool{}
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "newID" && fn.Name.Name != "newVerifier" {
			continue
		}
		ast.Inspect(fn, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "Read" {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == randName && randName != "" {
					found[fn.Name.Name] = true
				}
			}
			return true
		})
	}
	for _, name := range []string{"newID", "newVerifier"} {
		if !found[name] {
			t.Fatalf("session/id.go: %s does not read crypto/rand", name)
		}
	}
	return "session/id.go newID and newVerifier read crypto/rand (checked in the source)"
}

// secretForms are the shapes in which an ID's secret could leak into a store:
// the whole ID and its verifier part as cookie text, the bytes of both, and
// those bytes' hex and standard base64 forms. (The selector, the ID's first 22
// characters, is the record's key: public by design.)
func secretForms(id string) [][]byte {
	sel, ver := id[:session.RefLength], id[session.RefLength:]
	sb, _ := base64.RawURLEncoding.DecodeString(sel)
	vb, _ := base64.RawURLEncoding.DecodeString(ver)
	forms := [][]byte{[]byte(id), []byte(ver)}
	for _, b := range [][]byte{append(sb, vb...), vb} {
		forms = append(forms, b, []byte(hex.EncodeToString(b)), []byte(base64.StdEncoding.EncodeToString(b)), []byte(base64.RawStdEncoding.EncodeToString(b)))
	}
	return forms
}

// verifierHash is what the store keeps of an ID's secret: the SHA-256 of its
// verifier part.
func verifierHash(id string) []byte {
	h := sha256.Sum256([]byte(id[session.RefLength:]))
	return h[:]
}

// rawBlob is one piece of a store's contents: a key, a field name or value, a
// tag, a file name, a file's bytes.
type rawBlob struct {
	where string
	data  []byte
}

// TestStoreHoldsOnlyHashes: visitors start sessions, log in (a new ID: a new
// verifier under the same selector), write bags and values. Then (1) every
// record of the store, read through cache.Store — its key, every field's name
// and value, every tag — and (2) the raw store — every file name and byte of
// the file store, every Redis key of the namespace with its DUMP and contents —
// are searched for every ID ever issued and for its verifier, in every form.
// None is there. The session records' keys are exactly the live sessions'
// selectors (the only part of an ID the store holds, and only as a key), and the
// SHA-256 of each live verifier is found (the positive control that the scan
// sees the metadata).
func TestStoreHoldsOnlyHashes(t *testing.T) {
	visitors := pick(20, 200)
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			var store cache.Store
			var dir, ns string
			switch kind {
			case "memory":
				store = memStore(t)
			case "file":
				dir = t.TempDir()
				store = fileStore(t, dir)
			case "redis":
				ns = cachetest.Namespace("hash")
				store = redisStore(t, sharedRedis(t), ns)
			}
			sh := newShop(t, shopConfig{Store: store})
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

			// The records: keys are the live selectors, nothing else of an ID.
			liveRefs := map[string]bool{}
			for _, id := range live {
				liveRefs[id[:session.RefLength]] = true
			}
			keys := sessionKeys(t, store)
			for _, k := range keys {
				if !liveRefs[k] {
					t.Fatalf("the store holds a session record under %q, which is no live session's selector", k)
				}
			}
			if len(keys) != len(live) {
				t.Fatalf("%d session records for %d live sessions", len(keys), len(live))
			}
			recs := recordContents(t, store)
			blobs := append(recs, rawContents(t, kind, dir, ns)...)
			size := 0
			for _, b := range blobs {
				size += len(b.data)
			}
			for _, id := range issued {
				for _, form := range secretForms(id) {
					for _, b := range blobs {
						if bytes.Contains(b.data, form) {
							t.Fatalf("the store holds session ID %s… or its verifier (%d-byte form) in %s", id[:6], len(form), b.where)
						}
					}
				}
			}
			for _, id := range live {
				h := verifierHash(id)
				for _, scan := range []struct {
					what  string
					blobs []rawBlob
				}{{"the records", recs}, {"the raw store", blobs[len(recs):]}} {
					if kind == "memory" && scan.what == "the raw store" {
						continue // the records are all a memory store holds
					}
					found := false
					for _, b := range scan.blobs {
						found = found || bytes.Contains(b.data, h)
					}
					if !found {
						t.Fatalf("the scan of %s does not see the verifier hash of a live session: is it scanning the store?", scan.what)
					}
				}
			}
			raw := "raw: the file store's file names and bytes"
			switch kind {
			case "memory":
				raw = "the records are all a memory store holds"
			case "redis":
				raw = "raw: every Redis key of the namespace, its DUMP and its contents"
			}
			record(t, figure{
				Area:   "Security",
				Check:  kind + " store searched for session IDs and their verifiers (cookie text, bytes, hex, standard base64) after starts, logins (ID renewal), bag and value writes: every record's key, field names and values and tags through cache.Store; " + raw,
				Amount: fmt.Sprintf("%d IDs issued (%d renewed away), %d pieces, %d bytes searched", len(issued), len(issued)-len(live), len(blobs), size),
				Measured: joinf(
					"0 IDs or verifiers found in any form",
					fmt.Sprintf("the %d session records are keyed by the %d live selectors, nothing else", len(keys), len(live)),
					fmt.Sprintf("the SHA-256 of all %d live verifiers found (control)", len(live)),
				),
			})
		})
	}
}

// recordContents reads every record of the store's root namespace and of the
// session namespace through cache.Store: keys, field names and values, tags.
func recordContents(t testing.TB, store cache.Store) []rawBlob {
	t.Helper()
	ctx := context.Background()
	var out []rawBlob
	for _, s := range []cache.Store{store, sessionRecords(t, store)} {
		for k, err := range s.Keys(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			rec, err := s.Read(ctx, k)
			if errors.Is(err, cache.ErrNotFound) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			where := s.Namespace() + " record " + k
			out = append(out, rawBlob{where + " key", []byte(k)})
			for _, f := range rec.Fields {
				out = append(out, rawBlob{where + " field name", []byte(f.Name)}, rawBlob{where + " field " + f.Name, f.Value})
			}
			for _, tag := range rec.Tags {
				out = append(out, rawBlob{where + " tag", []byte(tag)})
			}
		}
	}
	return out
}

// rawContents reads everything a file or Redis store holds, bypassing the
// cache.Store API (nothing for memory).
func rawContents(t testing.TB, kind, dir, ns string) []rawBlob {
	t.Helper()
	ctx := context.Background()
	var out []rawBlob
	switch kind {
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
		// Every key of the store: fxs:<namespace>:... and fxs:<namespace>.session:...
		keys, err := c.Keys(ctx, "fxs:"+ns+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			t.Fatal("no Redis keys for the namespace")
		}
		for _, k := range keys {
			out = append(out, rawBlob{"key", []byte(k)})
			dump, err := c.Dump(ctx, k).Result()
			if errors.Is(err, redis.Nil) {
				continue // expired since KEYS (a lock, a tombstone)
			}
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
			case "zset":
				m, err := c.ZRange(ctx, k, 0, -1).Result()
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, rawBlob{"ZRANGE " + k, []byte(strings.Join(m, "\x00"))})
			case "string":
				v, err := c.Get(ctx, k).Result()
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, rawBlob{"GET " + k, []byte(v)})
			default:
				t.Fatalf("Redis key %s of type %q: the scan does not read it", k, typ)
			}
		}
	}
	return out
}

// TestIDNotAdopted: an ID the client chose (well-formed, never issued; one that
// was issued and has since been destroyed; or a live session's selector with a
// verifier of the client's choosing) is never adopted: starting a session sends
// a fresh ID with a fresh selector, nothing is stored under the chosen
// selector, and a live session named by a forged verifier is neither read nor
// changed. After login (RenewID) the session keeps its selector (its record)
// and the old ID reaches nothing, for reads and writes alike, and the new one
// keeps the data.
func TestIDNotAdopted(t *testing.T) {
	rounds := pick(5, 50)
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			store := sharedStores(t, kind, 1)[0]
			sh := newShop(t, shopConfig{Store: store})
			ctx := context.Background()
			gone := func(id string) bool {
				_, err := sh.Mgr.Session(ctx, id)
				return errors.Is(err, session.ErrNotFound)
			}
			// stored reports whether a record is stored under the ID's selector.
			stored := func(id string) bool {
				_, err := sessionRecords(t, store).Read(ctx, id[:session.RefLength])
				if err != nil && !errors.Is(err, cache.ErrNotFound) {
					t.Fatal(err)
				}
				return err == nil
			}
			sel := func(id string) string { return id[:min(len(id), session.RefLength)] }
			for range rounds {
				// A chosen ID.
				chosen := randomID()
				v := &visitor{}
				v.SetCookie(chosen)
				mustStatus(t, v.serve(sh.Handler, "POST", "/basket/update?sku=tea"), 200, "start with a chosen ID")
				if v.Cookie() == chosen || v.Cookie() == "" || sel(v.Cookie()) == sel(chosen) || !gone(chosen) || stored(chosen) {
					t.Fatalf("the chosen ID was adopted (cookie now %q)", v.Cookie())
				}
				// A destroyed ID, presented again.
				dead := v.Cookie()
				mustStatus(t, v.serve(sh.Handler, "POST", "/logout"), 200, "logout")
				if v.Cookie() != "" {
					t.Fatal("logout left the cookie")
				}
				if stored(dead) {
					t.Fatal("logout left the session's record")
				}
				v.SetCookie(dead)
				mustStatus(t, v.serve(sh.Handler, "POST", "/basket/update?sku=tea"), 200, "start with a destroyed ID")
				if v.Cookie() == dead || sel(v.Cookie()) == sel(dead) || !gone(dead) || stored(dead) {
					t.Fatal("a destroyed ID came back to life")
				}
				// A live session's selector with a verifier of the client's choosing.
				victim := v.Cookie()
				forged := sel(victim) + randomID()[session.RefLength:]
				attacker := &visitor{}
				attacker.SetCookie(forged)
				r := attacker.serve(sh.Handler, "GET", "/basket")
				if m := r.JSON(t); m["count"] != 0.0 || m["started"] != false {
					t.Fatalf("a forged verifier under a live selector reads the session: %s", r.Body)
				}
				mustStatus(t, attacker.serve(sh.Handler, "POST", "/basket/update?sku=tea&qty=5"), 200, "a write with a forged verifier")
				if attacker.Cookie() == forged || sel(attacker.Cookie()) == sel(victim) || !gone(forged) {
					t.Fatalf("a forged verifier under a live selector was adopted (cookie now %q)", attacker.Cookie())
				}
				if n := v.serve(sh.Handler, "GET", "/basket").Int(t, "count"); n != 1 {
					t.Fatalf("the write with a forged verifier changed the live session (%d units, want 1)", n)
				}
				// Renewal.
				mustStatus(t, v.serve(sh.Handler, "POST", "/basket/update?sku=mug&qty=2"), 200, "add")
				old := v.Cookie()
				mustStatus(t, v.serve(sh.Handler, "POST", "/login?user=alice"), 200, "login")
				renewed := v.Cookie()
				if renewed == old || !gone(old) {
					t.Fatal("login did not retire the old ID")
				}
				if sel(renewed) != sel(old) {
					t.Fatal("login moved the session to another record (a new selector)")
				}
				if n := v.serve(sh.Handler, "GET", "/basket").Int(t, "count"); n != 3 {
					t.Fatalf("the renewed session holds %d units, want 3", n)
				}
				stale := &visitor{}
				stale.SetCookie(old)
				r = stale.serve(sh.Handler, "GET", "/basket")
				if m := r.JSON(t); m["count"] != 0.0 || m["started"] != false {
					t.Fatalf("the old ID still reads the session: %s", r.Body)
				}
				mustStatus(t, stale.serve(sh.Handler, "POST", "/basket/update?sku=tea"), 200, "a write with the old ID")
				if stale.Cookie() == old || stale.Cookie() == renewed || sel(stale.Cookie()) == sel(renewed) {
					t.Fatal("a write with the old ID reached a session")
				}
				if n := v.serve(sh.Handler, "GET", "/basket").Int(t, "count"); n != 3 {
					t.Fatalf("the write with the old ID changed the renewed session (%d units)", n)
				}
			}
			record(t, figure{
				Area:     "Security",
				Check:    kind + " store: client-chosen IDs, destroyed IDs presented again, live selectors with a forged verifier, and IDs retired by login (RenewID), for reads and writes",
				Amount:   fmt.Sprintf("%d rounds × (1 chosen, 1 destroyed, 1 forged, 1 renewed ID)", rounds),
				Measured: "none adopted: a fresh ID with a fresh selector was issued each time, no record under a chosen or destroyed selector, Manager.Session finds nothing under the old ones, reads with a forged or retired ID see no session, writes with it start a new one and leave the live session alone; login kept the selector and the basket",
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
			mem := memStore(t)
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
