package sessionctl_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fxsession/fxsession/session"
	"github.com/fxsession/fxsession/session/sessionctl"
)

func newFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// TestDestroyAllAsks: destroy-all needs a confirmation, from a person (Confirm)
// or in advance (Yes); without either it refuses with a usage error, and a
// "no" destroys nothing.
func TestDestroyAllAsks(t *testing.T) {
	m := manager(t, session.Config{GCInterval: session.Never})
	for range 3 {
		newSession(t, m, 10)
	}

	_, _, err := run(t, m, 0, "destroy-all")
	if !errors.Is(err, sessionctl.ErrUsage) || !strings.Contains(err.Error(), "-yes") || !strings.Contains(err.Error(), "3 sessions") {
		t.Errorf("destroy-all without a confirmation: %v, want a usage error naming -yes and the count", err)
	}

	var asked []string
	no := func(_ context.Context, q string) (bool, error) { asked = append(asked, q); return false, nil }
	var o bytes.Buffer
	err = sessionctl.Run(t.Context(), m, []string{"destroy-all"}, sessionctl.Output{Out: &o, Confirm: no})
	if !errors.Is(err, sessionctl.ErrNotConfirmed) || o.Len() != 0 {
		t.Errorf("answered no: %v, output %q", err, o.String())
	}
	if len(asked) != 1 || asked[0] != "Destroy all 3 sessions?" {
		t.Errorf("questions asked: %q", asked)
	}
	boom := errors.New("boom")
	failing := func(context.Context, string) (bool, error) { return false, boom }
	if err := sessionctl.Run(t.Context(), m, []string{"destroy-all"}, sessionctl.Output{Confirm: failing}); !errors.Is(err, boom) {
		t.Errorf("a failing confirmation: %v", err)
	}
	if n := count(t, m); n != 3 {
		t.Fatalf("%d sessions left after refusals, want 3", n)
	}

	// A person at a terminal answers on its input.
	var prompt bytes.Buffer
	out := mustRunWith(t, m, sessionctl.Output{Confirm: sessionctl.Prompt(strings.NewReader("y\n"), &prompt)}, "destroy-all")
	if out != "destroyed 3 sessions\n" || prompt.String() != "Destroy all 3 sessions? [y/N] " {
		t.Errorf("destroy-all confirmed: output %q, prompt %q", out, prompt.String())
	}
	if n := count(t, m); n != 0 {
		t.Fatalf("%d sessions left", n)
	}
}

func TestPrompt(t *testing.T) {
	for in, want := range map[string]bool{
		"y\n": true, "Yes\n": true, " YES \r\n": true, "yes": true,
		"n\n": false, "\n": false, "": false, "yess\n": false, "sure\n": false,
	} {
		var w bytes.Buffer
		got, err := sessionctl.Prompt(strings.NewReader(in), &w)(t.Context(), "Go?")
		if err != nil || got != want {
			t.Errorf("answer %q: %v, %v; want %v", in, got, err, want)
		}
		if !strings.HasPrefix(w.String(), "Go? [y/N] ") {
			t.Errorf("prompt %q", w.String())
		}
	}

	// Interrupted while waiting for an answer: the context's error.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	ok, err := sessionctl.Prompt(r, io.Discard)(ctx, "Go?")
	if ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("interrupted: %v, %v", ok, err)
	}
	w.Close() // ends the read still waiting
}

// TestTerminalPrompt: only a terminal (a character device) is asked; a pipe or a
// file is not, so scripts need -yes.
func TestTerminalPrompt(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if sessionctl.TerminalPrompt(r, io.Discard) != nil {
		t.Error("a pipe counts as a terminal")
	}
	f, err := os.CreateTemp(t.TempDir(), "answers")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if sessionctl.TerminalPrompt(f, io.Discard) != nil {
		t.Error("a regular file counts as a terminal")
	}
	if sessionctl.TerminalPrompt(nil, io.Discard) != nil {
		t.Error("no input counts as a terminal")
	}
	// /dev/null is a character device, as a terminal is, but what a program
	// started without input reads: not asked.
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if sessionctl.TerminalPrompt(null, io.Discard) != nil {
		t.Error("the null device counts as a terminal")
	}
	// A terminal is asked, and its answer read.
	term, person := openPTY(t)
	var q bytes.Buffer
	confirm := sessionctl.TerminalPrompt(term, &q)
	if confirm == nil {
		t.Fatal("a terminal is not asked")
	}
	if _, err := person.Write([]byte("yes\n")); err != nil {
		t.Fatal(err)
	}
	if ok, err := confirm(t.Context(), "Go?"); !ok || err != nil || q.String() != "Go? [y/N] " {
		t.Errorf("answered yes on a terminal: %v, %v, prompt %q", ok, err, q.String())
	}
}

// TestDestroyAllProgress: destroy-all reports progress while it finds and while
// it destroys, every Every sessions or every Interval.
func TestDestroyAllProgress(t *testing.T) {
	m := manager(t, session.Config{GCInterval: session.Never})
	for range 25 {
		newSession(t, m, 10)
	}
	var o, p bytes.Buffer
	err := sessionctl.Run(t.Context(), m, []string{"destroy-all"},
		sessionctl.Output{Out: &o, Progress: &p, Every: 10, Interval: -1, Yes: true})
	if err != nil {
		t.Fatal(err)
	}
	want := "... 10 sessions found\n... 20 sessions found\n... 10 sessions destroyed\n... 20 sessions destroyed\n"
	if p.String() != want || o.String() != "destroyed 25 sessions\n" {
		t.Errorf("progress %q, output %q; want progress %q", p.String(), o.String(), want)
	}

	// With a short interval, a line whenever it passed.
	for range 5 {
		newSession(t, m, 10)
	}
	p.Reset()
	err = sessionctl.Run(t.Context(), m, []string{"destroy-all"},
		sessionctl.Output{Progress: &p, Every: 1000, Interval: time.Nanosecond, Yes: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(p.String(), " sessions destroyed\n"); n < 2 {
		t.Errorf("with a 1 ns interval, %d progress lines:\n%s", n, p.String())
	}
}

// TestDestroyAllRest: sessions started while destroy-all runs (after its
// listing, here while it asks) go too. Expired sessions, which no read sees any
// more (neither the listing nor a request), are not counted and are left to the
// collector: gc removes them afterwards.
func TestDestroyAllRest(t *testing.T) {
	clk := newClock()
	m := manager(t, session.Config{Now: clk.Now, GCInterval: session.Never, InactivityTimeout: time.Hour})
	expired, _ := newSession(t, m, 10)
	newSession(t, m, 10)
	clk.Add(2 * time.Hour)
	live, _ := newSession(t, m, 10)
	var late string
	var asked []string
	confirm := func(_ context.Context, q string) (bool, error) {
		asked = append(asked, q)
		late, _ = newSession(t, m, 10) // started after the listing
		return true, nil
	}
	if out := mustRunWith(t, m, sessionctl.Output{Confirm: confirm}, "destroy-all"); out != "destroyed 2 sessions\n" {
		t.Errorf("destroy-all = %q, want the live session and the one started meanwhile", out)
	}
	if len(asked) != 1 || asked[0] != "Destroy all 1 session?" {
		t.Errorf("questions asked: %q", asked)
	}
	for what, id := range map[string]string{"listed": live, "started meanwhile": late, "expired": expired} {
		if _, err := m.Session(t.Context(), id); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("the %s session after destroy-all: %v, want ErrNotFound", what, err)
		}
	}
	if out := mustRun(t, m, "gc"); out != "removed 2 expired sessions\n" {
		t.Errorf("gc after destroy-all = %q, want the two expired sessions", out)
	}
	if out := mustRun(t, m, "gc"); out != "removed 0 expired sessions\n" {
		t.Errorf("gc again = %q", out)
	}
}
