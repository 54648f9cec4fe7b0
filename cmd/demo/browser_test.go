package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/fxsession/fxsession/cmd/demo/internal/app"
	"github.com/fxsession/fxsession/cmd/demo/internal/demotest"
)

// Timing of the browser test. A step is one page action and its checks; the
// whole test, browser start included, is bounded too, so a browser that hangs
// fails the test instead of stalling it.
const (
	browserTestTimeout = 4 * time.Minute
	browserStepTimeout = 30 * time.Second
)

// The two widths every page is checked at: a desktop window and a phone.
const (
	desktopWidth, desktopHeight = 1280, 900
	phoneWidth, phoneHeight     = 360, 780
)

// The browsers' User-Agents: the sessions page names devices by them.
const (
	laptopUA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36"
	phoneUA  = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1"
)

// axePath is axe-core, the accessibility checker the test injects into every
// page (vendored: see testdata/axe-core/README.md).
var axePath = filepath.Join("testdata", "axe-core", "axe.min.js")

// screenshotDir is where the README's screenshots live, relative to this package.
var screenshotDir = filepath.Join("..", "..", "docs", "img")

// chromium finds Debian's chromium; a missing browser fails the test.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "/usr/bin/chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found: run `make deps`")
	return ""
}

// tab is one browser tab driven by the test.
type tab struct {
	t    *testing.T
	ctx  context.Context
	base string
	axe  string // axe-core's source
}

// step runs actions within browserStepTimeout.
func (b *tab) step(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// get runs an action returning a value within browserStepTimeout.
func get[T any](b *tab, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// open navigates to path and waits for the page's footer.
func (b *tab) open(path string) {
	b.t.Helper()
	b.step("open "+path, chromedp.Navigate(b.base+path), chromedp.WaitVisible(chromedp.CSS("footer")))
}

// submit clicks a form's button and waits for the page the redirect leads to.
func (b *tab) submit(what string, button chromedp.CSS, wantPath string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStepTimeout)
	defer cancel()
	res, err := chromedp.RunResponse(ctx, chromedp.Click(button, chromedp.NodeVisible))
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	if res == nil || res.Status != 200 || !strings.HasSuffix(res.URL, wantPath) {
		b.t.Fatalf("%s: landed on %+v, want 200 at %s", what, res, wantPath)
	}
	b.step(what+": page shown", chromedp.WaitVisible(chromedp.CSS("footer")))
}

// text is the visible text of the first element matching sel.
func (b *tab) text(sel string) string {
	b.t.Helper()
	return strings.TrimSpace(get(b, "text of "+sel, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible)))
}

// count is the number of elements matching sel (without waiting for one).
func (b *tab) count(sel string) int {
	b.t.Helper()
	return get(b, "count "+sel, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
}

// lines is the basket table as "name qty subtotal; ...".
func (b *tab) lines() string {
	b.t.Helper()
	return get(b, "basket lines", chromedp.Evaluate[string](`Array.from(document.querySelectorAll("tr.line")).map(
		tr => [tr.querySelector("td.name").innerText.trim(), tr.querySelector("td.qty input").value,
			tr.querySelector("td.subtotal").innerText.trim()].join(" ")).join("; ")`))
}

// cookie is the value of the session cookie the browser holds for the shop.
func (b *tab) cookie() string {
	b.t.Helper()
	if c := b.sessionCookie(); c != nil {
		return c.Value
	}
	return ""
}

// sessionCookie is the session cookie the browser holds for the shop (nil
// when none).
func (b *tab) sessionCookie() *network.Cookie {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStepTimeout)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.base + "/"}})
	if err != nil {
		b.t.Fatalf("reading cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name == "fxsession" {
			if !c.HTTPOnly || c.SameSite != network.CookieSameSiteLax || c.Path != "/" {
				b.t.Errorf("session cookie attributes: HttpOnly %v, SameSite %q, Path %q", c.HTTPOnly, c.SameSite, c.Path)
			}
			return c
		}
	}
	return nil
}

// signIn signs in through the header's form, with "Remember me" when remember,
// and expects the flash message welcoming the user.
func (b *tab) signIn(user string, remember bool, wantFlash string) {
	b.t.Helper()
	b.open("/")
	b.step("fill the user name", chromedp.SendKeys(chromedp.CSS(`form.login input[name="user"]`), user))
	if remember {
		// Through its label: the label is tied to the checkbox.
		b.step("tick Remember me", chromedp.Click(chromedp.CSS(`label[for="remember"]`), chromedp.NodeVisible))
		if !get(b, "Remember me ticked?", chromedp.Evaluate[bool](`document.querySelector("#remember").checked`)) {
			b.t.Fatal("clicking the label Remember me did not tick its checkbox")
		}
	}
	b.submit("sign in as "+user, chromedp.CSS("#login"), "/")
	if got := b.text(".flash-success"); got != wantFlash {
		b.t.Errorf("flash after signing in = %q, want %q", got, wantFlash)
	}
}

// sessions lists the sessions page's entries as "name[ (this)]".
func (b *tab) sessions() []string {
	b.t.Helper()
	return get(b, "the sessions listed", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("li.session")).map(
		li => li.querySelector("h2").firstChild.textContent.trim() + (li.classList.contains("current") ? " (this)" : ""))`))
}

// signedOut requires that the tab shows a visitor who is not signed in.
func (b *tab) signedOut(what string) {
	b.t.Helper()
	if b.count("#user") != 0 || b.count("#login") != 1 || b.count("#sessions-link") != 0 {
		b.t.Errorf("%s: the header still shows a signed-in user", what)
	}
}

// addToBasket fills the quantity of a product on the catalog and clicks its
// button, then expects the basket page with the flash message.
func (b *tab) addToBasket(sku, qty, wantFlash string) {
	b.t.Helper()
	b.open("/")
	field := chromedp.CSS("#product-" + sku + ` input[name="qty"]`)
	b.step("fill the quantity of "+sku,
		chromedp.Clear(field),
		chromedp.SendKeys(field, qty),
	)
	b.submit("add "+sku, chromedp.CSS("#product-"+sku+" form.add button"), "/basket")
	if got := b.text(".flash-success"); got != wantFlash {
		b.t.Fatalf("flash after adding %s = %q, want %q", sku, got, wantFlash)
	}
}

// screenshot saves the viewport, width × height, as docs/img/name, but only
// when asked to (UPDATE_SCREENSHOTS=1) or when the file is missing, so that a
// test run on a clean clone leaves the tree alone.
func (b *tab) screenshot(name string, width, height int) {
	b.t.Helper()
	path := filepath.Join(screenshotDir, name)
	if _, err := os.Stat(path); err == nil && os.Getenv("UPDATE_SCREENSHOTS") != "1" {
		return
	}
	buf := get(b, "screenshot "+name, chromedp.CaptureScreenshot())
	cfg, err := png.DecodeConfig(bytes.NewReader(buf))
	if err != nil {
		b.t.Fatalf("screenshot %s is not a PNG: %v", name, err)
	}
	if cfg.Width != width || cfg.Height != height {
		b.t.Errorf("screenshot %s is %dx%d, want %dx%d", name, cfg.Width, cfg.Height, width, height)
	}
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("wrote %s (%d KiB)", path, len(buf)>>10)
}

// axeViolation is one rule axe-core found broken on a page.
type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// runAxe injects axe-core into the page (once per document) and returns the
// violations it finds.
func (b *tab) runAxe(what string) []axeViolation {
	b.t.Helper()
	if !get(b, "axe loaded?", chromedp.Evaluate[bool](`typeof window.axe === "object"`)) {
		b.step("inject axe-core into "+what, chromedp.Evaluate[chromedp.Void](b.axe))
	}
	return get(b, "axe on "+what, chromedp.Evaluate[[]axeViolation](`axe.run(document, {resultTypes: ["violations"]}).then(r =>
		r.violations.map(v => ({id: v.id, impact: v.impact || "", help: v.help,
			nodes: v.nodes.map(n => n.target.join(" ") + ": " + (n.failureSummary || "").replace(/\s+/g, " "))})))`,
		chromedp.EvalAwaitPromise))
}

// checkPage runs the checks every page must pass, at desktop and at phone
// width: no serious or critical accessibility violation (axe-core), nothing
// loaded from outside the shop, every picture shown, and no sideways
// scrolling at 360 px. It leaves the tab at desktop width.
func (b *tab) checkPage(what string) {
	b.t.Helper()
	for _, size := range [][2]int64{{desktopWidth, desktopHeight}, {phoneWidth, phoneHeight}} {
		at := fmt.Sprintf("%s at %d px", what, size[0])
		b.step("viewport for "+at, chromedp.EmulateViewport(size[0], size[1]))
		b.step("pictures of "+at, chromedp.Poll[chromedp.Void](`Array.from(document.images).every(i => i.complete) || undefined`))
		for _, v := range b.runAxe(at) {
			if v.Impact == "serious" || v.Impact == "critical" {
				b.t.Errorf("%s: accessibility: %s (%s, %s): %q", at, v.ID, v.Impact, v.Help, v.Nodes)
			} else {
				b.t.Logf("%s: accessibility, %s: %s (%s): %q", at, v.Impact, v.ID, v.Help, v.Nodes)
			}
		}
		if broken := get(b, "broken pictures", chromedp.Evaluate[[]string](
			`Array.from(document.images).filter(i => !i.naturalWidth).map(i => i.src)`)); len(broken) > 0 {
			b.t.Errorf("%s: pictures not shown: %q", at, broken)
		}
		if outside := get(b, "resources", chromedp.Evaluate[[]string](
			`performance.getEntriesByType("resource").map(e => e.name).filter(n => !n.startsWith(location.origin + "/"))`)); len(outside) > 0 {
			b.t.Errorf("%s: loaded from outside the shop: %q", at, outside)
		}
		if size[0] == phoneWidth {
			widths := get(b, "document width", chromedp.Evaluate[[2]int](
				`[Math.max(document.documentElement.scrollWidth, document.body.scrollWidth), window.innerWidth]`))
			if widths[0] > widths[1] {
				wide := get(b, "wide elements", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("body *")).
					filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5).
					map(e => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + (e.className ? "." + e.className : "") + " " + Math.round(e.getBoundingClientRect().right))`))
				b.t.Errorf("%s: the page is %d px wide in a %d px window: it scrolls sideways (too wide: %q)", at, widths[0], widths[1], wide)
			}
		}
	}
	b.step("viewport back to desktop", chromedp.EmulateViewport(desktopWidth, desktopHeight))
}

// startBrowser starts a headless chromium (exe) for the test and returns the
// context of its first tab; the browser stops at the test's cleanup, and its
// output is logged when the test failed.
func startBrowser(t *testing.T, exe string) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), browserTestTimeout)
	t.Cleanup(cancel)
	var chromeLog lockedBuffer
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.UserAgent(laptopUA),
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(&chromeLog),
	)
	t.Cleanup(cancelAlloc)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	// The first run starts the browser; it lives as long as browserCtx.
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("starting chromium (%s): %v\n%s", exe, err, chromeLog.String())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("chromium output:\n%s", chromeLog.String())
		}
	})
	return browserCtx
}

// TestBrowser drives the shop with a real, headless chromium: no cookie on the
// catalog, two products added through the HTML forms, flash messages shown
// once, the basket kept across reloads and private to the browser, login
// renewing the cookie and keeping the basket, logout emptying it.
func TestBrowser(t *testing.T) {
	exe := chromium(t)
	base := startShop(t, &app.Config{Store: "file"})

	browserCtx := startBrowser(t, exe)
	axe, err := os.ReadFile(axePath)
	if err != nil {
		t.Fatalf("axe-core: %v", err)
	}
	b := &tab{t: t, ctx: browserCtx, base: base, axe: string(axe)}
	b.step("viewport", chromedp.EmulateViewport(desktopWidth, desktopHeight))

	// A new visitor browses the catalog: no session, no cookie.
	b.open("/")
	if n := b.count("li.product"); n < 15 {
		t.Fatalf("the catalog shows %d products", n)
	}
	if c := b.cookie(); c != "" {
		t.Fatalf("the catalog set a cookie: %q", c)
	}
	if got := b.text("#basket-count"); got != "0" {
		t.Errorf("basket count on arrival = %q", got)
	}
	if got := b.text("footer"); !strings.Contains(got, "No session yet") {
		t.Errorf("footer = %q", got)
	}
	// The checker works: a picture without a text alternative, added to the
	// page, is a critical violation.
	b.step("add a picture without alt", chromedp.Evaluate[chromedp.Void](
		`document.querySelector("main").append(Object.assign(document.createElement("img"), {src: "/assets/favicon.svg"}))`))
	if v := b.runAxe("a page with a mistake"); !slices.ContainsFunc(v, func(v axeViolation) bool { return v.ID == "image-alt" && v.Impact == "critical" }) {
		t.Fatalf("axe-core did not find a picture without alt: %+v", v)
	}
	b.open("/")
	b.checkPage("the catalog")
	b.open("/basket")
	b.checkPage("the empty basket")
	b.open("/no-such-page")
	b.checkPage("the 404 page")
	b.open("/sessions")
	if b.count("#signed-out") != 1 || b.count("li.session") != 0 {
		t.Error("the sessions page of a visitor does not ask to sign in")
	}
	b.checkPage("the sessions page of a visitor")
	if c := b.cookie(); c != "" {
		t.Fatalf("the checks set a cookie: %q", c)
	}

	// A quantity the shop does not sell is refused with a message, back on the
	// catalog (the browser's own check of the field is skipped, as an old
	// browser would).
	b.open("/")
	b.step("submit 500 Sencha", chromedp.Evaluate[chromedp.Void](`(() => {
		const f = document.querySelector("#product-tea-sencha form.add");
		f.querySelector('input[name="qty"]').value = "500";
		f.submit();
	})()`))
	b.step("the catalog again", chromedp.WaitVisible(chromedp.CSS(".flash-error")))
	if got := b.text(".flash-error"); got != "Please choose a quantity from 1 to 99." {
		t.Errorf("flash after adding 500 = %q", got)
	}
	if got := b.text("#basket-count"); got != "0" {
		t.Errorf("basket count after a refused add = %q", got)
	}
	b.checkPage("the catalog with an error message")

	// Two products through the HTML forms.
	b.addToBasket("tea-sencha", "2", "Added 2 × Sencha")
	first := b.cookie()
	if first == "" {
		t.Fatal("adding to the basket set no cookie")
	}
	b.addToBasket("coffee-kenya", "3", "Added 3 × Nyeri AA")
	if got, want := b.lines(), "Sencha 2 €17.80; Nyeri AA 3 €"; !strings.HasPrefix(got, want) {
		t.Fatalf("basket lines = %q, want %q...", got, want)
	}
	if got := b.text("#basket-count"); got != "5" {
		t.Errorf("basket count = %q, want 5", got)
	}
	if n := b.count(".flash"); n != 1 {
		t.Errorf("%d flash messages, want 1", n)
	}
	if c := b.cookie(); c != first {
		t.Errorf("the cookie changed between adds: %q, then %q", first, c)
	}
	total := b.text("#total")
	b.checkPage("the basket with two products")
	b.screenshot("basket.png", desktopWidth, desktopHeight)
	b.step("phone width", chromedp.EmulateViewport(phoneWidth, phoneHeight))
	b.screenshot("basket-phone.png", phoneWidth, phoneHeight)
	b.step("desktop width", chromedp.EmulateViewport(desktopWidth, desktopHeight))

	// A reload keeps the basket and does not show the flash again.
	b.step("reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("footer")))
	if got := b.lines(); !strings.HasPrefix(got, "Sencha 2 €17.80; Nyeri AA 3 €") {
		t.Fatalf("basket lines after reload = %q", got)
	}
	if n := b.count(".flash"); n != 0 {
		t.Errorf("the flash message survived a reload (%d shown)", n)
	}
	if got := b.text("#total"); got != total {
		t.Errorf("total after reload = %q, want %q", got, total)
	}

	// A second, fresh browser context (like a private window) has its own, empty basket.
	func() {
		otherCtx, cancelOther := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
		defer cancelOther()
		// Open the tab on otherCtx itself: a tab lives as long as the context of
		// its first run, and the steps run on short-lived children.
		if err := chromedp.Do(otherCtx); err != nil {
			t.Fatalf("opening a tab in a new browser context: %v", err)
		}
		other := &tab{t: t, ctx: otherCtx, base: base}
		other.step("viewport", chromedp.EmulateViewport(1280, 900))
		other.open("/basket")
		if other.count("#empty") != 1 || other.count("tr.line") != 0 {
			t.Errorf("a fresh browser context sees a basket: %q", other.lines())
		}
		if got := other.text("#basket-count"); got != "0" {
			t.Errorf("a fresh browser context has basket count %q", got)
		}
		if c := other.cookie(); c != "" {
			t.Errorf("a fresh browser context got a cookie: %q", c)
		}
	}()

	// Signing in through the header form renews the cookie, keeps the basket and
	// shows the user.
	b.open("/")
	if got := b.text(`label[for="user-name"]`); got != "Your name" {
		t.Errorf("the sign-in field's visible label = %q", got)
	}
	b.step("fill the user name", chromedp.SendKeys(chromedp.CSS(`form.login input[name="user"]`), "alice"))
	b.submit("sign in", chromedp.CSS("#login"), "/")
	if got := b.text("#user"); got != "alice" {
		t.Errorf("signed-in user shown = %q", got)
	}
	if got := b.text(".flash-success"); got != "Welcome, alice" {
		t.Errorf("flash after sign-in = %q", got)
	}
	signedIn := b.cookie()
	if signedIn == "" || signedIn == first {
		t.Errorf("sign-in did not renew the session cookie (before %q, after %q)", first, signedIn)
	}
	if got := b.text("#basket-count"); got != "5" {
		t.Errorf("basket count after sign-in = %q, want 5", got)
	}
	if b.count("#user-name") != 0 {
		t.Error("the sign-in field is still shown after signing in")
	}
	b.screenshot("catalog.png", desktopWidth, desktopHeight)
	b.checkPage("the catalog, signed in")
	b.open("/no-such-page")
	if got, user := b.text("#basket-count"), b.text("#user"); got != "5" || user != "alice" {
		t.Errorf("the 404 page shows basket %q and user %q, want 5 and alice", got, user)
	}
	b.checkPage("the 404 page, signed in")
	b.open("/basket")
	if got := b.lines(); !strings.HasPrefix(got, "Sencha 2 €17.80; Nyeri AA 3 €") {
		t.Errorf("basket after sign-in = %q", got)
	}

	// A line's quantity changes through its own form.
	field := chromedp.CSS(`tr[data-sku="tea-sencha"] input[name="qty"]`)
	b.step("change the quantity of Sencha", chromedp.Clear(field), chromedp.SendKeys(field, "4"))
	b.submit("update Sencha", chromedp.CSS(`tr[data-sku="tea-sencha"] form.update button`), "/basket")
	if got := b.lines(); !strings.HasPrefix(got, "Sencha 4 €35.60; Nyeri AA 3 €") {
		t.Errorf("basket after the update = %q", got)
	}
	if got := b.text(".flash-success"); got != "Sencha: quantity now 4" {
		t.Errorf("flash after the update = %q", got)
	}
	if got := b.text("#basket-count"); got != "7" {
		t.Errorf("basket count after the update = %q, want 7", got)
	}
	b.checkPage("the basket, signed in")
	b.submit("remove Nyeri AA", chromedp.CSS(`tr[data-sku="coffee-kenya"] td.remove button`), "/basket")
	if got := b.lines(); got != "Sencha 4 €35.60" {
		t.Errorf("basket after removing Nyeri AA = %q", got)
	}

	// Alice signs in on her phone too, with "Remember me": a second browser
	// context, with cookies of its own.
	phoneCtx, cancelPhone := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	defer cancelPhone()
	if err := chromedp.Do(phoneCtx); err != nil {
		t.Fatalf("opening a tab in a new browser context: %v", err)
	}
	phone := &tab{t: t, ctx: phoneCtx, base: base, axe: string(axe)}
	if _, err := chromedp.Call(phoneCtx, emulation.SetUserAgentOverride, emulation.SetUserAgentOverrideParams{UserAgent: phoneUA}); err != nil {
		t.Fatalf("the phone's User-Agent: %v", err)
	}
	phone.step("viewport", chromedp.EmulateViewport(desktopWidth, desktopHeight))
	phone.signIn("alice", true, "Welcome, alice. This browser stays signed in for 30 days.")
	if c := phone.sessionCookie(); c == nil || c.Session || time.Unix(int64(c.Expires), 0).Before(time.Now().Add(29*24*time.Hour)) {
		t.Errorf("remember me: the phone's cookie %+v, want one kept for 30 days", c)
	}
	if c := b.sessionCookie(); c == nil || !c.Session {
		t.Errorf("without remember me: the laptop's cookie %+v, want a browser-session cookie", c)
	}
	phone.open("/sessions")
	if got := phone.sessions(); !slices.Equal(got, []string{"Safari on iPhone (this)", "Chrome on Linux"}) {
		t.Errorf("the phone's sessions page lists %q", got)
	}
	phone.checkPage("the sessions page on the phone")

	// The laptop sees both, and revokes the phone.
	b.open("/sessions")
	if got := b.sessions(); !slices.Equal(got, []string{"Chrome on Linux (this)", "Safari on iPhone"}) {
		t.Errorf("the laptop's sessions page lists %q", got)
	}
	if got := b.text("li.session:not(.current) .times"); !strings.Contains(got, "Remembered") {
		t.Errorf("the phone's entry does not say it is remembered: %q", got)
	}
	b.checkPage("the sessions page")
	b.screenshot("sessions.png", desktopWidth, desktopHeight)
	b.submit("revoke the phone", chromedp.CSS("li.session:not(.current) button.revoke"), "/sessions")
	if got := b.text(".flash-success"); !strings.HasPrefix(got, "Signed out Safari on iPhone (last seen ") {
		t.Errorf("flash after revoking the phone = %q", got)
	}
	if got := b.sessions(); !slices.Equal(got, []string{"Chrome on Linux (this)"}) || b.count("#only-this") != 1 {
		t.Errorf("after revoking the phone the page lists %q", got)
	}
	b.checkPage("the sessions page with one session")

	// The phone is signed out on its next request, its basket empty.
	phone.open("/basket")
	phone.signedOut("the revoked phone")
	if got := phone.text("#basket-count"); got != "0" {
		t.Errorf("the revoked phone's basket count = %q", got)
	}
	phone.open("/sessions")
	if phone.count("#signed-out") != 1 {
		t.Error("the revoked phone's sessions page does not ask to sign in")
	}

	// "Sign out other devices": the phone signs in again, the laptop signs it out.
	phone.signIn("alice", false, "Welcome, alice")
	b.open("/sessions")
	if n := b.count("li.session"); n != 2 {
		t.Errorf("the laptop lists %d sessions after the phone signed in again, want 2", n)
	}
	b.submit("sign out other devices", chromedp.CSS("#logout-others"), "/sessions")
	if got := b.text(".flash-success"); got != "Signed out 1 other session." {
		t.Errorf("flash after signing out the other devices = %q", got)
	}
	phone.step("reload the phone", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("footer")))
	phone.signedOut("the phone signed out by the laptop")
	if got := b.text("#user"); got != "alice" {
		t.Errorf("the laptop after signing out the others shows user %q", got)
	}
	cancelPhone()

	// Signing out ends the session: the cookie goes, the basket is empty.
	b.submit("sign out", chromedp.CSS("#logout"), "/")
	if c := b.cookie(); c != "" {
		t.Errorf("the cookie survived sign-out: %q", c)
	}
	if got := b.text("#basket-count"); got != "0" {
		t.Errorf("basket count after sign-out = %q", got)
	}
	if b.count("#user") != 0 || b.count("#login") != 1 {
		t.Error("after sign-out the header still shows a user")
	}
	b.open("/basket")
	if b.count("#empty") != 1 {
		t.Errorf("basket after sign-out = %q", b.lines())
	}

	// The browser stops first, then the server (t.Cleanup runs last in, first out).
	if err := browserCtx.Err(); errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the browser test ran out of time (%s)", browserTestTimeout)
	}
}

// TestBrowserStores runs a visit through the HTML forms on every other store
// the demo offers (TestBrowser runs on the default, the file store): the
// catalog sets no cookie, two adds make one basket that survives a reload,
// signing in renews the cookie and keeps the basket, signing out empties it.
func TestBrowserStores(t *testing.T) {
	browser := startBrowser(t, chromium(t))
	stores := demotest.Stores()
	for _, name := range []string{"memory", "redis", "sqlite", "postgres"} { // file: TestBrowser
		t.Run(name, func(t *testing.T) {
			base := startShop(t, stores[name](t))
			// A browser context of its own (cookies included), like a private window.
			ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
			t.Cleanup(cancel)
			if err := chromedp.Do(ctx); err != nil {
				t.Fatalf("opening a tab in a new browser context: %v", err)
			}
			b := &tab{t: t, ctx: ctx, base: base}
			b.step("viewport", chromedp.EmulateViewport(desktopWidth, desktopHeight))
			b.open("/")
			if c := b.cookie(); c != "" {
				t.Fatalf("the catalog set a cookie: %q", c)
			}
			b.addToBasket("tea-sencha", "2", "Added 2 × Sencha")
			first := b.cookie()
			if first == "" {
				t.Fatal("adding to the basket set no cookie")
			}
			b.addToBasket("coffee-kenya", "3", "Added 3 × Nyeri AA")
			b.step("reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("footer")))
			if got := b.lines(); !strings.HasPrefix(got, "Sencha 2 €17.80; Nyeri AA 3 €") {
				t.Fatalf("basket lines after a reload = %q", got)
			}
			b.signIn("alice", false, "Welcome, alice")
			if c := b.cookie(); c == "" || c == first {
				t.Errorf("sign-in did not renew the session cookie (before %q, after %q)", first, c)
			}
			if got := b.text("#basket-count"); got != "5" {
				t.Errorf("basket count after sign-in = %q, want 5", got)
			}
			b.submit("sign out", chromedp.CSS("#logout"), "/")
			if c := b.cookie(); c != "" {
				t.Errorf("the cookie survived sign-out: %q", c)
			}
			b.signedOut("after sign-out")
			b.open("/basket")
			if b.count("#empty") != 1 {
				t.Errorf("basket after sign-out = %q", b.lines())
			}
		})
	}
}
