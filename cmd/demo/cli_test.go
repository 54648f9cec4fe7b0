package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache/filestore"
	"github.com/fxsession/fxsession/cmd/demo/internal/app"
	"github.com/fxsession/fxsession/session"
)

// cli runs the demo command in this process with the environment env and returns
// its output, its log and its error.
func cli(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return cliWithin(t, 30*time.Second, env, args...)
}

// cliWithin is cli with a bound on the run: a "serve" that should have been
// refused ends within it instead of serving.
func cliWithin(t *testing.T, limit time.Duration, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	err = run(ctx, args, &o, &e, func(k string) string { return env[k] })
	return o.String(), e.String(), err
}

// mustCLI runs the command and requires success.
func mustCLI(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	out, log, err := cli(t, env, args...)
	if err != nil {
		t.Fatalf("demo %s: %v\n%s", strings.Join(args, " "), err, log)
	}
	return out
}

// storeFlags name a file store and a catalog in a temporary folder.
type storeFlags struct{ dir, namespace, catalog string }

func newStoreFlags(t *testing.T) storeFlags {
	dir := t.TempDir()
	return storeFlags{filepath.Join(dir, "sessions"), "cli-test", filepath.Join(dir, "catalog.db")}
}

// args is "sessions cmd... -store file -dir ... -namespace ... -catalog ...".
func (s storeFlags) args(cmd ...string) []string {
	return append(append([]string{"sessions"}, cmd...),
		"-store", "file", "-dir", s.dir, "-namespace", s.namespace, "-catalog", s.catalog)
}

// env is the same configuration as environment variables.
func (s storeFlags) env() map[string]string {
	return map[string]string{"DEMO_STORE": "file", "DEMO_DIR": s.dir, "DEMO_NAMESPACE": s.namespace, "DEMO_CATALOG": s.catalog}
}

// hashOf is the session hash "sessions list" shows for a session ID.
func hashOf(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

const stamp = `\d{4}-\d\d-\d\d \d\d:\d\d:\d\d`

var rowRE = regexp.MustCompile(`(?m)^([0-9a-f]{64})  +(` + stamp + `)  +(` + stamp + `)  +(\S*?) *  (\d+(?:\.\d)? (?:B|KiB|MiB))$`)

type row struct{ created, last, tags, size string }

// list runs "sessions list" and parses its table by session hash.
func list(t *testing.T, s storeFlags) map[string]row {
	t.Helper()
	out := mustCLI(t, nil, s.args("list")...)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if !regexp.MustCompile(`^HASH +CREATED +LAST ACTIVITY +TAGS +SIZE$`).MatchString(lines[0]) {
		t.Fatalf("list header = %q", lines[0])
	}
	rows := map[string]row{}
	for _, m := range rowRE.FindAllStringSubmatch(out, -1) {
		rows[m[1]] = row{m[2], m[3], m[4], m[5]}
	}
	n := len(lines) - 2
	if len(rows) != n {
		t.Fatalf("parsed %d of %d rows:\n%s", len(rows), n, out)
	}
	want := strconv.Itoa(n) + " sessions"
	if n == 1 {
		want = "1 session"
	}
	if last := lines[len(lines)-1]; last != want {
		t.Fatalf("count line = %q, want %q", last, want)
	}
	return rows
}

// TestSessionsCommands administers sessions made through the shop's HTTP API,
// on the file store the shop is serving from.
func TestSessionsCommands(t *testing.T) {
	s := newStoreFlags(t)
	base := startShop(t, &app.Config{Store: "file", Dir: s.dir, Namespace: s.namespace, Catalog: s.catalog})

	browser := newVisitor(t, base)
	browser.must(200, "GET", "/", "")
	if out := mustCLI(t, nil, s.args("list")...); out != "HASH  CREATED  LAST ACTIVITY  TAGS  SIZE\n0 sessions\n" {
		t.Fatalf("list before any session = %q", out)
	}

	anna := newVisitor(t, base) // alice on her laptop: a basket, then signs in
	anna.must(200, "POST", "/api/basket/items", `{"sku":"tea-sencha","qty":2}`)
	anna.must(200, "POST", "/api/login", `{"user":"alice"}`)
	phone := newVisitor(t, base) // alice on her phone: signs in only
	phone.must(200, "POST", "/api/login", `{"user":"alice"}`)
	bob := newVisitor(t, base)
	bob.must(200, "POST", "/api/basket/items", `{"sku":"coffee-kenya","qty":1}`)
	carl := newVisitor(t, base)
	carl.must(200, "POST", "/api/basket/items", `{"sku":"tea-assam","qty":3}`)

	rows := list(t, s)
	if len(rows) != 4 {
		t.Fatalf("%d sessions listed, want 4", len(rows))
	}
	for name, v := range map[string]*visitor{"anna": anna, "phone": phone, "bob": bob, "carl": carl} {
		r, ok := rows[hashOf(v.cookie())]
		if !ok {
			t.Fatalf("%s's session (hash %s) is not listed: %v", name, hashOf(v.cookie()), rows)
		}
		wantTags := ""
		if name == "anna" || name == "phone" {
			wantTags = "user:alice"
		}
		if r.tags != wantTags {
			t.Errorf("%s's tags = %q, want %q", name, r.tags, wantTags)
		}
		if r.size == "0 B" && name != "phone" {
			t.Errorf("%s's session has size 0 but holds a basket", name)
		}
		created, err := time.ParseInLocation("2006-01-02 15:04:05", r.created, time.Local)
		if err != nil || time.Since(created) > time.Minute || time.Since(created) < -time.Second {
			t.Errorf("%s's session created %q (%v), want about now", name, r.created, err)
		}
	}
	if _, ok := rows[hashOf(browser.cookie())]; browser.cookie() != "" || ok {
		t.Error("browsing the catalog made a session")
	}

	// show, by hash and by ID; the ID is never printed.
	for _, name := range []string{hashOf(bob.cookie()), bob.cookie()} {
		out := mustCLI(t, nil, s.args("show", name)...)
		for _, want := range []string{"hash:           " + hashOf(bob.cookie()), "created:", "last activity:", "expires:", "values:"} {
			if !strings.Contains(out, want) {
				t.Errorf("show lacks %q:\n%s", want, out)
			}
		}
		if !regexp.MustCompile(`(?m)^  \S+\s+\d+ B$`).MatchString(out) {
			t.Errorf("show lists no stored value with its size:\n%s", out)
		}
		if strings.Contains(out, bob.cookie()) {
			t.Error("show printed the session ID")
		}
	}
	if out := mustCLI(t, nil, s.args("show", hashOf(anna.cookie()))...); !strings.Contains(out, "tags:           user:alice\n") {
		t.Errorf("show of alice's session:\n%s", out)
	}
	_, _, err := cli(t, nil, s.args("show", strings.Repeat("ab", 32))...)
	if !errors.Is(err, session.ErrNotFound) || errors.Is(err, errUsage) {
		t.Errorf("show of an unknown session: %v, want ErrNotFound and not a usage error", err)
	}

	// destroy one, by ID: bob's next request has an empty basket.
	if out := mustCLI(t, nil, s.args("destroy", bob.cookie())...); out != "destroyed 1 session\n" {
		t.Errorf("destroy = %q", out)
	}
	if got := bob.basket(); got != "" {
		t.Errorf("bob's basket after destroy = %q", got)
	}
	if _, _, err := cli(t, nil, s.args("destroy", hashOf(bob.cookie()))...); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("destroying it again: %v, want ErrNotFound", err)
	}

	// destroy-tag, configured through the environment only.
	if out := mustCLI(t, s.env(), "sessions", "destroy-tag", "user:alice"); out != "destroyed 2 sessions tagged user:alice\n" {
		t.Errorf("destroy-tag = %q", out)
	}
	for name, v := range map[string]*visitor{"anna": anna, "phone": phone} {
		if got := v.basket(); got != "" {
			t.Errorf("%s's basket after destroy-tag = %q", name, got)
		}
	}
	if got := carl.basket(); got != "tea-assam×3" {
		t.Errorf("carl's basket after destroy-tag = %q", got)
	}

	// destroy-all.
	if out := mustCLI(t, nil, s.args("destroy-all")...); out != "destroyed 1 session\n" {
		t.Errorf("destroy-all = %q", out)
	}
	if got := carl.basket(); got != "" {
		t.Errorf("carl's basket after destroy-all = %q", got)
	}
	if rows := list(t, s); len(rows) != 0 {
		t.Errorf("sessions after destroy-all: %v", rows)
	}

	// gc: three sessions last used two hours ago (written by a manager whose clock
	// is two hours behind) are collected; a live one stays.
	store, err := filestore.Open(filestore.Options{Dir: s.dir, Namespace: s.namespace})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	past := time.Now().Add(-2 * time.Hour)
	old, err := session.New(store, session.Config{Namespace: "session", GCInterval: session.Never, Now: func() time.Time { return past }})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		ctx, sess := old.NewContext(t.Context(), "")
		if err := sess.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := sess.Put(ctx, "note", "stale"); err != nil {
			t.Fatal(err)
		}
		if err := sess.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	dave := newVisitor(t, base)
	dave.must(200, "POST", "/api/basket/items", `{"sku":"tea-assam"}`)
	if rows := list(t, s); len(rows) != 1 {
		t.Fatalf("list shows %d sessions, want only the live one (expired ones are not listed)", len(rows))
	}
	out, progress, err := cli(t, nil, s.args("gc")...)
	if err != nil {
		t.Fatal(err)
	}
	if out != "removed 3 expired sessions\n" {
		t.Errorf("gc = %q", out)
	}
	if !strings.Contains(progress, "... 3 expired sessions removed") {
		t.Errorf("gc progress = %q", progress)
	}
	if out := mustCLI(t, nil, s.args("gc")...); out != "removed 0 expired sessions\n" {
		t.Errorf("second gc = %q", out)
	}
	if got := dave.basket(); got != "tea-assam×1" {
		t.Errorf("the live session after gc: %q", got)
	}
}

// TestUsageErrors: wrong commands, arguments, flags and settings are usage errors
// (exit status 2) with a message that says what is wrong.
func TestUsageErrors(t *testing.T) {
	s := newStoreFlags(t)
	// A refused command opens no store: the default one (./var) is not created.
	if _, err := os.Stat("var"); err == nil {
		t.Fatal("./var exists before the test; remove it")
	}
	t.Cleanup(func() {
		if _, err := os.Stat("var"); err == nil {
			t.Error("a refused command created the default store in ./var")
			os.RemoveAll("var")
		}
	})
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string // in the error
		log  string // in the stderr output
	}{
		{nil, []string{"frobnicate"}, `unknown command "frobnicate"`, ""},
		{nil, []string{"sessions"}, "no command", ""},
		{nil, s.args("lst"), `unknown command "lst"`, ""},
		{nil, s.args("show"), "show takes a session hash or ID", ""},
		{nil, s.args("destroy", "a", "b"), "destroy takes a session hash or ID", ""},
		{nil, s.args("destroy-tag"), "destroy-tag takes a tag", ""},
		{nil, s.args("list", "everything"), "list takes no argument", ""},
		{nil, []string{"serve", "now"}, "demo serve takes no arguments", ""},
		{nil, []string{"serve", "-store", "nope"}, `unknown -store "nope" (want one of memory, file, redis, sqlite, postgres)`, ""},
		{nil, []string{"serve", "-store", "sqlite"}, "-store sqlite needs -dsn", ""},
		{nil, []string{"serve", "-store", "postgres"}, "-store postgres needs -dsn", ""},
		{nil, []string{"serve", "-bogus"}, "flag provided but not defined: -bogus", "-redis-url"},
		{nil, []string{"sessions", "list", "-namespace", "bad namespace"}, "-namespace", ""},
		{map[string]string{"DEMO_STORE": "nope"}, []string{"sessions", "list"}, `unknown -store "nope"`, ""},
		{map[string]string{"DEMO_DEV": "yes please"}, []string{"serve"}, "DEMO_DEV", ""},
		{map[string]string{"DEMO_SHUTDOWN_TIMEOUT": "30"}, []string{"serve"}, "DEMO_SHUTDOWN_TIMEOUT", ""},
	} {
		// Should a refused serve start after all, it does so on a loopback port
		// and in-memory, and stops within seconds.
		args := tc.args
		if args[0] == "serve" && !slices.Contains(args, "-bogus") {
			args = append(slices.Clone(args), "-addr", "127.0.0.1:0", "-catalog", s.catalog)
			if !slices.Contains(args, "-store") {
				args = append(args, "-store", "memory")
			}
		}
		_, log, err := cliWithin(t, 5*time.Second, tc.env, args...)
		if !errors.Is(err, errUsage) {
			t.Errorf("demo %q (env %v): %v, want a usage error", tc.args, tc.env, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("demo %q: error %q lacks %q", tc.args, err, tc.want)
		}
		if !strings.Contains(log, tc.log) {
			t.Errorf("demo %q: stderr lacks %q:\n%s", tc.args, tc.log, log)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"help"}, {"--help"}} {
		out, _, err := cli(t, nil, args...)
		if err != nil || !strings.Contains(out, "demo serve [flags]") || !strings.Contains(out, "demo sessions list|show ID") {
			t.Errorf("demo %s: %v, %q", args[0], err, out)
		}
	}
	for _, args := range [][]string{{"serve", "-h"}, {"sessions", "-help"}} {
		_, log, err := cli(t, nil, args...)
		if err != nil {
			t.Errorf("demo %q: %v, want no error", args, err)
		}
		for _, want := range []string{"-addr", "env DEMO_ADDR", "-store", "-redis-url", "-dsn", "-namespace", "-catalog", "-dev", "-shutdown-timeout"} {
			if !strings.Contains(log, want) {
				t.Errorf("demo %q does not document %s:\n%s", args, want, log)
			}
		}
	}
}

// TestConfigFromEnv: every flag has an environment variable; the flag wins.
func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{
		"DEMO_ADDR": "127.0.0.1:9999", "DEMO_STORE": "postgres", "DEMO_DIR": "/tmp/s",
		"DEMO_REDIS_URL": "redis://127.0.0.1:7000/2", "DEMO_DSN": "postgres://x@127.0.0.1/y",
		"DEMO_NAMESPACE": "ns-env", "DEMO_CATALOG": "/tmp/c.db", "DEMO_DEV": "true",
		"DEMO_SHUTDOWN_TIMEOUT": "3s",
	}
	getenv := func(k string) string { return env[k] }
	var stderr bytes.Buffer
	c, rest, err := parse("demo serve", nil, &stderr, getenv)
	if err != nil {
		t.Fatal(err)
	}
	want := app.Config{Addr: "127.0.0.1:9999", Store: "postgres", Dir: "/tmp/s", RedisURL: "redis://127.0.0.1:7000/2",
		DSN: "postgres://x@127.0.0.1/y", Namespace: "ns-env", Catalog: "/tmp/c.db", Dev: true, ShutdownTimeout: 3 * time.Second}
	if !configEqual(*c, want) || len(rest) != 0 {
		t.Errorf("from the environment: %+v %q, want %+v", *c, rest, want)
	}

	c, rest, err = parse("demo sessions", []string{"show", "-store", "memory", "-addr", ":1", "-dev=false", "HASH", "-shutdown-timeout", "1m"}, &stderr, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Store != "memory" || c.Addr != ":1" || c.Dev || c.ShutdownTimeout != time.Minute || c.Namespace != "ns-env" {
		t.Errorf("flags over the environment: %+v", *c)
	}
	if len(rest) != 2 || rest[0] != "show" || rest[1] != "HASH" {
		t.Errorf("positional arguments around flags: %q", rest)
	}

	c, _, err = parse("demo serve", nil, &stderr, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	def := app.Config{Addr: ":8080", Store: "file", Dir: "var/sessions", RedisURL: "redis://127.0.0.1:6379/0",
		Namespace: "fxsession-demo", Catalog: "var/catalog.db", ShutdownTimeout: 10 * time.Second}
	if !configEqual(*c, def) {
		t.Errorf("defaults: %+v, want %+v", *c, def)
	}
	if _, _, err := parse("demo serve", []string{"-h"}, &stderr, getenv); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}

func configEqual(a, b app.Config) bool {
	return a.Addr == b.Addr && a.Store == b.Store && a.Dir == b.Dir && a.RedisURL == b.RedisURL && a.DSN == b.DSN &&
		a.Namespace == b.Namespace && a.Catalog == b.Catalog && a.Dev == b.Dev && a.ShutdownTimeout == b.ShutdownTimeout
}

// TestExitCodes runs the built binary: usage errors exit 2, other errors 1, help 0.
func TestExitCodes(t *testing.T) {
	bin := buildDemo(t)
	s := newStoreFlags(t)
	for _, tc := range []struct {
		args   []string
		env    []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"frobnicate"}, nil, 2, "", `demo: usage: unknown command "frobnicate"`},
		{[]string{"sessions", "show"}, s.environ(), 2, "", "show takes a session hash or ID"},
		{[]string{"serve", "-store", "nope"}, nil, 2, "", `unknown -store "nope"`},
		{[]string{"serve", "-h"}, nil, 0, "", "-shutdown-timeout"},
		{[]string{"-h"}, nil, 0, "demo sessions list", ""},
		{[]string{"sessions", "show", strings.Repeat("ab", 32)}, s.environ(), 1, "", "demo: session"},
		{[]string{"sessions", "list"}, s.environ(), 0, "0 sessions", ""},
		{[]string{"serve", "-store", "redis", "-redis-url", "redis://127.0.0.1:1/0"}, s.environ(), 1, "", "\ndemo: opening the redis session store: ping Redis at 127.0.0.1:1: "},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		cmd := exec.CommandContext(ctx, bin, tc.args...)
		cmd.Env = cleanEnv(tc.env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		cancel()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatalf("demo %q: %v", tc.args, err)
		}
		if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("demo %q: exit %d, want %d; stdout %q (want %q); stderr %q (want %q)",
				tc.args, code, tc.code, stdout.String(), tc.stdout, stderr.String(), tc.stderr)
		}
	}
}

// environ is the configuration as KEY=value pairs for a process.
func (s storeFlags) environ() []string {
	var env []string
	for k, v := range s.env() {
		env = append(env, k+"="+v)
	}
	return env
}
