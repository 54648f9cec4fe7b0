// Command demo is the fxsession demo shop: a small web shop whose basket is a
// session-scoped object, and the admin commands for its sessions.
//
//	demo serve [flags]                  serve the shop (default -addr :8080, -store file)
//	demo sessions list [flags]          list the sessions (-json for scripts)
//	demo sessions show REF|ID           show one session's metadata and values
//	demo sessions destroy REF|ID        destroy one session
//	demo sessions destroy-tag TAG       destroy every session with the tag
//	demo sessions destroy-all           destroy every session (asks, or -yes)
//	demo sessions gc                    collect expired sessions now
//
// Flags of serve (each also an environment variable): -addr (DEMO_ADDR), -store
// memory|file|redis|sqlite|postgres (DEMO_STORE), -dir (DEMO_DIR), -redis-url
// (DEMO_REDIS_URL), -redis-min-replicas (DEMO_REDIS_MIN_REPLICAS: the Redis
// store's durability mode), -dsn (DEMO_DSN), -namespace (DEMO_NAMESPACE),
// -catalog (DEMO_CATALOG), -dev (DEMO_DEV: development mode and debug logs,
// among them every session's lifecycle events), -shutdown-timeout
// (DEMO_SHUTDOWN_TIMEOUT), -max-sessions-per-user (DEMO_MAX_SESSIONS_PER_USER),
// -otel (DEMO_OTEL: OpenTelemetry metrics at /metrics, traces in the debug log).
// The sessions commands take the store flags (-store, -dir, -redis-url,
// -redis-min-replicas, -dsn, -namespace) and -json, -yes; they never create a
// store.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
	"go.uber.org/dig"
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"

	"github.com/fxsession/fxsession/cmd/demo/internal/app"
	"github.com/fxsession/fxsession/session"
	"github.com/fxsession/fxsession/session/sessionctl"
)

func main() {
	// go-redis logs through a logger of its own, one for the whole process:
	// redis.SetLogger is global, so it is set here, once, and not in run (which
	// the tests call many times). Its lines become slog warnings on stderr, in
	// the format of the demo's other logs.
	redis.SetLogger(redisLogger{slog.New(slog.NewTextHandler(os.Stderr, nil))})
	err := run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	os.Exit(report(os.Stderr, err))
}

// redisLogger sends go-redis's log lines to a slog.Logger.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)), "component", "go-redis")
}

// errUsage is matched by the errors of a wrong command line (exit status 2).
var errUsage = errors.New("usage error")

// usageError is a wrong command line: report prints the command's name, what is
// wrong (once, without prefixes) and the command's usage.
type usageError struct {
	cmd   string // "demo", "demo serve", "demo sessions"
	msg   string // what is wrong; "" when no command was given
	usage string
}

func (e *usageError) Error() string {
	if e.msg == "" {
		return "no command"
	}
	return e.msg
}

func (e *usageError) Is(target error) bool { return target == errUsage }

// report prints err for a person and returns the exit status: 0 without an
// error, 2 for a wrong command line (with the usage), 1 otherwise.
func report(w io.Writer, err error) int {
	if err == nil {
		return 0
	}
	if u, ok := errors.AsType[*usageError](err); ok {
		if u.msg != "" {
			fmt.Fprintf(w, "%s: %s\n", u.cmd, u.msg)
		}
		fmt.Fprint(w, u.usage)
		return 2
	}
	fmt.Fprintln(w, "demo:", err)
	return 1
}

const usage = `usage:
  demo serve [flags]
  demo sessions list|show REF|destroy REF|destroy-tag TAG|destroy-all|gc [flags]
"demo serve" serves the shop on http://localhost:8080; "demo sessions" administers its sessions.
Run "demo serve -h" or "demo sessions -h" for their flags.
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return &usageError{cmd: "demo", usage: usage}
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr, getenv)
	case "sessions":
		return sessions(ctx, args[1:], stdin, stdout, stderr, getenv)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return &usageError{cmd: "demo", msg: fmt.Sprintf("unknown command %q", args[0]), usage: usage}
}

// command is a subcommand's flag set and usage text.
type command struct {
	name string // "demo serve"
	head string // the usage text before the flags
	fs   *flag.FlagSet
	// operands, when set, says how many arguments the subcommand named by
	// the first positional argument takes; they are taken literally, even
	// when they begin with "-", unless they are one of the flags.
	operands func(subcommand string) int
}

func newCommand(name, head string) *command {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the flag package's own messages would repeat ours
	fs.Usage = func() {}
	return &command{name: name, head: head, fs: fs}
}

// usage is the command's usage text with its flags.
func (c *command) usage() string {
	var b strings.Builder
	b.WriteString(c.head)
	b.WriteString("\nflags:\n")
	c.fs.SetOutput(&b)
	c.fs.PrintDefaults()
	c.fs.SetOutput(io.Discard)
	return b.String()
}

// wrong is a usage error of the command.
func (c *command) wrong(format string, args ...any) error {
	return &usageError{cmd: c.name, msg: fmt.Sprintf(format, args...), usage: c.usage()}
}

// parse parses args; flags may come before or after the positional arguments,
// which it returns ("--" ends the flags). -h prints the usage to stderr and
// returns flag.ErrHelp.
func (c *command) parse(args []string, stderr io.Writer) ([]string, error) {
	var flags, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			rest = append(rest, args[i+1:]...)
			i = len(args)
		case !strings.HasPrefix(a, "-") || a == "-":
			rest = append(rest, a)
		case c.operands != nil && len(rest) > 0 && len(rest) <= c.operands(rest[0]) && !c.isFlag(a):
			// An argument the subcommand takes, although it begins with "-".
			rest = append(rest, a)
		default:
			flags = append(flags, a)
			if c.takesValue(a) && i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
		}
	}
	if err := c.fs.Parse(flags); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, c.usage())
			return nil, err
		}
		return nil, c.wrong("%v", err)
	}
	return rest, nil
}

// flagName is the name in -name, --name or -name=value, and whether a value
// follows the "=".
func flagName(arg string) (name string, hasValue bool) {
	name, _, hasValue = strings.Cut(strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-"), "=")
	return name, hasValue
}

// isFlag reports whether arg is one of the command's flags (-name, --name,
// -name=value) or a request for help.
func (c *command) isFlag(arg string) bool {
	name, _ := flagName(arg)
	return name == "h" || name == "help" || c.fs.Lookup(name) != nil
}

// takesValue reports whether arg is a flag whose value is the next argument:
// defined, not boolean, without "=value".
func (c *command) takesValue(arg string) bool {
	name, hasValue := flagName(arg)
	f := c.fs.Lookup(name)
	if f == nil || hasValue {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return !ok || !b.IsBoolFlag()
}

// parseServe parses the command line of "demo serve".
func parseServe(args []string, stderr io.Writer, getenv func(string) string) (*app.Config, error) {
	cmd := newCommand("demo serve", "usage: demo serve [flags]\n\nServes the shop; the flags also come from the environment variables named.\n")
	c := app.FlagSet(cmd.fs, getenv)
	rest, err := cmd.parse(args, stderr)
	if err != nil {
		return nil, err
	}
	if len(rest) > 0 {
		return nil, cmd.wrong("demo serve takes no arguments, got %q", rest)
	}
	if err := c.Validate(); err != nil {
		return nil, cmd.wrong("%v", err)
	}
	return c, nil
}

func serve(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error {
	c, err := parseServe(args, stderr, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if c.Dev {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	fxLog := fx.NopLogger // fx's own events only in development mode; its errors come back from Err and Start
	if c.Dev {
		fxLog = fx.WithLogger(func() fxevent.Logger { return &fxevent.SlogLogger{Logger: logger.With("component", "fx")} })
	}
	fxApp := fx.New(
		app.Options(c, logger),
		app.Serve(c, logger, nil),
		fxLog,
	)
	if err := fxApp.Err(); err != nil {
		return dig.RootCause(err) // "opening the redis session store: ...", not the graph
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := fxApp.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	stop()
	logger.Info("shutting down: finishing in-flight requests")
	stopCtx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout+5e9)
	defer cancel()
	return fxApp.Stop(stopCtx)
}

// parseSessions parses the command line of "demo sessions": the store's
// configuration, the sessionctl options and the command.
func parseSessions(args []string, stderr io.Writer, getenv func(string) string) (*app.Config, *sessionctl.Output, []string, error) {
	cmd := newCommand("demo sessions", "usage: demo sessions COMMAND [flags]\n\n"+
		"Administers the sessions of the store the shop serves from (it must exist: nothing is created).\n\n"+
		sessionctl.Usage+"\n")
	cmd.operands = sessionctl.Operands
	c := app.StoreFlagSet(cmd.fs, getenv)
	out := &sessionctl.Output{}
	out.Flags(cmd.fs)
	rest, err := cmd.parse(args, stderr)
	if err != nil {
		return nil, nil, nil, err
	}
	// A wrong command is reported before the store is opened.
	if err := sessionctl.Check(rest); err != nil {
		return nil, nil, nil, cmd.wrong("%v", err)
	}
	if err := c.Validate(); err != nil {
		return nil, nil, nil, cmd.wrong("%v", err)
	}
	if err := c.CheckExisting(); err != nil {
		return nil, nil, nil, cmd.wrong("%v", err)
	}
	return c, out, rest, nil
}

func sessions(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) error {
	c, out, rest, err := parseSessions(args, stderr, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	backend, err := c.OpenExisting(ctx)
	if err != nil {
		return err
	}
	defer backend.Close()
	m, err := session.New(backend, app.SessionConfig(c, logger)) // no collector: gc is a command here
	if err != nil {
		return err
	}
	if out.Decoders, err = app.Decoders(); err != nil {
		return err
	}
	out.Out, out.Progress = stdout, stderr
	if f, ok := stdin.(*os.File); ok {
		out.Confirm = sessionctl.TerminalPrompt(f, stderr)
	}
	err = sessionctl.Run(ctx, m, rest, *out)
	if errors.Is(err, sessionctl.ErrUsage) {
		return &usageError{cmd: "demo sessions", msg: err.Error(), usage: ""}
	}
	return err
}
