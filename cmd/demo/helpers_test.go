package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"

	"github.com/fxsession/fxsession/cmd/demo/internal/app"
)

// Timing of the process tests: generous, the machines are small and shared.
const (
	buildTimeout = 5 * time.Minute  // go build of the demo (a cold cache compiles SQLite)
	startTimeout = 30 * time.Second // from exec to "demo shop listening"
	stopTimeout  = 30 * time.Second // from SIGTERM to exit
)

// demoBinary is the demo command built once per test run (see buildDemo).
var demoBinary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) {
		if demoBinary.dir != "" {
			os.RemoveAll(demoBinary.dir)
		}
	}))
}

// buildDemo builds the demo command once for the whole test run, with -race when
// the tests run with it, and returns the binary's path.
func buildDemo(t *testing.T) string {
	t.Helper()
	demoBinary.once.Do(func() {
		dir, err := os.MkdirTemp("", "fxsession-demo-bin-")
		if err != nil {
			demoBinary.err = err
			return
		}
		demoBinary.dir = dir
		goTool, err := exec.LookPath("go")
		if err != nil {
			demoBinary.err = fmt.Errorf("the go command is not on PATH: %w", err)
			return
		}
		args := []string{"build", "-o", filepath.Join(dir, "demo")}
		if raceEnabled {
			args = append(args, "-race")
		}
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, goTool, append(args, ".")...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			demoBinary.err = fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
			return
		}
		demoBinary.path = filepath.Join(dir, "demo")
	})
	if demoBinary.err != nil {
		t.Fatalf("building the demo: %v", demoBinary.err)
	}
	return demoBinary.path
}

// cleanEnv is the environment of the test without the demo's own variables, so
// that a developer's DEMO_STORE does not change what the tests run against.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DEMO_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// demoProc is a "demo serve" process.
type demoProc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	addr   string // host:port it listens on
	stderr *lockedBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // cmd.Wait's result, valid after done
}

var listeningRE = regexp.MustCompile(`msg="demo shop listening" addr=(\S+)`)

// startDemo runs "demo serve -addr 127.0.0.1:0 args..." and waits until it
// listens. The process is killed at the end of the test if still running; its
// log is shown when the test failed.
func startDemo(t *testing.T, name string, args ...string) *demoProc {
	t.Helper()
	bin := buildDemo(t)
	p := &demoProc{t: t, name: name, stderr: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"serve", "-addr", "127.0.0.1:0"}, args...)...)
	p.cmd.Env = cleanEnv()
	p.cmd.Stdout = p.stderr
	pipe, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.stderr.Write([]byte(line + "\n"))
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		io.Copy(p.stderr, pipe) // a line too long for the scanner
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("log of %s:\n%s", name, p.stderr.String())
		}
	})
	select {
	case p.addr = <-addr:
	case <-p.done:
		t.Fatalf("%s exited before listening: %v\n%s", name, p.err, p.stderr.String())
	case <-time.After(startTimeout):
		t.Fatalf("%s did not listen within %s:\n%s", name, startTimeout, p.stderr.String())
	}
	return p
}

// URL is the process's base URL.
func (p *demoProc) URL() string { return "http://" + p.addr }

// signal sends sig to the process.
func (p *demoProc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signalling %s: %v", p.name, err)
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *demoProc) wait() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		p.t.Fatalf("%s did not exit within %s:\n%s", p.name, stopTimeout, p.stderr.String())
	}
	var exit *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.t.Fatalf("%s was killed by %v:\n%s", p.name, ws.Signal(), p.stderr.String())
		}
		return exit.ExitCode()
	}
	p.t.Fatalf("waiting for %s: %v", p.name, p.err)
	return -1
}

// stop sends SIGTERM and requires a graceful exit with status 0.
func (p *demoProc) stop() {
	p.t.Helper()
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		p.t.Fatalf("%s exited with status %d after SIGTERM:\n%s", p.name, code, p.stderr.String())
	}
	if !strings.Contains(p.stderr.String(), "shutting down: finishing in-flight requests") {
		p.t.Errorf("%s did not log its graceful shutdown:\n%s", p.name, p.stderr.String())
	}
}

// startShop serves the demo in this process on a loopback port, as "demo serve"
// does, and returns its base URL. Empty Dir, Catalog and Namespace get fresh
// values in a temporary folder. The app stops when the test ends.
func startShop(t *testing.T, c *app.Config) string {
	t.Helper()
	dir := t.TempDir()
	if c.Store == "" {
		c.Store = "file"
	}
	if c.Dir == "" {
		c.Dir = filepath.Join(dir, "sessions")
	}
	if c.Catalog == "" {
		c.Catalog = filepath.Join(dir, "catalog.db")
	}
	if c.Namespace == "" {
		c.Namespace = "demo-test"
	}
	c.Addr = "127.0.0.1:0"
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	var addr net.Addr
	fxApp := fxtest.New(t, app.Options(c, logger), app.Serve(c, logger, func(a net.Addr) { addr = a }), fx.NopLogger)
	fxApp.RequireStart()
	t.Cleanup(fxApp.RequireStop)
	return "http://" + addr.String()
}

// visitor is an HTTP client with its own cookie jar, like one browser. It does
// not follow redirects.
type visitor struct {
	t    *testing.T
	base string
	http *http.Client
}

func newVisitor(t *testing.T, base string) *visitor {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &visitor{t: t, base: base, http: &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

// on returns a visitor with the same cookie jar talking to another server (a
// browser whose requests a load balancer sends to another process).
// Cookies do not tell ports apart, so on 127.0.0.1 the jar sends the same
// session cookie to every port, as a browser does.
func (v *visitor) on(base string) *visitor {
	other := *v
	other.base = base
	return &other
}

// do sends a request; a body starting with { is JSON, another one a form.
func (v *visitor) do(method, path, body string) (int, string) {
	v.t.Helper()
	req, err := http.NewRequest(method, v.base+path, strings.NewReader(body))
	if err != nil {
		v.t.Fatal(err)
	}
	if strings.HasPrefix(body, "{") {
		req.Header.Set("Content-Type", "application/json")
	} else if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	res, err := v.http.Do(req)
	if err != nil {
		v.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		v.t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return res.StatusCode, string(b)
}

// must sends a request and requires the status.
func (v *visitor) must(status int, method, path, body string) string {
	v.t.Helper()
	got, b := v.do(method, path, body)
	if got != status {
		v.t.Fatalf("%s %s%s: status %d, want %d: %s", method, v.base, path, got, status, b)
	}
	return b
}

// cookie is the session cookie's value ("" when there is none).
func (v *visitor) cookie() string {
	u, _ := url.Parse(v.base)
	for _, c := range v.http.Jar.Cookies(u) {
		if c.Name == "fxsession" {
			return c.Value
		}
	}
	return ""
}

// basketJSON is the body of GET /api/basket.
type basketJSON struct {
	Items []struct {
		SKU        string `json:"sku"`
		Name       string `json:"name"`
		Qty        int    `json:"qty"`
		PriceCents int64  `json:"price_cents"`
	} `json:"items"`
	TotalCents int64 `json:"total_cents"`
}

// basket reads the visitor's basket through the API as "sku×qty,..." .
func (v *visitor) basket() string {
	v.t.Helper()
	var b basketJSON
	if err := json.Unmarshal([]byte(v.must(200, "GET", "/api/basket", "")), &b); err != nil {
		v.t.Fatal(err)
	}
	var parts []string
	for _, it := range b.Items {
		parts = append(parts, fmt.Sprintf("%s×%d", it.SKU, it.Qty))
	}
	return strings.Join(parts, ",")
}
