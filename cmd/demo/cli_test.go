package main

import (
	"bytes"
	"context"
	"encoding/json"
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

// cli runs the demo command in this process with the environment env and no
// terminal, and returns its output, what a person sees on stderr (its log and,
// as main prints it, its error) and its error.
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
	err = run(ctx, args, strings.NewReader(""), &o, &e, func(k string) string { return env[k] })
	report(&e, err)
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

// args is "sessions cmd... -store file -dir ... -namespace ...".
func (s storeFlags) args(cmd ...string) []string {
	return append(append([]string{"sessions"}, cmd...),
		"-store", "file", "-dir", s.dir, "-namespace", s.namespace)
}

// env is the same configuration as environment variables.
func (s storeFlags) env() map[string]string {
	return map[string]string{"DEMO_STORE": "file", "DEMO_DIR": s.dir, "DEMO_NAMESPACE": s.namespace, "DEMO_CATALOG": s.catalog}
}

// refOf is the session reference "sessions list" shows for a session ID: its
// selector, the ID's first session.RefLength characters.
func refOf(id string) string { return id[:session.RefLength] }

// secretOf is the part of a session ID no command may print: its verifier.
func secretOf(id string) string { return id[session.RefLength:] }

// stamp is an RFC 3339 time with its zone.
const stamp = `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:Z|[+-]\d\d:\d\d)`

var rowRE = regexp.MustCompile(`(?m)^([A-Za-z0-9_-]{22})  +(` + stamp + `)  +(` + stamp + `)  +(\S*?) *  (\d+(?:\.\d)? (?:B|KiB|MiB))$`)

type row struct{ created, last, tags, size string }

// list runs "sessions list" and parses its table by session reference.
func list(t *testing.T, s storeFlags) map[string]row {
	t.Helper()
	out := mustCLI(t, nil, s.args("list")...)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if !regexp.MustCompile(`^REF +CREATED +LAST ACTIVITY +TAGS +SIZE$`).MatchString(lines[0]) {
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
	if out := mustCLI(t, nil, s.args("list")...); out != "REF  CREATED  LAST ACTIVITY  TAGS  SIZE\n0 sessions\n" {
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
		r, ok := rows[refOf(v.cookie())]
		if !ok {
			t.Fatalf("%s's session (ref %s) is not listed: %v", name, refOf(v.cookie()), rows)
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
		created, err := time.Parse(time.RFC3339, r.created)
		if err != nil || time.Since(created) > time.Minute || time.Since(created) < -time.Second {
			t.Errorf("%s's session created %q (%v), want about now", name, r.created, err)
		}
	}
	if browser.cookie() != "" {
		t.Error("browsing the catalog made a session")
	}

	// show, by reference and by ID; the ID's secret part is never printed.
	for _, name := range []string{refOf(bob.cookie()), bob.cookie()} {
		out := mustCLI(t, nil, s.args("show", name)...)
		for _, want := range []string{"ref:            " + refOf(bob.cookie()), "created:", "last activity:", "expires:", "values:"} {
			if !strings.Contains(out, want) {
				t.Errorf("show lacks %q:\n%s", want, out)
			}
		}
		if !regexp.MustCompile(`(?m)^  \S+\s+\d+ B$`).MatchString(out) {
			t.Errorf("show lists no stored value with its size:\n%s", out)
		}
		if strings.Contains(out, secretOf(bob.cookie())) {
			t.Error("show printed the session ID's secret part")
		}
	}
	annaShow := mustCLI(t, nil, s.args("show", refOf(anna.cookie()))...)
	for _, want := range []string{
		"tags:           user:alice\n",
		// The shop's own values, decoded: the user and the basket (a reference
		// to the product and its quantity).
		"  v:user  6 B\n    \"alice\"\n",
		"  e:scope:Basket.0cZqTba3jZ46  ",
		"    {\n      \"items\": [\n        {\n          \"sku\": \"tea-sencha\",\n          \"qty\": 2\n        }\n      ]\n    }\n",
	} {
		if !strings.Contains(annaShow, want) {
			t.Errorf("show of alice's session lacks %q:\n%s", want, annaShow)
		}
	}
	if strings.Contains(annaShow, "msgpack:") {
		t.Errorf("show of alice's session left a value undecoded:\n%s", annaShow)
	}
	var shown struct {
		Ref     string `json:"ref"`
		Created string `json:"created"`
		Values  []struct {
			Key  string          `json:"key"`
			JSON json.RawMessage `json:"json"`
		} `json:"values"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, nil, s.args("show", "-json", anna.cookie())...)), &shown); err != nil {
		t.Fatalf("show -json: %v", err)
	}
	if _, err := time.Parse(time.RFC3339, shown.Created); shown.Ref != refOf(anna.cookie()) || err != nil || len(shown.Values) != 2 {
		t.Errorf("show -json = %+v (%v)", shown, err)
	}
	var listed []struct {
		Ref  string   `json:"ref"`
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, nil, s.args("list", "-json")...)), &listed); err != nil || len(listed) != 4 {
		t.Errorf("list -json: %v, %+v", err, listed)
	}
	// A well-formed reference of no session, a name of the old form (a hex
	// hash), and bob's ID with another verifier.
	for _, name := range []string{strings.Repeat("A", session.RefLength), strings.Repeat("ab", 32), refOf(bob.cookie()) + strings.Repeat("A", len(secretOf(bob.cookie())))} {
		_, _, err := cli(t, nil, s.args("show", name)...)
		if !errors.Is(err, session.ErrNotFound) || errors.Is(err, errUsage) {
			t.Errorf("show of an unknown session %s: %v, want ErrNotFound and not a usage error", name, err)
		}
	}

	// destroy one, by ID: bob's next request has an empty basket (and his
	// browser forgets the dead ID).
	bobRef := refOf(bob.cookie())
	if out := mustCLI(t, nil, s.args("destroy", bob.cookie())...); out != "destroyed 1 session\n" {
		t.Errorf("destroy = %q", out)
	}
	if got := bob.basket(); got != "" {
		t.Errorf("bob's basket after destroy = %q", got)
	}
	if _, _, err := cli(t, nil, s.args("destroy", bobRef)...); !errors.Is(err, session.ErrNotFound) {
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

	// destroy-all: without a terminal to ask, only with -yes.
	if _, _, err := cli(t, nil, s.args("destroy-all")...); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "-yes") {
		t.Errorf("destroy-all without -yes and without a terminal: %v", err)
	}
	if got := carl.basket(); got != "tea-assam×3" {
		t.Errorf("carl's basket after a refused destroy-all = %q", got)
	}
	if out := mustCLI(t, nil, s.args("destroy-all", "-yes")...); out != "destroyed 1 session\n" {
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
		{nil, []string{}, "no command", "usage:\n  demo serve [flags]\n"},
		{nil, []string{"frobnicate"}, `unknown command "frobnicate"`, ""},
		{nil, []string{"sessions"}, "no command", ""},
		{nil, []string{"sessions", "list", "-store", "memory"}, "-store memory keeps its sessions inside the serving process", ""},
		{nil, s.args("lst"), `unknown command "lst"`, ""},
		{nil, s.args("show"), "show takes a session reference or ID", ""},
		{nil, s.args("destroy", "a", "b"), "destroy takes a session reference or ID", ""},
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
		if len(args) > 0 && args[0] == "serve" && !slices.Contains(args, "-bogus") {
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

// TestMessagesDoNotStutter: a wrong command line is reported once, as
// "COMMAND: what is wrong", followed by the command's usage; "demo" alone
// prints the usage only.
func TestMessagesDoNotStutter(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		first string // the first line a person sees
		usage string // in what follows
	}{
		{nil, "usage:", `Run "demo serve -h" or "demo sessions -h"`},
		{[]string{"frobnicate"}, `demo: unknown command "frobnicate"`, "demo serve [flags]"},
		{[]string{"sessions"}, "demo sessions: no command", "usage: demo sessions COMMAND [flags]"},
		{[]string{"sessions", "lst"}, `demo sessions: unknown command "lst"`, "destroy-tag TAG"},
		{[]string{"sessions", "show"}, "demo sessions: show takes a session reference or ID", "-namespace"},
		{[]string{"sessions", "list", "-store", "memory"}, "demo sessions: -store memory keeps its sessions inside the serving process, out of reach of another command: name the store the shop serves from", "-store"},
		{[]string{"serve", "-bogus"}, "demo serve: flag provided but not defined: -bogus", "usage: demo serve [flags]"},
		{[]string{"serve", "-store", "nope"}, `demo serve: unknown -store "nope" (want one of memory, file, redis, sqlite, postgres)`, "-shutdown-timeout"},
	} {
		_, log, err := cliWithin(t, 5*time.Second, nil, tc.args...)
		if !errors.Is(err, errUsage) {
			t.Errorf("demo %q: %v, want a usage error", tc.args, err)
			continue
		}
		first, rest, _ := strings.Cut(log, "\n")
		if first != tc.first {
			t.Errorf("demo %q: first line %q, want %q", tc.args, first, tc.first)
		}
		if !strings.Contains(rest, tc.usage) {
			t.Errorf("demo %q: the usage lacks %q:\n%s", tc.args, tc.usage, log)
		}
		for _, stutter := range []string{"usage: usage", "usage: sessionctl", "sessionctl:", ": usage:", "Usage of"} {
			if strings.Contains(log, stutter) {
				t.Errorf("demo %q stutters (%q):\n%s", tc.args, stutter, log)
			}
		}
		if strings.Count(log, strings.TrimPrefix(first, "demo sessions: ")) != 1 {
			t.Errorf("demo %q repeats its message:\n%s", tc.args, log)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"help"}, {"--help"}} {
		out, _, err := cli(t, nil, args...)
		if err != nil || !strings.Contains(out, "demo serve [flags]") || !strings.Contains(out, "demo sessions list|show REF") {
			t.Errorf("demo %s: %v, %q", args[0], err, out)
		}
	}
	serveFlags := []string{"-addr", "env DEMO_ADDR", "-catalog", "-dev", "-shutdown-timeout"}
	storeFlags := []string{"-store", "env DEMO_STORE", "-dir", "-redis-url", "-dsn", "-namespace"}
	_, log, err := cli(t, nil, "serve", "-h")
	if err != nil {
		t.Errorf("demo serve -h: %v, want no error", err)
	}
	for _, want := range append(serveFlags, storeFlags...) {
		if !strings.Contains(log, want) {
			t.Errorf("demo serve -h does not document %s:\n%s", want, log)
		}
	}
}

// TestSessionsHelp: "demo sessions -h" shows the commands and only the flags the
// sessions commands use: the store's, -json and -yes, none of serve's.
func TestSessionsHelp(t *testing.T) {
	for _, h := range []string{"-h", "-help", "--help"} {
		_, log, err := cli(t, nil, "sessions", h)
		if err != nil {
			t.Errorf("demo sessions %s: %v, want no error", h, err)
		}
		for _, want := range []string{"usage: demo sessions COMMAND [flags]", "destroy-all", "-store", "env DEMO_STORE", "-dir", "-redis-url", "-dsn", "-namespace", "-json", "-yes"} {
			if !strings.Contains(log, want) {
				t.Errorf("demo sessions %s does not document %s:\n%s", h, want, log)
			}
		}
		for _, flag := range []string{"-addr", "-catalog", "-dev", "-shutdown-timeout"} {
			if regexp.MustCompile(`(?m)^\s*` + flag + `\b`).MatchString(log) {
				t.Errorf("demo sessions %s lists %s, a flag of serve:\n%s", h, flag, log)
			}
		}
	}
	for _, flag := range []string{"-addr", "-catalog", "-dev", "-shutdown-timeout"} {
		_, _, err := cli(t, nil, "sessions", "list", flag, "x")
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "flag provided but not defined: "+flag) {
			t.Errorf("demo sessions list %s x: %v, want a usage error", flag, err)
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
	c, err := parseServe(nil, &stderr, getenv)
	if err != nil {
		t.Fatal(err)
	}
	want := app.Config{Addr: "127.0.0.1:9999", Store: "postgres", Dir: "/tmp/s", RedisURL: "redis://127.0.0.1:7000/2",
		DSN: "postgres://x@127.0.0.1/y", Namespace: "ns-env", Catalog: "/tmp/c.db", Dev: true, ShutdownTimeout: 3 * time.Second}
	if !configEqual(*c, want) {
		t.Errorf("from the environment: %+v, want %+v", *c, want)
	}

	c, err = parseServe([]string{"-store", "memory", "-addr", ":1", "-dev=false", "-shutdown-timeout", "1m"}, &stderr, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Store != "memory" || c.Addr != ":1" || c.Dev || c.ShutdownTimeout != time.Minute || c.Namespace != "ns-env" {
		t.Errorf("flags over the environment: %+v", *c)
	}

	c, out, rest, err := parseSessions([]string{"show", "-store", "file", "-json", "REF", "-dir", "/tmp/d"}, &stderr, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Store != "file" || c.Dir != "/tmp/d" || c.Namespace != "ns-env" || !out.JSON || out.Yes {
		t.Errorf("sessions flags over the environment: %+v, %+v", *c, *out)
	}
	if len(rest) != 2 || rest[0] != "show" || rest[1] != "REF" {
		t.Errorf("positional arguments around flags: %q", rest)
	}
	// A session reference is base64url: one in 64 begins with "-". The
	// argument of show, destroy and destroy-tag is taken literally unless it
	// is one of the flags.
	for _, args := range [][]string{
		{"show", "-Z7z9Oy25AxY-BI6pY2n-g", "-store", "file", "-dir", "/tmp/d"},
		{"-store", "file", "show", "-Z7z9Oy25AxY-BI6pY2n-g", "-json", "-dir", "/tmp/d"},
		{"show", "-json", "-Z7z9Oy25AxY-BI6pY2n-g", "-store", "file", "-dir", "/tmp/d"},
		{"show", "-json", "--", "-Z7z9Oy25AxY-BI6pY2n-g"},
		{"destroy", "-Z7z9Oy25AxY-BI6pY2n-g"},
		{"destroy-tag", "-tag"},
	} {
		_, _, rest, err := parseSessions(args, &stderr, getenv)
		if err != nil || len(rest) != 2 || rest[1] != args[slices.IndexFunc(args, func(a string) bool { return a == "-Z7z9Oy25AxY-BI6pY2n-g" || a == "-tag" })] {
			t.Errorf("parseSessions(%q) = %q, %v; want the argument beginning with - taken as is", args, rest, err)
		}
	}
	if _, _, _, err := parseSessions([]string{"list", "-jsn"}, &stderr, getenv); err == nil || !strings.Contains(err.Error(), "flag provided but not defined: -jsn") {
		t.Errorf("a mistyped flag after a command without arguments: %v", err)
	}

	c, err = parseServe(nil, &stderr, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	def := app.Config{Addr: ":8080", Store: "file", Dir: "var/sessions", RedisURL: "redis://127.0.0.1:6379/0",
		Namespace: "fxsession-demo", Catalog: "var/catalog.db", ShutdownTimeout: 10 * time.Second}
	if !configEqual(*c, def) {
		t.Errorf("defaults: %+v, want %+v", *c, def)
	}
	if _, err := parseServe([]string{"-h"}, &stderr, getenv); !errors.Is(err, flag.ErrHelp) {
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
		{nil, nil, 2, "", "usage:\n  demo serve [flags]\n"},
		{[]string{"frobnicate"}, nil, 2, "", `demo: unknown command "frobnicate"`},
		{[]string{"sessions", "show"}, s.environ(), 2, "", "show takes a session reference or ID"},
		{[]string{"serve", "-store", "nope"}, nil, 2, "", `unknown -store "nope"`},
		{[]string{"serve", "-h"}, nil, 0, "", "-shutdown-timeout"},
		{[]string{"-h"}, nil, 0, "demo sessions list", ""},
		{[]string{"sessions", "list"}, s.environ(), 1, "", "demo: no session store at " + s.dir + ": the folder does not exist"},
		{[]string{"sessions", "show", strings.Repeat("A", session.RefLength)}, s.environ(), 1, "", "demo: no session store at " + s.dir},
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

// runDemo runs the built demo binary in dir with no input and returns its exit
// status, stdout and stderr.
func runDemo(t *testing.T, dir string, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, buildDemo(t), args...)
	cmd.Dir = dir
	cmd.Env = cleanEnv(env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("demo %q: %v", args, err)
	}
	return code, o.String(), e.String()
}

// TestSessionsCreateNothing: the sessions commands administer an existing store:
// run where there is none, they fail naming the path they looked at, and create
// neither a store nor a catalog.
func TestSessionsCreateNothing(t *testing.T) {
	dir := t.TempDir()
	ref := strings.Repeat("A", session.RefLength)
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"sessions", "list"}, 1, "demo: no session store at var/sessions: the folder does not exist"},
		{[]string{"sessions", "show", ref}, 1, "demo: no session store at var/sessions: the folder does not exist"},
		{[]string{"sessions", "list", "-json", "-dir", "elsewhere"}, 1, "demo: no session store at elsewhere: the folder does not exist"},
		{[]string{"sessions", "list", "-store", "sqlite", "-dsn", "sessions.db"}, 1, "demo: no session store at sessions.db: the file does not exist"},
		{[]string{"sessions", "show", ref, "-store", "sqlite", "-dsn", "var/sessions.db"}, 1, "demo: no session store at var/sessions.db: the file does not exist"},
		{[]string{"sessions", "gc"}, 1, "demo: no session store at var/sessions"},
		{[]string{"sessions", "destroy-all", "-yes"}, 1, "demo: no session store at var/sessions"},
		{[]string{"sessions", "list", "-store", "memory"}, 2, "demo sessions: -store memory keeps its sessions inside the serving process"},
	} {
		code, stdout, stderr := runDemo(t, dir, nil, tc.args...)
		if code != tc.code || stdout != "" || !strings.HasPrefix(stderr, tc.stderr) {
			t.Errorf("demo %q: exit %d, want %d; stdout %q; stderr %q, want %q...", tc.args, code, tc.code, stdout, stderr, tc.stderr)
		}
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			t.Fatalf("demo %q created %v", tc.args, entries)
		}
	}

	// Where the store exists, list reads it and creates no catalog.
	store, err := filestore.Open(filestore.Options{Dir: filepath.Join(dir, "var", "sessions"), Namespace: "fxsession-demo"})
	if err != nil {
		t.Fatal(err)
	}
	store.Close()
	if code, stdout, stderr := runDemo(t, dir, nil, "sessions", "list"); code != 0 || !strings.HasSuffix(stdout, "0 sessions\n") || stderr != "" {
		t.Errorf("list on an empty store: exit %d, %q, %q", code, stdout, stderr)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "var")); len(entries) != 1 {
		t.Errorf("list on an existing store left %v in var/, want only sessions", entries)
	}
}

// slogLine is a line of the demo's log (slog's text format) or its error.
var slogLine = regexp.MustCompile(`^(time=\S+ level=(DEBUG|INFO|WARN|ERROR) msg=.*|demo: .*)$`)

// TestRedisLogsThroughSlog: go-redis's own log lines (here: the failed dial of
// an unreachable Redis) come out as the demo's slog lines, not in go-redis's
// format before the error.
func TestRedisLogsThroughSlog(t *testing.T) {
	dir := t.TempDir()
	url := "redis://127.0.0.1:1/0"
	for _, args := range [][]string{
		{"serve", "-addr", "127.0.0.1:0", "-store", "redis", "-redis-url", url, "-catalog", filepath.Join(dir, "c.db")},
		{"sessions", "list", "-store", "redis", "-redis-url", url},
	} {
		code, _, stderr := runDemo(t, dir, nil, args...)
		if code != 1 {
			t.Errorf("demo %q: exit %d, want 1:\n%s", args[:2], code, stderr)
		}
		lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
		for _, l := range lines {
			if !slogLine.MatchString(l) {
				t.Errorf("demo %q: a stray line on stderr: %q", args[:2], l)
			}
		}
		if last := lines[len(lines)-1]; !strings.HasPrefix(last, "demo: opening the redis session store: ping Redis at 127.0.0.1:1: ") {
			t.Errorf("demo %q: the error %q", args[:2], last)
		}
		if !strings.Contains(stderr, "component=go-redis") {
			t.Errorf("demo %q: go-redis's report of the failed dial is not among the logs:\n%s", args[:2], stderr)
		}
	}
}
