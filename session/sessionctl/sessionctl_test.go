package sessionctl_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fxsession/fxsession/session"
	"github.com/fxsession/fxsession/session/sessionctl"
	"github.com/fxsession/fxsession/session/sessiontest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a settable clock for session.Config.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newSession starts a session on m with the given tags and a value of size
// bytes under "payload", commits it and returns its ID and reference.
func newSession(t *testing.T, m *session.Manager, size int, tags ...string) (id, ref string) {
	t.Helper()
	ctx, s := m.NewContext(t.Context(), "")
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if size > 0 {
		if err := s.Put(ctx, "payload", strings.Repeat("x", size)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tag := range tags {
		if err := s.AddTag(ctx, tag); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	id, err := s.ID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	md, err := s.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if md.Ref != s.Ref() || md.Ref != id[:session.RefLength] {
		t.Fatalf("reference %q (Session.Ref %q) is not the start of the ID %q", md.Ref, s.Ref(), id)
	}
	return id, md.Ref
}

// run runs a command and returns its output, progress output and error.
func run(t *testing.T, m *session.Manager, every int, args ...string) (out, progress string, err error) {
	t.Helper()
	var o, p bytes.Buffer
	err = sessionctl.Run(t.Context(), m, args, sessionctl.Output{Out: &o, Progress: &p, Every: every})
	return o.String(), p.String(), err
}

// mustRunWith runs a command with out's settings (its writers are replaced)
// and requires success.
func mustRunWith(t *testing.T, m *session.Manager, out sessionctl.Output, args ...string) string {
	t.Helper()
	var o bytes.Buffer
	out.Out = &o
	if err := sessionctl.Run(t.Context(), m, args, out); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return o.String()
}

func mustRun(t *testing.T, m *session.Manager, args ...string) string {
	t.Helper()
	out, _, err := run(t, m, 0, args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return out
}

func count(t *testing.T, m *session.Manager) int {
	t.Helper()
	n := 0
	for _, err := range m.All(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

// manager is a manager on a fresh memory store whose logs are discarded.
func manager(t *testing.T, cfg session.Config) *session.Manager {
	t.Helper()
	cfg.Logger = slog.New(slog.DiscardHandler)
	return sessiontest.NewManager(t, cfg)
}

// refRE matches a session reference: 22 characters of base64url.
var refRE = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)

func TestList(t *testing.T) {
	clk := newClock()
	m := manager(t, session.Config{Now: clk.Now, GCInterval: session.Never})
	_, alice := newSession(t, m, 3000, "user:alice", "vip")
	clk.Add(90 * time.Second)
	_, anon := newSession(t, m, 0)

	out := mustRun(t, m, "list")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("list printed %d lines, want a header, 2 rows and a count:\n%s", len(lines), out)
	}
	header := strings.Fields(lines[0])
	if want := []string{"REF", "CREATED", "LAST", "ACTIVITY", "TAGS", "SIZE"}; !slices.Equal(header, want) {
		t.Fatalf("header = %q, want %q", lines[0], want)
	}
	// The columns are aligned: every header word starts where its column does.
	col := func(name string) int { return strings.Index(lines[0], name) }
	rows := map[string]string{}
	for _, l := range lines[1:3] {
		f := strings.Fields(l)
		if !refRE.MatchString(f[0]) {
			t.Fatalf("row %q does not start with a session reference", l)
		}
		rows[f[0]] = l
		for _, c := range []string{"CREATED", "LAST ACTIVITY", "SIZE"} {
			if i := col(c); i >= len(l) || l[i-1] != ' ' || l[i] == ' ' {
				t.Errorf("column %s is not aligned in row %q", c, l)
			}
		}
	}
	if lines[3] != "2 sessions" {
		t.Errorf("count line = %q", lines[3])
	}
	a, ok := rows[alice]
	if !ok {
		t.Fatalf("alice's session %s is not listed:\n%s", alice, out)
	}
	local := func(tm time.Time) string { return tm.Local().Format(time.RFC3339) }
	start := clk.Now().Add(-90 * time.Second)
	if got := a[col("CREATED"):col("LAST ACTIVITY")]; strings.TrimSpace(got) != local(start) {
		t.Errorf("created = %q, want %q", got, local(start))
	}
	if got := a[col("LAST ACTIVITY"):col("TAGS")]; strings.TrimSpace(got) != local(start) {
		t.Errorf("last activity = %q, want %q", got, local(start))
	}
	if got := strings.TrimSpace(a[col("TAGS"):col("SIZE")]); got != "user:alice,vip" && got != "vip,user:alice" {
		t.Errorf("tags = %q", got)
	}
	if got := strings.TrimSpace(a[col("SIZE"):]); !regexp.MustCompile(`^(2\.9|3\.0) KiB$`).MatchString(got) {
		t.Errorf("size = %q, want about 2.9 KiB", got)
	}
	b := rows[anon]
	if got := strings.TrimSpace(b[col("CREATED"):col("LAST ACTIVITY")]); got != local(clk.Now()) {
		t.Errorf("second session created = %q, want %q", got, local(clk.Now()))
	}
	if got := strings.TrimSpace(b[col("TAGS"):col("SIZE")]); got != "" {
		t.Errorf("untagged session shows tags %q", got)
	}
	if got := strings.TrimSpace(b[col("SIZE"):]); !regexp.MustCompile(`^\d+ B$`).MatchString(got) {
		t.Errorf("empty session size = %q", got)
	}
}

func TestListEmpty(t *testing.T) {
	m := manager(t, session.Config{GCInterval: session.Never})
	out := mustRun(t, m, "list")
	if want := "REF  CREATED  LAST ACTIVITY  TAGS  SIZE\n0 sessions\n"; out != want {
		t.Fatalf("empty list = %q, want %q", out, want)
	}
}

func TestListProgress(t *testing.T) {
	m := manager(t, session.Config{GCInterval: session.Never})
	for range 25 {
		newSession(t, m, 10)
	}
	out, progress, err := run(t, m, 10, "list")
	if err != nil {
		t.Fatal(err)
	}
	if want := "... 10 sessions listed\n... 20 sessions listed\n"; progress != want {
		t.Errorf("progress = %q, want %q", progress, want)
	}
	if !strings.HasSuffix(out, "\n25 sessions\n") || strings.Contains(out, "...") {
		t.Errorf("output = %q", out)
	}
	// Without a progress writer there is no progress and no failure.
	var o bytes.Buffer
	if err := sessionctl.Run(t.Context(), m, []string{"list"}, sessionctl.Output{Out: &o, Every: 1}); err != nil {
		t.Fatal(err)
	}
	// The default is one line per 1000 sessions: none here.
	_, progress, err = run(t, m, 0, "list")
	if err != nil || progress != "" {
		t.Errorf("default progress = %q, %v", progress, err)
	}
}

func TestShow(t *testing.T) {
	clk := newClock()
	m := manager(t, session.Config{Now: clk.Now, GCInterval: session.Never, InactivityTimeout: time.Hour})
	id, ref := newSession(t, m, 100, "user:bob")
	for _, name := range []string{id, ref} {
		out := mustRun(t, m, "show", name)
		for _, want := range []string{
			"ref:            " + ref + "\n",
			"created:        " + clk.Now().Local().Format(time.RFC3339) + "\n",
			"expires:        " + clk.Now().Add(time.Hour).Local().Format(time.RFC3339) + "\n",
			"tags:           user:bob\n",
			"values:\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("show %s lacks %q:\n%s", name[:8], want, out)
			}
		}
		if !regexp.MustCompile(`(?m)^  \S*payload\s+1\d\d B$`).MatchString(out) {
			t.Errorf("show lacks the payload value and its size:\n%s", out)
		}
		if strings.Contains(out, id[session.RefLength:]) {
			t.Error("show printed the session ID's secret part")
		}
	}
	never := manager(t, session.Config{GCInterval: session.Never, InactivityTimeout: session.Never})
	_, h := newSession(t, never, 0)
	if out := mustRun(t, never, "show", h); !strings.Contains(out, "expires:        never\n") {
		t.Errorf("a session that never expires:\n%s", out)
	}

	// A well-formed reference of no session, the old form of a name (a hex
	// hash), anything else, and the ID of a live session with another verifier
	// (the reference alone would name it: an ID must be the current one).
	forged := ref + strings.Repeat("A", len(id)-session.RefLength)
	for _, name := range []string{strings.Repeat("A", session.RefLength), strings.Repeat("0", 64), "not-a-session", forged} {
		_, _, err := run(t, m, 0, "show", name)
		if !errors.Is(err, session.ErrNotFound) {
			t.Errorf("show %s: %v, want ErrNotFound", name, err)
		}
		// Said as a person understands it, without the store's key or wording.
		if want := "no session " + name + ": it never existed, was destroyed or has expired"; err == nil || err.Error() != want {
			t.Errorf("show %s: %v, want %q", name, err, want)
		}
	}
}

func TestDestroy(t *testing.T) {
	m := manager(t, session.Config{GCInterval: session.Never})
	id, _ := newSession(t, m, 10)
	_, ref := newSession(t, m, 10)
	_, keep := newSession(t, m, 10)
	for _, name := range []string{id, ref} {
		if out := mustRun(t, m, "destroy", name); out != "destroyed 1 session\n" {
			t.Errorf("destroy = %q", out)
		}
	}
	if _, _, err := run(t, m, 0, "destroy", ref); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("destroying a destroyed session: %v, want ErrNotFound", err)
	}
	if _, _, err := run(t, m, 0, "destroy", "garbage"); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("destroy garbage: %v, want ErrNotFound", err)
	}
	if n := count(t, m); n != 1 {
		t.Fatalf("%d sessions left, want 1", n)
	}
	if _, err := m.Session(t.Context(), keep); err != nil {
		t.Errorf("the other session: %v", err)
	}
}

func TestDestroyTagAndAll(t *testing.T) {
	m := manager(t, session.Config{GCInterval: session.Never})
	newSession(t, m, 10, "user:alice")
	newSession(t, m, 10, "user:alice", "beta")
	_, bob := newSession(t, m, 10, "user:bob")
	newSession(t, m, 10)
	if out := mustRun(t, m, "destroy-tag", "user:alice"); out != "destroyed 2 sessions tagged user:alice\n" {
		t.Errorf("destroy-tag = %q", out)
	}
	if out := mustRun(t, m, "destroy-tag", "user:alice"); out != "destroyed 0 sessions tagged user:alice\n" {
		t.Errorf("destroy-tag again = %q", out)
	}
	if out := mustRun(t, m, "destroy-tag", "user:bob"); out != "destroyed 1 session tagged user:bob\n" {
		t.Errorf("destroy-tag bob = %q", out)
	}
	if _, err := m.Session(t.Context(), bob); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("bob's session after destroy-tag: %v", err)
	}
	if _, _, err := run(t, m, 0, "destroy-tag", "bad tag\n"); err == nil || errors.Is(err, sessionctl.ErrUsage) {
		t.Errorf("destroy-tag with an invalid tag: %v, want a store error", err)
	}
	if n := count(t, m); n != 1 {
		t.Fatalf("%d sessions left, want 1", n)
	}
	newSession(t, m, 10)
	if out := mustRunWith(t, m, sessionctl.Output{Yes: true}, "destroy-all"); out != "destroyed 2 sessions\n" {
		t.Errorf("destroy-all = %q", out)
	}
	if n := count(t, m); n != 0 {
		t.Fatalf("%d sessions after destroy-all", n)
	}
	if out := mustRun(t, m, "destroy-all"); out != "destroyed 0 sessions\n" { // nothing to confirm
		t.Errorf("destroy-all on nothing = %q", out)
	}
}

func TestGC(t *testing.T) {
	clk := newClock()
	m := manager(t, session.Config{
		Now: clk.Now, GCInterval: session.Never, InactivityTimeout: time.Hour, GCMaxPerRun: 4,
	})
	for range 10 {
		newSession(t, m, 10)
	}
	clk.Add(50 * time.Minute)
	_, fresh := newSession(t, m, 10)
	if out := mustRun(t, m, "gc"); out != "removed 0 expired sessions\n" {
		t.Errorf("gc with nothing expired = %q", out)
	}
	clk.Add(20 * time.Minute) // the first ten are 70 minutes old, the last 20
	out, progress, err := run(t, m, 0, "gc")
	if err != nil {
		t.Fatal(err)
	}
	if out != "removed 10 expired sessions\n" {
		t.Errorf("gc = %q", out)
	}
	// Ten sessions at four per run: progress after each batch.
	if want := "... 4 expired sessions removed\n... 8 expired sessions removed\n... 10 expired sessions removed\n"; progress != want {
		t.Errorf("gc progress = %q, want %q", progress, want)
	}
	if n := count(t, m); n != 1 {
		t.Fatalf("%d sessions left, want 1", n)
	}
	if _, err := m.Session(t.Context(), fresh); err != nil {
		t.Errorf("the fresh session: %v", err)
	}
}

func TestUsage(t *testing.T) {
	m := manager(t, session.Config{GCInterval: session.Never})
	for _, args := range [][]string{
		nil,
		{"lst"},
		{"list", "extra"},
		{"show"},
		{"show", "a", "b"},
		{"destroy"},
		{"destroy-tag"},
		{"destroy-all", "now"},
		{"gc", "-f"},
	} {
		_, _, err := run(t, m, 0, args...)
		if !errors.Is(err, sessionctl.ErrUsage) {
			t.Errorf("%q: %v, want ErrUsage", args, err)
			continue
		}
		// The message says what is wrong, once, without a prefix: the program
		// prints it after its own name and then the commands (Usage).
		if msg := err.Error(); strings.Contains(msg, "usage") || strings.Contains(msg, "sessionctl") || strings.Contains(msg, "\n") {
			t.Errorf("%q: usage error %q stutters or spans lines", args, msg)
		}
	}
	for args, want := range map[string]string{
		"":     "no command",
		"show": "show takes a session reference or ID",
		"lst":  `unknown command "lst"`,
		"gc x": "gc takes no argument",
	} {
		if _, _, err := run(t, m, 0, strings.Fields(args)...); err == nil || err.Error() != want {
			t.Errorf("%q: error %v, want %q", args, err, want)
		}
	}
}

func TestCheck(t *testing.T) {
	for _, args := range [][]string{{"list"}, {"show", "h"}, {"destroy", "h"}, {"destroy-tag", "t"}, {"destroy-all"}, {"gc"}} {
		if err := sessionctl.Check(args); err != nil {
			t.Errorf("Check(%q) = %v", args, err)
		}
	}
	for _, args := range [][]string{nil, {}, {"lst"}, {"list", "x"}, {"show"}, {"destroy", "a", "b"}, {"destroy-tag"}, {"gc", "now"}} {
		if err := sessionctl.Check(args); !errors.Is(err, sessionctl.ErrUsage) {
			t.Errorf("Check(%q) = %v, want ErrUsage", args, err)
		}
	}
}

func TestNilOutput(t *testing.T) {
	m := manager(t, session.Config{GCInterval: session.Never})
	_, ref := newSession(t, m, 1)
	for _, args := range [][]string{{"list"}, {"show", ref}, {"gc"}, {"destroy-all"}} {
		if err := sessionctl.Run(t.Context(), m, args, sessionctl.Output{Yes: true}); err != nil {
			t.Errorf("%v with no output: %v", args, err)
		}
	}
}

func TestCanceled(t *testing.T) {
	m := manager(t, session.Config{GCInterval: session.Never})
	for range 3 {
		newSession(t, m, 1)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, args := range [][]string{{"list"}, {"gc"}} {
		err := sessionctl.Run(ctx, m, args, sessionctl.Output{Out: &bytes.Buffer{}})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%v on a canceled context: %v, want context.Canceled", args, err)
		}
	}
}
