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
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/fxsession/fxsession/cmd/demo/internal/app"
)

// Timing of the browser test. A step is one page action and its checks; the
// whole test, browser start included, is bounded too, so a browser that hangs
// fails the test instead of stalling it.
const (
	browserTestTimeout = 90 * time.Second
	browserStepTimeout = 20 * time.Second
)

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
		tr => Array.from(tr.cells).slice(0, 4).filter((_, i) => i != 2).map(td => td.innerText.trim()).join(" ")).join("; ")`))
}

// cookie is the value of the session cookie the browser holds for the shop.
func (b *tab) cookie() string {
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
			return c.Value
		}
	}
	return ""
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

// screenshot saves the viewport as docs/img/name, but only when asked to
// (UPDATE_SCREENSHOTS=1) or when the file is missing, so that a test run on a
// clean clone leaves the tree alone.
func (b *tab) screenshot(name string) {
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
	if cfg.Width != 1280 || cfg.Height != 900 {
		b.t.Errorf("screenshot %s is %dx%d, want 1280x900", name, cfg.Width, cfg.Height)
	}
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("wrote %s (%d KiB)", path, len(buf)>>10)
}

// TestBrowser drives the shop with a real, headless chromium: no cookie on the
// catalog, two products added through the HTML forms, flash messages shown
// once, the basket kept across reloads and private to the browser, login
// renewing the cookie and keeping the basket, logout emptying it.
func TestBrowser(t *testing.T) {
	exe := chromium(t)
	base := startShop(t, &app.Config{Store: "file"})

	ctx, cancel := context.WithTimeout(t.Context(), browserTestTimeout)
	defer cancel()
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
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(&chromeLog),
	)
	defer cancelAlloc()
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	// The first run starts the browser; it lives as long as browserCtx.
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("starting chromium (%s): %v\n%s", exe, err, chromeLog.String())
	}
	defer func() {
		if t.Failed() {
			t.Logf("chromium output:\n%s", chromeLog.String())
		}
	}()
	b := &tab{t: t, ctx: browserCtx, base: base}
	b.step("viewport", chromedp.EmulateViewport(1280, 900))

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
	b.screenshot("basket.png")

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
	b.screenshot("catalog.png")
	b.open("/basket")
	if got := b.lines(); !strings.HasPrefix(got, "Sencha 2 €17.80; Nyeri AA 3 €") {
		t.Errorf("basket after sign-in = %q", got)
	}

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

	// The browser goes first, then the server (t.Cleanup).
	cancelBrowser()
	if err := ctx.Err(); errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the browser test ran out of time (%s)", browserTestTimeout)
	}
}
