package app_test

import (
	"encoding/xml"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/fxsession/fxsession/cmd/demo/internal/app"
)

// form posts a form with a Referer (the page it was sent from; "" for none)
// and returns the response and body.
func (c *client) form(path, body, referer string) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest("POST", c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.ua != "" {
		req.Header.Set("User-Agent", c.ua)
	}
	if referer != "" {
		req.Header.Set("Referer", c.base+referer)
	}
	res, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return res, string(b)
}

// must sends a request and requires the status.
func (c *client) must(status int, method, path, body string) string {
	c.t.Helper()
	res, b := c.do(method, path, body)
	expect(c.t, res, b, status)
	return b
}

var (
	countRE = regexp.MustCompile(`id="basket-count">(\d+)<`)
	flashRE = regexp.MustCompile(`<p class="flash flash-(\w+)" role="(?:alert|status)">([^<]*)</p>`)
)

// header is what a page's header and footer say about the visitor.
type header struct {
	count    string
	user     string // "" when the sign-in form is shown
	started  bool
	flashes  []string // "type: text"
	signedIn bool
}

func readHeader(t *testing.T, page string) header {
	t.Helper()
	var h header
	m := countRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("the page has no basket count:\n%.2000s", page)
	}
	h.count = m[1]
	if m := regexp.MustCompile(`<strong id="user">([^<]*)</strong>`).FindStringSubmatch(page); m != nil {
		h.user, h.signedIn = m[1], true
	}
	if h.signedIn == strings.Contains(page, `action="/login"`) {
		t.Errorf("signed in %v, and the sign-in form shown %v", h.signedIn, !h.signedIn)
	}
	h.started = strings.Contains(page, "Your session has started.")
	for _, f := range flashRE.FindAllStringSubmatch(page, -1) {
		h.flashes = append(h.flashes, f[1]+": "+html.UnescapeString(f[2]))
	}
	return h
}

// TestErrorPagesShowState: the 404 page, like every page, shows the visitor's
// basket and user; a new visitor still gets no session from it.
func TestErrorPagesShowState(t *testing.T) {
	ts := shop(t, &app.Config{Store: "memory"})
	c := newClient(t, ts.URL)
	res, body := c.do("GET", "/no-such-page", "")
	expect(t, res, body, 404)
	if h := readHeader(t, body); h.count != "0" || h.signedIn || h.started {
		t.Errorf("404 for a new visitor: %+v", h)
	}
	if sc := res.Header.Values("Set-Cookie"); len(sc) > 0 || c.cookie() != "" {
		t.Errorf("the 404 page started a session: %v", sc)
	}

	c.must(200, "POST", "/api/basket/items", `{"sku":"tea-sencha","qty":1}`)
	c.must(200, "POST", "/api/login", `{"user":"alice"}`)
	for _, path := range []string{"/no-such-page", "/basket/items", "/basket/extra/deep"} {
		res, body = c.do("GET", path, "")
		expect(t, res, body, 404)
		h := readHeader(t, body)
		if h.count != "1" || h.user != "alice" || !h.started {
			t.Errorf("GET %s (404) for alice with one item shows %+v", path, h)
		}
		if !strings.Contains(body, "There is no page here.") {
			t.Errorf("GET %s: not the 404 page:\n%.1500s", path, body)
		}
	}
	// The API's 404 stays JSON.
	res, body = c.do("GET", "/api/nothing", "")
	expect(t, res, body, 404)
	if decode[map[string]string](t, body)["error"] == "" {
		t.Errorf("API 404 = %q", body)
	}
}

// TestFormMistakes: a refused form sends the person back to the page the form
// was on, with a message they understand (no "shop:" and no status page), and
// changes nothing.
func TestFormMistakes(t *testing.T) {
	ts := shop(t, &app.Config{Store: "memory"})
	c := newClient(t, ts.URL)
	for _, tc := range []struct {
		path, body, referer string
		back, flash         string
	}{
		{"/basket/items", "sku=no-such-tea&qty=1", "/", "/", "Sorry, that product is not in our catalog (any more)."},
		{"/basket/items", "sku=tea-sencha&qty=0", "/", "/", "Please choose a quantity from 1 to 99."},
		{"/basket/items", "sku=tea-sencha&qty=500", "/?page=2", "/?page=2", "Please choose a quantity from 1 to 99."},
		{"/basket/items", "sku=tea-sencha&qty=-1", "", "/", "Please choose a quantity from 1 to 99."},
		{"/basket/items", "sku=tea-sencha&qty=two", "/", "/", "Please enter the quantity as a whole number, such as 2."},
		{"/login", "user=bad+name!", "/basket", "/basket", "A name is 1 to 40 letters or digits (and _ . @ -), without spaces."},
		{"/login", "user=", "/no-such-page", "/no-such-page", "A name is 1 to 40 letters or digits (and _ . @ -), without spaces."},
		{"/basket/items/tea-assam", "qty=2", "/basket", "/basket", "That product is no longer in your basket."},
	} {
		res, body := c.form(tc.path, tc.body, tc.referer)
		if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != tc.back {
			t.Errorf("POST %s %s: %d to %q, want 303 to %q: %.500s", tc.path, tc.body, res.StatusCode, res.Header.Get("Location"), tc.back, body)
			continue
		}
		_, page := c.do("GET", tc.back, "")
		h := readHeader(t, page)
		if len(h.flashes) != 1 || h.flashes[0] != "error: "+tc.flash {
			t.Errorf("POST %s %s: the page shows %q, want the error %q", tc.path, tc.body, h.flashes, tc.flash)
		}
		if strings.Contains(page, "shop:") || strings.Contains(page, "bad request") {
			t.Errorf("POST %s %s: internal words on the page:\n%s", tc.path, tc.body, page)
		}
		if h.count != "0" || h.signedIn {
			t.Errorf("POST %s %s changed something: %+v", tc.path, tc.body, h)
		}
		if _, again := c.do("GET", tc.back, ""); len(readHeader(t, again).flashes) != 0 {
			t.Errorf("POST %s %s: the message is shown twice", tc.path, tc.body)
		}
	}
	if got := c.basket(); got != "" {
		t.Errorf("the basket after refused forms: %q", got)
	}

	// Quantities of a line in the basket: the same kind of answer.
	c.must(200, "POST", "/api/basket/items", `{"sku":"tea-sencha","qty":2}`)
	for _, qty := range []string{"0", "1000", "", "x"} {
		res, _ := c.form("/basket/items/tea-sencha", "qty="+qty, "/basket")
		if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/basket" {
			t.Errorf("update to %q: %d to %q", qty, res.StatusCode, res.Header.Get("Location"))
		}
		_, page := c.do("GET", "/basket", "")
		h := readHeader(t, page)
		if len(h.flashes) != 1 || !strings.HasPrefix(h.flashes[0], "error: Please ") {
			t.Errorf("update to %q shows %q", qty, h.flashes)
		}
	}
	if got := c.basket(); got != "tea-sencha×2" {
		t.Errorf("the basket after refused updates: %q", got)
	}

	// The JSON API says the same, in its shape.
	for body, want := range map[string]string{
		`{"sku":"tea-sencha","qty":0}`: "Please choose a quantity from 1 to 99.",
		`{"sku":"nope","qty":1}`:       "Sorry, that product is not in our catalog (any more).",
		`{"user":"bad name"}`:          "",
	} {
		path := "/api/basket/items"
		if strings.Contains(body, "user") {
			path = "/api/login"
		}
		_, res := c.do("POST", path, body)
		msg := decode[map[string]string](t, res)["error"]
		if strings.Contains(msg, "shop:") || want != "" && msg != want || msg == "" {
			t.Errorf("POST %s %s: error %q, want %q", path, body, msg, want)
		}
	}
}

// basket reads the client's basket through the API as "sku×qty,...".
func (c *client) basket() string {
	c.t.Helper()
	_, body := c.do("GET", "/api/basket", "")
	var parts []string
	for _, it := range decode[basket](c.t, body).Items {
		parts = append(parts, it.SKU+"×"+strconv.Itoa(it.Qty))
	}
	return strings.Join(parts, ",")
}

// TestUpdateQuantity: each line of the basket has a form that sets its quantity.
func TestUpdateQuantity(t *testing.T) {
	ts := shop(t, &app.Config{Store: "file"})
	c := newClient(t, ts.URL)
	c.must(200, "POST", "/api/basket/items", `{"sku":"tea-sencha","qty":2}`)
	c.must(200, "POST", "/api/basket/items", `{"sku":"coffee-kenya","qty":1}`)
	_, page := c.do("GET", "/basket", "")
	for _, sku := range []string{"tea-sencha", "coffee-kenya"} {
		if !strings.Contains(page, `<form method="post" action="/basket/items/`+sku+`" class="update">`) {
			t.Errorf("no quantity form for %s:\n%s", sku, page)
		}
	}
	for _, qty := range []string{"5", "999", "1"} {
		res, _ := c.form("/basket/items/tea-sencha", "qty="+qty, "/basket")
		if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/basket" {
			t.Fatalf("update to %s: %d to %q", qty, res.StatusCode, res.Header.Get("Location"))
		}
		if got := c.basket(); got != "tea-sencha×"+qty+",coffee-kenya×1" {
			t.Errorf("after updating to %s: %q", qty, got)
		}
		_, page = c.do("GET", "/basket", "")
		if h := readHeader(t, page); len(h.flashes) != 1 || h.flashes[0] != "success: Sencha: quantity now "+qty {
			t.Errorf("after updating to %s: flashes %q", qty, h.flashes)
		}
	}
}

// TestAccessibleMarkup: the sign-in field has a visible label; each line's
// quantity field is labelled, and its Update and Remove buttons name the
// product for screen readers.
func TestAccessibleMarkup(t *testing.T) {
	ts := shop(t, &app.Config{Store: "memory"})
	c := newClient(t, ts.URL)
	_, page := c.do("GET", "/", "")
	if !regexp.MustCompile(`<label for="user-name">Your name</label>\s*<input id="user-name" [^>]*name="user"`).MatchString(page) {
		t.Errorf("the sign-in field has no visible label:\n%s", page)
	}
	if !strings.Contains(page, `<label for="qty-tea-sencha">Qty</label>`) || !strings.Contains(page, `Add<span class="visually-hidden"> Sencha</span> to basket`) {
		t.Errorf("the catalog's forms are not labelled per product")
	}
	c.must(200, "POST", "/api/basket/items", `{"sku":"tea-sencha","qty":2}`)
	c.must(200, "POST", "/api/basket/items", `{"sku":"gear-kettle","qty":1}`)
	_, page = c.do("GET", "/basket", "")
	for sku, name := range map[string]string{"tea-sencha": "Sencha", "gear-kettle": "Gooseneck Kettle"} {
		for _, want := range []string{
			`<label class="visually-hidden" for="qty-` + sku + `">Quantity of ` + name + `</label>`,
			`<input id="qty-` + sku + `" type="number" name="qty"`,
			`Update<span class="visually-hidden"> ` + name + `</span></button>`,
			`Remove<span class="visually-hidden"> ` + name + `</span></button>`,
		} {
			if !strings.Contains(page, want) {
				t.Errorf("the basket lacks %q", want)
			}
		}
	}
}

// TestPictures: every product has a small SVG picture served by the shop
// itself, and no page refers to anything outside it.
func TestPictures(t *testing.T) {
	ts := shop(t, &app.Config{Store: "memory"})
	c := newClient(t, ts.URL)
	_, body := c.do("GET", "/api/products", "")
	products := decode[[]struct {
		SKU string `json:"sku"`
	}](t, body)
	_, catalog := c.do("GET", "/", "")
	for _, p := range products {
		res, svg := c.do("GET", "/assets/products/"+p.SKU+".svg", "")
		expect(t, res, svg, 200)
		if ct := res.Header.Get("Content-Type"); ct != "image/svg+xml" {
			t.Errorf("%s: Content-Type %q", p.SKU, ct)
		}
		if len(svg) > 2048 {
			t.Errorf("%s: the picture is %d bytes, want a small one", p.SKU, len(svg))
		}
		var root struct {
			XMLName xml.Name
			ViewBox string `xml:"viewBox,attr"`
		}
		if err := xml.Unmarshal([]byte(svg), &root); err != nil || root.XMLName.Local != "svg" || root.ViewBox == "" {
			t.Errorf("%s: not an SVG picture (%v): %.200s", p.SKU, err, svg)
		}
		if external := regexp.MustCompile(`href|url\(|<image|<script|https?://[^"]*"`).FindAllString(strings.ReplaceAll(svg, `xmlns="http://www.w3.org/2000/svg"`, ""), -1); len(external) > 0 {
			t.Errorf("%s: the picture refers to %q", p.SKU, external)
		}
		if !strings.Contains(catalog, `<img class="picture" src="/assets/products/`+p.SKU+`.svg" alt=""`) {
			t.Errorf("the catalog does not show the picture of %s", p.SKU)
		}
	}
	c.must(200, "POST", "/api/basket/items", `{"sku":"tea-sencha","qty":2}`)
	c.must(200, "POST", "/api/login", `{"user":"alice"}`)
	for _, path := range []string{"/", "/basket", "/sessions", "/no-such-page"} {
		_, page := c.do("GET", path, "")
		for _, m := range regexp.MustCompile(`<(img|link|script|iframe|source|video|audio)\b[^>]*`).FindAllString(page, -1) {
			ref := regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindStringSubmatch(m)
			if ref == nil {
				continue
			}
			if u, err := url.Parse(html.UnescapeString(ref[1])); err != nil || u.IsAbs() || u.Host != "" || !strings.HasPrefix(u.Path, "/assets/") {
				t.Errorf("%s loads %q from outside the shop's assets", path, ref[1])
			}
		}
	}
}
