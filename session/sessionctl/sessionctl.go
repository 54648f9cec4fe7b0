// Package sessionctl is the session administration any application can mount in
// its own command line: list, show, destroy one, destroy by tag, destroy all and
// collect garbage (Neos Flow's flow:session:* commands). The demo's
// "demo sessions ..." commands are built from it.
//
// Sessions are named by their reference (session.Metadata.Ref: the first 22
// characters of the session ID, which key its record; the store keeps only a
// hash of the rest, the secret) or by the ID itself; "list" prints references.
// A reference lets an administrator show or destroy a session, never use it.
// Times are printed in RFC 3339 with their zone; list and show print JSON with
// Output.JSON (the -json flag of Output.Flags). show decodes the stored values
// whose Go type the program declares (Output.Decoders) and prints the others'
// msgpack in hex. destroy-all asks first (Output.Confirm, TerminalPrompt) or
// needs Output.Yes (-yes).
package sessionctl

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fxsession/fxsession/session"
)

// ErrUsage is matched by the errors of a command line Run does not accept (an
// unknown command, a missing argument, destroy-all without a confirmation). The
// error's message says what is wrong, without a prefix; show Usage with it.
var ErrUsage = errors.New("sessionctl: usage error")

// usageError is a mistake in the command line: its text is the message alone.
type usageError string

func (e usageError) Error() string        { return string(e) }
func (e usageError) Is(target error) bool { return target == ErrUsage }

func usagef(format string, args ...any) error { return usageError(fmt.Sprintf(format, args...)) }

// ErrNotConfirmed: the person asked by destroy-all said no; nothing was destroyed.
var ErrNotConfirmed = errors.New("not confirmed: nothing was destroyed")

// Usage lists the commands.
const Usage = `commands:
  list              list the active sessions (ref, created, last activity, tags, size)
  show REF|ID       show one session's metadata and stored values
  destroy REF|ID    destroy one session
  destroy-tag TAG   destroy every session carrying TAG
  destroy-all       destroy every session (asks first on a terminal, otherwise needs -yes)
  gc                remove expired sessions now`

// Output is how the commands run and where they write: Out gets the results,
// Progress (optional) gets progress lines on long runs and questions.
type Output struct {
	Out      io.Writer
	Progress io.Writer
	// Every is how many sessions pass between progress lines (default 1000).
	Every int
	// Interval also writes a progress line when this long passed since the last
	// one (default 1 s; negative: only every Every sessions).
	Interval time.Duration

	// JSON makes list and show print JSON for scripts: list an array of
	// sessions, show one object.
	JSON bool
	// Decoders decode the stored values whose Go types the program knows (see
	// PutValue and Object); show prints the other values' msgpack in hex.
	// Flash messages are always decoded.
	Decoders []Decoder

	// Yes lets destroy-all run without asking.
	Yes bool
	// Confirm asks before destroy-all (see TerminalPrompt). Without it, and
	// without Yes, destroy-all refuses with an error matching ErrUsage.
	Confirm Confirm
}

// Flags registers -json (Output.JSON) and -yes (Output.Yes) on fs.
func (o *Output) Flags(fs *flag.FlagSet) {
	fs.BoolVar(&o.JSON, "json", o.JSON, "list and show print JSON")
	fs.BoolVar(&o.Yes, "yes", o.Yes, "destroy-all destroys without asking")
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

// Operands is how many arguments the command takes after its name (0 for an
// unknown command). A command line parser uses it to take those arguments
// literally: a session reference is base64url and may begin with "-", as a
// tag may.
func Operands(command string) int { return arity[command].n }

// Check reports whether args is a command Run accepts, without touching any
// store: an error matching ErrUsage says what is wrong. A program calls it
// before it opens the store for Run.
func Check(args []string) error {
	if len(args) == 0 {
		return usagef("no command")
	}
	a, ok := arity[args[0]]
	if !ok {
		return usagef("unknown command %q", args[0])
	}
	if len(args)-1 != a.n {
		return usagef("%s takes %s", args[0], a.what)
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
		ok, err := destroy(ctx, m, rest[0], "destroyed by an administrator")
		if err != nil {
			return err
		}
		if !ok {
			return notFound(rest[0])
		}
		fmt.Fprintln(out.Out, "destroyed 1 session")
		return nil
	case "destroy-tag":
		n, err := destroyTag(ctx, m, rest[0], "destroyed by tag by an administrator")
		if err != nil {
			return err
		}
		fmt.Fprintf(out.Out, "destroyed %d %s tagged %s\n", n, plural(n), rest[0])
		return nil
	case "destroy-all":
		return DestroyAll(ctx, m, out)
	case "gc":
		total := 0
		for {
			n, err := collect(ctx, m)
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
	return usagef("unknown command %q", cmd)
}

// DestroyAll destroys every session, one by one with progress lines, after
// asking (Output.Confirm) unless Output.Yes. Sessions started meanwhile are
// destroyed with them. Expired sessions, which no read sees any more, are left
// to the collector (gc).
func DestroyAll(ctx context.Context, m *session.Manager, out Output) error {
	if out.Out == nil {
		out.Out = io.Discard
	}
	all, err := refs(ctx, m, out.progress("found"))
	if err != nil {
		return err
	}
	if len(all) == 0 {
		fmt.Fprintln(out.Out, "destroyed 0 sessions")
		return nil
	}
	if !out.Yes {
		if out.Confirm == nil {
			return usagef("destroy-all would destroy %d %s: confirm on a terminal or pass -yes", len(all), plural(len(all)))
		}
		ok, err := out.Confirm(ctx, fmt.Sprintf("Destroy all %d %s?", len(all), plural(len(all))))
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotConfirmed
		}
	}
	p := out.progress("destroyed")
	n := 0
	for _, h := range all {
		ok, err := destroy(ctx, m, h, "destroyed by an administrator (destroy-all)")
		if err != nil {
			return fmt.Errorf("after destroying %d %s: %w", n, plural(n), err)
		}
		if ok {
			n++
			p.add(1)
		}
	}
	rest, err := destroyRest(ctx, m)
	if err != nil {
		return fmt.Errorf("after destroying %d %s: %w", n, plural(n), err)
	}
	n += rest
	fmt.Fprintf(out.Out, "destroyed %d %s\n", n, plural(n))
	return nil
}

func plural(n int) string {
	if n == 1 {
		return "session"
	}
	return "sessions"
}

// stamp formats a time in RFC 3339 with its zone (the local one).
func stamp(t time.Time) string { return t.Local().Format(time.RFC3339) }

// jsonSession is a session in list's and show's JSON.
type jsonSession struct {
	Ref             string     `json:"ref"`
	Created         string     `json:"created"`
	LastUsed        string     `json:"last_used"`
	Expires         *string    `json:"expires"` // null: never
	LifetimeSeconds int64      `json:"lifetime_seconds"`
	Tags            []string   `json:"tags"`
	Device          string     `json:"device"`
	Address         string     `json:"address,omitempty"`
	Size            int        `json:"size"`
	Values          *[]decoded `json:"values,omitempty"`
}

func toJSON(s sessionInfo) jsonSession {
	j := jsonSession{
		Ref: s.Ref, Created: stamp(s.Created), LastUsed: stamp(s.LastUsed),
		LifetimeSeconds: int64(s.Lifetime / time.Second), Tags: s.Tags, Device: s.Device, Address: s.Address, Size: s.Size,
	}
	if j.Tags == nil {
		j.Tags = []string{}
	}
	if !s.Expires.IsZero() {
		e := stamp(s.Expires)
		j.Expires = &e
	}
	return j
}

// List prints a table of the active sessions (with Output.JSON, a JSON array,
// one session a line).
func List(ctx context.Context, m *session.Manager, out Output) error {
	if out.Out == nil {
		out.Out = io.Discard
	}
	p := out.progress("listed")
	if out.JSON {
		return listJSON(ctx, m, out.Out, p)
	}
	tw := tabwriter.NewWriter(out.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REF\tCREATED\tLAST ACTIVITY\tTAGS\tSIZE")
	n := 0
	for s, err := range allSessions(ctx, m) {
		if err != nil {
			tw.Flush()
			return err
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Ref, stamp(s.Created), stamp(s.LastUsed), strings.Join(s.Tags, ","), bytes(s.Size))
		n++
		p.add(1)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out.Out, "%d %s\n", n, plural(n))
	return nil
}

func listJSON(ctx context.Context, m *session.Manager, w io.Writer, p *progress) error {
	sep := "[\n"
	for s, err := range allSessions(ctx, m) {
		if err != nil {
			return err
		}
		b, err := json.Marshal(toJSON(s))
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "%s%s", sep, b); err != nil {
			return err
		}
		sep = ",\n"
		p.add(1)
	}
	if sep == "[\n" {
		_, err := io.WriteString(w, "[]\n")
		return err
	}
	_, err := io.WriteString(w, "\n]\n")
	return err
}

// Show prints one session's metadata and its stored values: decoded as JSON
// where Output.Decoders know the type, their msgpack in hex otherwise. It
// changes nothing (flash messages are peeked at, not consumed).
func Show(ctx context.Context, m *session.Manager, refOrID string, out Output) error {
	if out.Out == nil {
		out.Out = io.Discard
	}
	info, raw, err := inspect(ctx, m, refOrID)
	if err != nil {
		return err
	}
	values := make([]decoded, 0, len(raw))
	for _, v := range raw {
		values = append(values, decode(ctx, v, out.Decoders))
	}
	if out.JSON {
		j := toJSON(info)
		j.Values = &values
		enc := json.NewEncoder(out.Out)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		return enc.Encode(j)
	}
	w := out.Out
	fmt.Fprintf(w, "ref:            %s\n", info.Ref)
	fmt.Fprintf(w, "created:        %s\n", stamp(info.Created))
	fmt.Fprintf(w, "last activity:  %s (%s ago)\n", stamp(info.LastUsed), time.Since(info.LastUsed).Round(time.Second))
	if info.Expires.IsZero() {
		fmt.Fprintf(w, "expires:        never\n")
	} else {
		fmt.Fprintf(w, "expires:        %s\n", stamp(info.Expires))
	}
	if info.Lifetime == 0 {
		fmt.Fprintf(w, "cookie:         until the browser closes\n")
	} else {
		fmt.Fprintf(w, "cookie:         kept %s\n", info.Lifetime)
	}
	fmt.Fprintf(w, "tags:           %s\n", strings.Join(info.Tags, ", "))
	fmt.Fprintf(w, "device:         %s\n", info.Device)
	if info.Address != "" {
		fmt.Fprintf(w, "address:        %s\n", info.Address)
	}
	fmt.Fprintf(w, "size:           %s\n", bytes(info.Size))
	fmt.Fprintf(w, "values:\n")
	for _, v := range values {
		name := v.Key
		if v.Field != "" {
			name += " " + v.Field
		}
		fmt.Fprintf(w, "  %s  %s\n", name, bytes(v.Size))
		if v.known {
			b, err := marshalIndent(v.JSON, "    ")
			if err != nil {
				fmt.Fprintf(w, "    (not printable as JSON: %v)\n", err)
				continue
			}
			fmt.Fprintf(w, "    %s\n", b)
			continue
		}
		if v.Note != "" {
			fmt.Fprintf(w, "    (%s)\n", v.Note)
		}
		if v.Msgpack != "" {
			writeHex(w, v.Msgpack)
		}
	}
	return nil
}

// marshalIndent is JSON indented under prefix, with <, > and & left as they are.
func marshalIndent(v any, prefix string) ([]byte, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent(prefix, "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return []byte(strings.TrimSuffix(b.String(), "\n")), nil
}

// writeHex writes hex-encoded msgpack, 64 digits (32 bytes) a line.
func writeHex(w io.Writer, h string) {
	const width = 64
	label := "msgpack: "
	for len(h) > 0 {
		n := min(len(h), width)
		fmt.Fprintf(w, "    %s%s\n", label, h[:n])
		h = h[n:]
		label = "         "
	}
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
