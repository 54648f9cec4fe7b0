// Package sessionctl is the session administration any application can mount in
// its own command line: list, show, destroy one, destroy by tag, destroy all and
// collect garbage (Neos Flow's flow:session:* commands). The demo's
// "demo sessions ..." commands are built from it.
//
// Sessions are named by their reference (the public part of the session ID that
// names its record, [session.Metadata.Ref]; knowing it does not let anyone use
// the session) or by the ID itself; "list" prints references.
package sessionctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fxsession/fxsession/session"
)

// ErrUsage: the command or its arguments are wrong; the message says how.
var ErrUsage = errors.New("sessionctl: usage")

// Usage lists the commands.
const Usage = `commands:
  list              list the active sessions (reference, created, last activity, tags, size)
  show REF|ID       show one session's metadata and stored values
  destroy REF|ID    destroy one session
  destroy-tag TAG   destroy every session carrying TAG
  destroy-all       destroy every session
  gc                remove expired sessions now`

// Output is where the commands write: Out gets the results, Progress (optional)
// gets progress lines on long runs.
type Output struct {
	Out      io.Writer
	Progress io.Writer
	// Every is how many sessions pass between progress lines (default 1000).
	Every int
}

func (o Output) progress(n int, what string) {
	every := o.Every
	if every <= 0 {
		every = 1000
	}
	if o.Progress != nil && n > 0 && n%every == 0 {
		fmt.Fprintf(o.Progress, "... %d sessions %s\n", n, what)
	}
}

// arity is what each command takes after its name: the number of arguments
// and how the usage error describes them.
var arity = map[string]struct {
	n    int
	what string
}{
	"list":        {0, "no argument"},
	"show":        {1, "a session reference or ID"},
	"destroy":     {1, "a session reference or ID"},
	"destroy-tag": {1, "a tag"},
	"destroy-all": {0, "no argument"},
	"gc":          {0, "no argument"},
}

// Check reports whether args is a command Run accepts, without touching any
// store: an error matching ErrUsage says what is wrong. A program calls it
// before it opens the store for Run.
func Check(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command\n%s", ErrUsage, Usage)
	}
	a, ok := arity[args[0]]
	if !ok {
		return fmt.Errorf("%w: unknown command %q\n%s", ErrUsage, args[0], Usage)
	}
	if len(args)-1 != a.n {
		return fmt.Errorf("%w: %s takes %s\n%s", ErrUsage, args[0], a.what, Usage)
	}
	return nil
}

// Run executes the command in args (e.g. {"destroy-tag", "user:alice"}) on m.
func Run(ctx context.Context, m *session.Manager, args []string, out Output) error {
	if out.Out == nil {
		out.Out = io.Discard
	}
	if err := Check(args); err != nil {
		return err
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "list":
		return List(ctx, m, out)
	case "show":
		return Show(ctx, m, rest[0], out)
	case "destroy":
		ok, err := m.Destroy(ctx, rest[0], "destroyed by an administrator")
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("session %s: %w", rest[0], session.ErrNotFound)
		}
		fmt.Fprintln(out.Out, "destroyed 1 session")
		return nil
	case "destroy-tag":
		n, err := m.DestroyByTag(ctx, rest[0], "destroyed by tag by an administrator")
		if err != nil {
			return err
		}
		fmt.Fprintf(out.Out, "destroyed %d %s tagged %s\n", n, plural(n), rest[0])
		return nil
	case "destroy-all":
		n, err := m.DestroyAll(ctx, func(n int) {
			if out.Progress != nil {
				fmt.Fprintf(out.Progress, "... %d %s destroyed\n", n, plural(n))
			}
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(out.Out, "destroyed %d %s\n", n, plural(n))
		return nil
	case "gc":
		total := 0
		for {
			n, err := m.CollectGarbage(ctx)
			total += n
			if err != nil {
				return err
			}
			if n == 0 {
				break
			}
			if out.Progress != nil {
				fmt.Fprintf(out.Progress, "... %d expired sessions removed\n", total)
			}
		}
		fmt.Fprintf(out.Out, "removed %d expired %s\n", total, plural(total))
		return nil
	}
	return fmt.Errorf("%w: unknown command %q\n%s", ErrUsage, cmd, Usage)
}

func plural(n int) string {
	if n == 1 {
		return "session"
	}
	return "sessions"
}

const timeFormat = "2006-01-02 15:04:05"

// List prints a table of the active sessions.
func List(ctx context.Context, m *session.Manager, out Output) error {
	tw := tabwriter.NewWriter(out.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REF\tCREATED\tLAST ACTIVITY\tTAGS\tSIZE")
	n := 0
	for md, err := range m.All(ctx) {
		if err != nil {
			tw.Flush()
			return err
		}
		size, err := m.Size(ctx, md.Ref)
		if err != nil && !errors.Is(err, session.ErrNotFound) {
			tw.Flush()
			return err
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", md.Ref, md.Created.Local().Format(timeFormat),
			md.LastUsed.Local().Format(timeFormat), strings.Join(md.Tags, ","), bytes(size))
		n++
		out.progress(n, "listed")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out.Out, "%d %s\n", n, plural(n))
	return nil
}

// Show prints one session's metadata and its stored values' keys and sizes.
func Show(ctx context.Context, m *session.Manager, refOrID string, out Output) error {
	s, err := m.Session(ctx, refOrID)
	if err != nil {
		return err
	}
	md, err := s.Metadata(ctx)
	if err != nil {
		return err
	}
	w := out.Out
	fmt.Fprintf(w, "ref:            %s\n", md.Ref)
	fmt.Fprintf(w, "created:        %s\n", md.Created.Local().Format(timeFormat))
	fmt.Fprintf(w, "last activity:  %s (%s ago)\n", md.LastUsed.Local().Format(timeFormat), time.Since(md.LastUsed).Round(time.Second))
	if md.Expires.IsZero() {
		fmt.Fprintf(w, "expires:        never\n")
	} else {
		fmt.Fprintf(w, "expires:        %s\n", md.Expires.Local().Format(timeFormat))
	}
	fmt.Fprintf(w, "tags:           %s\n", strings.Join(md.Tags, ", "))
	entries, err := m.Entries(ctx, md.Ref)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "values:\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, e := range entries {
		fmt.Fprintf(tw, "  %s\t%s\n", e.Key, bytes(e.Size()))
	}
	return tw.Flush()
}

func bytes(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
