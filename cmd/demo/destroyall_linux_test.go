package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache/filestore"
	"github.com/fxsession/fxsession/cmd/demo/internal/app"
	"github.com/fxsession/fxsession/session"
)

// manySessions writes n sessions into the file store of s, as the shop would.
func manySessions(t *testing.T, s storeFlags, n int) {
	t.Helper()
	store, err := filestore.Open(filestore.Options{Dir: s.dir, Namespace: s.namespace})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	m, err := session.New(store, app.SessionConfig(&app.Config{}, slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		ctx, sess := m.NewContext(t.Context(), "")
		if err := sess.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := sess.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// destroyAllOnTerminal runs "demo sessions destroy-all" with a terminal as its
// input, answers the question with answer and returns the exit status, stdout
// and stderr.
func destroyAllOnTerminal(t *testing.T, s storeFlags, answer string) (int, string, string) {
	t.Helper()
	term, person := openPTY(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, buildDemo(t), s.args("destroy-all")...)
	cmd.Env = cleanEnv()
	cmd.Stdin = term
	var stdout bytes.Buffer
	stderr := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The answer is typed once the question is there, as a person would.
	for !strings.Contains(stderr.String(), "[y/N]") {
		if ctx.Err() != nil {
			t.Fatalf("no question asked:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := person.WriteString(answer + "\n"); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

// TestDestroyAllConfirmation: destroy-all asks on a terminal, needs -yes
// otherwise, and reports its progress on long runs.
func TestDestroyAllConfirmation(t *testing.T) {
	s := newStoreFlags(t)
	const n = 1100
	manySessions(t, s, n)
	count := func() string {
		t.Helper()
		out := mustCLI(t, nil, s.args("list")...)
		out = strings.TrimSuffix(out, "\n")
		return out[strings.LastIndex(out, "\n")+1:]
	}

	// No terminal and no -yes: refused, nothing destroyed.
	_, log, err := cli(t, nil, s.args("destroy-all")...)
	if !errors.Is(err, errUsage) || !strings.Contains(log, "\ndemo sessions: destroy-all would destroy 1100 sessions: confirm on a terminal or pass -yes\n") {
		t.Errorf("destroy-all without a terminal: %v\n%s", err, log)
	}
	// The binary started without input (the null device) is refused too.
	if code, _, stderr := runDemo(t, t.TempDir(), nil, s.args("destroy-all")...); code != 2 || !strings.Contains(stderr, "pass -yes") {
		t.Errorf("destroy-all with no input: exit %d, %q", code, stderr)
	}

	// A person at a terminal is asked and says no.
	code, stdout, stderr := destroyAllOnTerminal(t, s, "n")
	if code != 1 || stdout != "" || !strings.Contains(stderr, "Destroy all 1100 sessions? [y/N] ") || !strings.Contains(stderr, "demo: not confirmed: nothing was destroyed") {
		t.Errorf("answered no: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if got := count(); got != "1100 sessions" {
		t.Fatalf("after answering no: %s", got)
	}

	// ... and says yes: every session goes, with progress on stderr.
	code, stdout, stderr = destroyAllOnTerminal(t, s, "y")
	if code != 0 || stdout != "destroyed 1100 sessions\n" {
		t.Errorf("answered yes: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "... 1000 sessions found\n") || !strings.Contains(stderr, "... 1000 sessions destroyed\n") {
		t.Errorf("no progress on stderr:\n%s", stderr)
	}
	if got := count(); got != "0 sessions" {
		t.Errorf("after destroy-all: %s", got)
	}
}
