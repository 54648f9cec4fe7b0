package app_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cmd/demo/internal/app"
	"github.com/fxsession/fxsession/cmd/demo/internal/demotest"
	"github.com/fxsession/fxsession/cmd/demo/internal/web"
)

// User-Agents of the devices in the tests.
const (
	laptopUA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36"
	phoneUA  = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1"
	tabletUA = "Mozilla/5.0 (Linux; Android 15; Pixel Tablet) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36"
)

// apiSession is one entry of GET /api/sessions.
type apiSession struct {
	ID       string    `json:"id"`
	Created  time.Time `json:"created"`
	LastSeen time.Time `json:"last_seen"`
	Device   string    `json:"device"`
	Current  bool      `json:"current"`
}

// device is a client with its own cookie jar and User-Agent.
func device(t *testing.T, base, ua string) *client {
	c := newClient(t, base)
	c.ua = ua
	return c
}

// sessions is the client's GET /api/sessions, which must answer 200.
func (c *client) sessions() []apiSession {
	c.t.Helper()
	return decode[[]apiSession](c.t, c.must(200, "GET", "/api/sessions", ""))
}

// current is the client's own entry of GET /api/sessions.
func (c *client) current() apiSession {
	c.t.Helper()
	list := c.sessions()
	i := slices.IndexFunc(list, func(s apiSession) bool { return s.Current })
	if i < 0 {
		c.t.Fatalf("GET /api/sessions has no current session: %+v", list)
	}
	return list[i]
}

// devices is GET /api/sessions as "device(current)" in the order answered.
func devices(list []apiSession) []string {
	var out []string
	for _, s := range list {
		d := s.Device
		if s.Current {
			d += "(current)"
		}
		out = append(out, d)
	}
	return out
}

// signedOut requires that the client is no longer signed in: the API answers
// 401 and the pages show the sign-in form.
func (c *client) signedOut(who string) {
	c.t.Helper()
	if res, body := c.do("GET", "/api/sessions", ""); res.StatusCode != http.StatusUnauthorized {
		c.t.Errorf("%s: GET /api/sessions = %d %s, want 401 (signed out)", who, res.StatusCode, body)
	}
	if h := readHeader(c.t, c.must(200, "GET", "/", "")); h.signedIn {
		c.t.Errorf("%s: the catalog still shows %q signed in", who, h.user)
	}
}

// sessionCookie is the session cookie a response set (nil when none).
func sessionCookie(res *http.Response) *http.Cookie {
	for _, c := range res.Cookies() {
		if c.Name == "fxsession" {
			return c
		}
	}
	return nil
}

// TestSessionsContract: the routes of a user's sessions on every store: the
// list (GET /api/sessions: refs, never IDs; devices; the current one), revoking
// one (DELETE /api/sessions/{id}: only the user's own), signing out the others
// (POST /api/logout-others), remember me (a persistent cookie and the store's
// expiry 30 days out) and logout-everywhere on the user's tag.
func TestSessionsContract(t *testing.T) {
	for _, store := range []string{"memory", "file", "redis", "sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			ts, records := shopWithStore(t, demotest.Stores()[store](t))
			ctx := t.Context()

			// Not signed in: 401 in the API's shape, and no session starts.
			anon := device(t, ts.URL, laptopUA)
			for _, r := range []struct{ method, path string }{
				{"GET", "/api/sessions"}, {"DELETE", "/api/sessions/abc"}, {"POST", "/api/logout-others"},
			} {
				res, body := anon.do(r.method, r.path, "")
				expect(t, res, body, http.StatusUnauthorized)
				if decode[map[string]string](t, body)["error"] == "" {
					t.Errorf("%s %s: %s, want a JSON error", r.method, r.path, body)
				}
			}
			if anon.cookie() != "" {
				t.Fatal("the sessions API started a session for a visitor")
			}
			// A visitor with a basket but no user is not signed in either.
			anon.must(200, "POST", "/api/basket/items", `{"sku":"tea-assam"}`)
			anon.must(401, "GET", "/api/sessions", "")

			// Alice signs in on her laptop (remember me) and her phone; Bob on his.
			laptop := device(t, ts.URL, laptopUA)
			laptop.must(200, "POST", "/api/basket/items", `{"sku":"tea-sencha","qty":2}`)
			before := time.Now()
			res, body := laptop.do("POST", "/api/login", `{"user":"alice","remember":true}`)
			after := time.Now()
			expect(t, res, body, 200)
			if got := decode[map[string]any](t, body); got["user"] != "alice" || got["remember"] != true {
				t.Errorf("login answered %s", body)
			}
			ck := sessionCookie(res)
			if ck == nil {
				t.Fatal("login set no cookie")
			}
			if want := int(web.RememberFor / time.Second); ck.MaxAge < want-60 || ck.MaxAge > want {
				t.Errorf("remember me: cookie Max-Age %d, want about %d (30 days)", ck.MaxAge, want)
			}
			if got := laptop.basket(); got != "tea-sencha×2" {
				t.Errorf("the basket after login: %q", got)
			}
			phone := device(t, ts.URL, phoneUA)
			res, body = phone.do("POST", "/api/login", `{"user":"alice"}`)
			expect(t, res, body, 200)
			if ck := sessionCookie(res); ck == nil || ck.MaxAge != 0 || !ck.Expires.IsZero() {
				t.Errorf("login without remember me: cookie %v, want a browser-session cookie", ck)
			}
			bob := device(t, ts.URL, tabletUA)
			bob.must(200, "POST", "/api/login", `{"user":"bob"}`)

			// The store's expiry of each session: 30 days out for the remembered
			// one, the shop's inactivity timeout (1 hour) for the other.
			me := laptop.current()
			expires(t, ctx, records, me.ID, before.Add(web.RememberFor), after.Add(web.RememberFor))
			ph := phone.current()
			expires(t, ctx, records, ph.ID, before.Add(time.Hour), time.Now().Add(time.Hour))

			// The list: alice's two sessions, this one first; refs, never IDs.
			list := laptop.sessions()
			if got := devices(list); !slices.Equal(got, []string{laptopUA + "(current)", phoneUA}) {
				t.Fatalf("alice's sessions from the laptop: %q", got)
			}
			if got := devices(phone.sessions()); !slices.Equal(got, []string{phoneUA + "(current)", laptopUA}) {
				t.Fatalf("alice's sessions from the phone: %q", got)
			}
			for _, s := range list {
				if s.ID == "" || s.ID == laptop.cookie() || s.ID == phone.cookie() {
					t.Errorf("session id %q is a session ID (cookies %q, %q)", s.ID, laptop.cookie(), phone.cookie())
				}
				if s.Created.IsZero() || s.LastSeen.Before(s.Created) || time.Since(s.Created) > time.Minute {
					t.Errorf("session %s: created %v, last seen %v", s.ID, s.Created, s.LastSeen)
				}
			}
			// An id does not open the session it names.
			thief := newClient(t, ts.URL)
			u, _ := url.Parse(ts.URL)
			thief.http.Jar.SetCookies(u, []*http.Cookie{{Name: "fxsession", Value: ph.ID}})
			thief.must(401, "GET", "/api/sessions", "")
			if got := thief.basket(); got != "" {
				t.Errorf("a session's id opened a basket: %q", got)
			}
			bobs := bob.sessions()
			if len(bobs) != 1 || !bobs[0].Current || bobs[0].Device != tabletUA {
				t.Fatalf("bob's sessions: %+v", bobs)
			}

			// Revoking: only one's own sessions, and only by their id.
			for _, id := range []string{bobs[0].ID, "no-such-session", strings.Repeat("x", 300), laptop.cookie()} {
				res, body := laptop.do("DELETE", "/api/sessions/"+url.PathEscape(id), "")
				expect(t, res, body, http.StatusNotFound)
				if decode[map[string]string](t, body)["error"] == "" {
					t.Errorf("DELETE of %q: %s, want a JSON error", id, body)
				}
			}
			bob.current() // still signed in
			res, body = laptop.do("DELETE", "/api/sessions/"+ph.ID, "")
			expect(t, res, body, 200)
			if got := decode[map[string]any](t, body); got["revoked"] != ph.ID || got["current"] != false {
				t.Errorf("DELETE answered %s", body)
			}
			phone.signedOut("the revoked phone")
			if got := devices(laptop.sessions()); !slices.Equal(got, []string{laptopUA + "(current)"}) {
				t.Errorf("alice's sessions after revoking the phone: %q", got)
			}
			if rec, err := records.Read(ctx, ph.ID); err == nil && rec.Exists() {
				t.Errorf("the revoked session's record is still stored: %+v", rec)
			}
			laptop.must(404, "DELETE", "/api/sessions/"+ph.ID, "") // already gone

			// Signing out the other devices keeps this one and bob's.
			phone2, tablet := device(t, ts.URL, phoneUA), device(t, ts.URL, tabletUA)
			phone2.must(200, "POST", "/api/login", `{"user":"alice"}`)
			tablet.must(200, "POST", "/api/login", `{"user":"alice","remember":true}`)
			if n := len(laptop.sessions()); n != 3 {
				t.Fatalf("alice has %d sessions, want 3", n)
			}
			body = laptop.must(200, "POST", "/api/logout-others", "")
			if n := decode[map[string]int](t, body)["sessions_ended"]; n != 2 {
				t.Errorf("logout-others ended %d sessions, want 2: %s", n, body)
			}
			phone2.signedOut("the phone after logout-others")
			tablet.signedOut("the tablet after logout-others")
			if got := devices(laptop.sessions()); !slices.Equal(got, []string{laptopUA + "(current)"}) {
				t.Errorf("alice's sessions after logout-others: %q", got)
			}
			if got := laptop.basket(); got != "tea-sencha×2" {
				t.Errorf("the laptop's basket after logout-others: %q", got)
			}
			if n := decode[map[string]int](t, laptop.must(200, "POST", "/api/logout-others", ""))["sessions_ended"]; n != 0 {
				t.Errorf("logout-others with no other session ended %d", n)
			}
			bob.current()

			// Signing in again without remember me brings the shop's timeout back.
			before = time.Now()
			res, body = laptop.do("POST", "/api/login", `{"user":"alice"}`)
			expect(t, res, body, 200)
			if ck := sessionCookie(res); ck == nil || ck.MaxAge != 0 {
				t.Errorf("login without remember me after one with it: cookie %v, want a browser-session cookie", ck)
			}
			expires(t, ctx, records, me.ID, before.Add(time.Hour), time.Now().Add(time.Hour))

			// Revoking one's own session signs out and expires the cookie.
			res, body = laptop.do("DELETE", "/api/sessions/"+me.ID, "")
			expect(t, res, body, 200)
			if got := decode[map[string]any](t, body); got["current"] != true {
				t.Errorf("DELETE of the current session answered %s", body)
			}
			if laptop.cookie() != "" {
				t.Error("revoking the current session left its cookie")
			}
			laptop.signedOut("the laptop that revoked itself")
			if got := laptop.basket(); got != "" {
				t.Errorf("the basket after revoking the current session: %q", got)
			}

			// Logout everywhere counts every session of the user, this one too.
			a, b := device(t, ts.URL, laptopUA), device(t, ts.URL, phoneUA)
			a.must(200, "POST", "/api/login", `{"user":"alice"}`)
			b.must(200, "POST", "/api/login", `{"user":"alice"}`)
			if n := decode[map[string]int](t, a.must(200, "POST", "/api/logout-everywhere", ""))["sessions_ended"]; n != 2 {
				t.Errorf("logout-everywhere ended %d sessions, want 2", n)
			}
			a.signedOut("logout-everywhere's own client")
			b.signedOut("alice's other client after logout-everywhere")
			bob.current()
		})
	}
}

// expires requires that the stored record of the session ref expires between
// lo and hi (give or take the stores' precision).
func expires(t *testing.T, ctx context.Context, records cache.Store, ref string, lo, hi time.Time) {
	t.Helper()
	rec, err := records.Read(ctx, ref)
	if err != nil {
		t.Fatalf("reading the record of %s: %v", ref, err)
	}
	const slack = 2 * time.Second
	if rec.Expires.Before(lo.Add(-slack)) || rec.Expires.After(hi.Add(slack)) {
		t.Errorf("session %s expires in the store at %v, want between %v and %v", ref, rec.Expires, lo, hi)
	}
}

// TestSessionCap: with -max-sessions-per-user 2, a third sign-in of one user
// ends the least recently used of the other two, whose next request is signed
// out; other users are not touched.
func TestSessionCap(t *testing.T) {
	ts := shop(t, &app.Config{Store: "memory", MaxSessionsPerUser: 2})
	bob := device(t, ts.URL, tabletUA)
	bob.must(200, "POST", "/api/login", `{"user":"bob"}`)
	var alice []*client
	for i, ua := range []string{laptopUA, phoneUA, tabletUA} {
		if i > 0 {
			time.Sleep(20 * time.Millisecond) // last uses a clear order apart (stored to the millisecond)
		}
		c := device(t, ts.URL, ua)
		c.must(200, "POST", "/api/basket/items", `{"sku":"tea-assam"}`)
		c.must(200, "POST", "/api/login", `{"user":"alice"}`)
		alice = append(alice, c)
	}
	alice[0].signedOut("the least recently used session beyond the cap")
	if got := alice[0].basket(); got != "" {
		t.Errorf("the evicted session's basket: %q", got)
	}
	if got := devices(alice[2].sessions()); !slices.Equal(got, []string{tabletUA + "(current)", phoneUA}) {
		t.Errorf("alice's sessions under a cap of 2: %q", got)
	}
	if got := alice[1].basket(); got != "tea-assam×1" {
		t.Errorf("the kept session's basket: %q", got)
	}
	if n := len(bob.sessions()); n != 1 {
		t.Errorf("bob has %d sessions, want 1", n)
	}

	// Signing in again on a device that holds one of the two evicts none.
	alice[1].must(200, "POST", "/api/login", `{"user":"alice"}`)
	if n := len(alice[2].sessions()); n != 2 {
		t.Errorf("after signing in again on a kept device alice has %d sessions, want 2", n)
	}
	alice[2].current()
}

// TestSessionsPage: the HTML page of a user's sessions, its Revoke and "Sign
// out other devices" forms, and the "Remember me" checkbox of the sign-in form.
func TestSessionsPage(t *testing.T) {
	ts := shop(t, &app.Config{Store: "memory"})

	// A visitor: asked to sign in, the header shows the real state, no cookie.
	anon := device(t, ts.URL, laptopUA)
	res, page := anon.do("GET", "/sessions", "")
	expect(t, res, page, 200)
	if !strings.Contains(page, `id="signed-out"`) || strings.Contains(page, `class="session`) {
		t.Errorf("the sessions page of a visitor:\n%s", page)
	}
	if h := readHeader(t, page); h.count != "0" || h.signedIn || h.started {
		t.Errorf("the sessions page of a visitor shows %+v", h)
	}
	if anon.cookie() != "" || len(res.Header.Values("Set-Cookie")) > 0 {
		t.Error("the sessions page started a session for a visitor")
	}
	if strings.Contains(page, `href="/sessions"`) {
		t.Error("the header links to the sessions page for a visitor")
	}
	if !regexp.MustCompile(`<input id="remember" type="checkbox" name="remember" value="1"><label for="remember">Remember me</label>`).MatchString(page) {
		t.Errorf("the sign-in form has no labelled Remember me checkbox:\n%s", page)
	}

	// Signing in through the form with Remember me: a 30-day cookie.
	laptop := device(t, ts.URL, laptopUA)
	laptop.must(200, "POST", "/api/basket/items", `{"sku":"tea-sencha","qty":3}`)
	res, _ = laptop.form("/login", "user=alice&remember=1", "/sessions")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/sessions" {
		t.Fatalf("sign-in with remember me: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	if ck := sessionCookie(res); ck == nil || ck.MaxAge < int(web.RememberFor/time.Second)-60 {
		t.Errorf("sign-in through the form with remember me: cookie %v, want a 30-day one", ck)
	}
	phone := device(t, ts.URL, phoneUA)
	res, _ = phone.form("/login", "user=alice", "/")
	if ck := sessionCookie(res); ck == nil || ck.MaxAge != 0 {
		t.Errorf("sign-in through the form without remember me: cookie %v", ck)
	}
	bob := device(t, ts.URL, tabletUA)
	bob.must(200, "POST", "/api/login", `{"user":"bob"}`)

	_, page = laptop.do("GET", "/sessions", "")
	h := readHeader(t, page)
	if h.user != "alice" || h.count != "3" || len(h.flashes) != 1 || h.flashes[0] != "success: Welcome, alice. This browser stays signed in for 30 days." {
		t.Errorf("the sessions page after signing in shows %+v", h)
	}
	if !strings.Contains(page, `<a href="/sessions" id="sessions-link" class="active" aria-current="page">Sessions</a>`) {
		t.Errorf("the header does not mark the sessions page as the current one:\n%s", page)
	}
	items := regexp.MustCompile(`(?s)<li class="session( current)?" data-id="([^"]+)">(.*?)</li>`).FindAllStringSubmatch(page, -1)
	if len(items) != 2 {
		t.Fatalf("the page lists %d sessions, want 2:\n%s", len(items), page)
	}
	me, other := items[0], items[1]
	if me[1] != " current" || !strings.Contains(me[3], "Chrome on Linux") || !strings.Contains(me[3], "This browser") ||
		!strings.Contains(me[3], "Remembered") || strings.Contains(me[3], "Revoke") {
		t.Errorf("this browser's entry:\n%s", me[0])
	}
	if other[1] != "" || !strings.Contains(other[3], "Safari on iPhone") || strings.Contains(other[3], "Remembered") ||
		!strings.Contains(other[3], `<form method="post" action="/sessions/`+other[2]+`/revoke"><button type="submit" class="revoke">Revoke<span class="visually-hidden"> the session of Safari on iPhone, last seen just now</span></button></form>`) {
		t.Errorf("the phone's entry:\n%s", other[0])
	}
	for _, want := range []string{"Signed in", "Last seen", `<button type="submit" id="logout-others">Sign out other devices</button>`} {
		if !strings.Contains(page, want) {
			t.Errorf("the sessions page lacks %q", want)
		}
	}
	if strings.Contains(page, laptop.cookie()) || strings.Contains(page, phone.cookie()) {
		t.Error("the sessions page shows a session ID")
	}

	// Revoke the phone: back to the page with a message; the phone is signed out.
	res, _ = laptop.form("/sessions/"+other[2]+"/revoke", "", "/sessions")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/sessions" {
		t.Fatalf("revoke: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	_, page = laptop.do("GET", "/sessions", "")
	if h := readHeader(t, page); len(h.flashes) != 1 || h.flashes[0] != "success: Signed out Safari on iPhone (last seen just now)." {
		t.Errorf("after revoking: %q", h.flashes)
	}
	if n := strings.Count(page, `<li class="session`); n != 1 || !strings.Contains(page, `id="only-this"`) || strings.Contains(page, `id="logout-others"`) {
		t.Errorf("after revoking the page lists %d sessions:\n%s", n, page)
	}
	phone.signedOut("the phone revoked through the page")

	// A session that is not one's own: refused with a message, nothing ends.
	bobRef := bob.current().ID
	res, _ = laptop.form("/sessions/"+bobRef+"/revoke", "", "/sessions")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/sessions" {
		t.Fatalf("revoke of bob's session: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	_, page = laptop.do("GET", "/sessions", "")
	if h := readHeader(t, page); len(h.flashes) != 1 || h.flashes[0] != "error: That is not one of your sessions, or it has already ended." {
		t.Errorf("after revoking bob's session: %q", h.flashes)
	}
	bob.current()

	// Sign out other devices.
	for _, ua := range []string{phoneUA, tabletUA} {
		device(t, ts.URL, ua).must(200, "POST", "/api/login", `{"user":"alice"}`)
	}
	res, _ = laptop.form("/sessions/logout-others", "", "/sessions")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/sessions" {
		t.Fatalf("logout-others: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	_, page = laptop.do("GET", "/sessions", "")
	if h := readHeader(t, page); len(h.flashes) != 1 || h.flashes[0] != "success: Signed out 2 other sessions." || h.count != "3" {
		t.Errorf("after signing out the other devices: %+v", h)
	}
	bob.current()

	// Signed out, the forms ask to sign in first.
	res, _ = anon.form("/sessions/logout-others", "", "/sessions")
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout-others of a visitor: %d", res.StatusCode)
	}
	_, page = anon.do("GET", "/sessions", "")
	if h := readHeader(t, page); len(h.flashes) != 1 || h.flashes[0] != "error: Please sign in first." {
		t.Errorf("logout-others of a visitor: %q", h.flashes)
	}
}
