// Command demo is the fxsession demo shop: a small web shop whose basket is a
// session-scoped object, and the admin commands for its sessions.
//
//	demo serve [flags]                  serve the shop (default -addr :8080, -store file)
//	demo sessions list [flags]          list the sessions
//	demo sessions show ID|HASH          show one session
//	demo sessions destroy ID|HASH       destroy one session
//	demo sessions destroy-tag TAG       destroy every session with the tag
//	demo sessions destroy-all           destroy every session
//	demo sessions gc                    collect expired sessions now
//
// Flags (each also an environment variable): -addr (DEMO_ADDR), -store
// memory|file|redis|sqlite|postgres (DEMO_STORE), -dir (DEMO_DIR), -redis-url
// (DEMO_REDIS_URL), -dsn (DEMO_DSN), -namespace (DEMO_NAMESPACE), -catalog
// (DEMO_CATALOG), -dev (DEMO_DEV).
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
	"syscall"

	"go.uber.org/dig"
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"

	"github.com/fxsession/fxsession/cmd/demo/internal/app"
	"github.com/fxsession/fxsession/session"
	"github.com/fxsession/fxsession/session/sessionctl"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

const usage = `usage:
  demo serve [flags]
  demo sessions list|show ID|destroy ID|destroy-tag TAG|destroy-all|gc [flags]
run "demo serve -h" for the flags`

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		args = []string{"serve"}
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stderr, getenv)
	case "sessions":
		err = sessions(ctx, args[1:], stdout, stderr, getenv)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		return fmt.Errorf("%w: unknown command %q\n%s", errUsage, args[0], usage)
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil // -h: the flags were printed
	}
	return err
}

func parse(name string, args []string, stderr io.Writer, getenv func(string) string) (*app.Config, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := app.FlagSet(fs, getenv)
	// Flags may come before or after the positional arguments.
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, nil, err
			}
			return nil, nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if err := c.Validate(); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return c, rest, nil
}

func serve(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error {
	c, rest, err := parse("demo serve", args, stderr, getenv)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("%w: demo serve takes no arguments, got %q", errUsage, rest)
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

func sessions(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	c, rest, err := parse("demo sessions", args, stderr, getenv)
	if err != nil {
		return err
	}
	// A wrong command is reported before the store is opened (or created).
	if err := sessionctl.Check(rest); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var mgr *session.Manager
	fxApp := fx.New(
		app.Options(c, logger),
		fx.Populate(&mgr),
		fx.NopLogger,
	)
	if err := fxApp.Err(); err != nil {
		return dig.RootCause(err) // "opening the redis session store: ...", not the graph
	}
	if err := fxApp.Start(ctx); err != nil {
		return err
	}
	defer fxApp.Stop(context.WithoutCancel(ctx)) //nolint:errcheck // best effort on the way out
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = sessionctl.Run(ctx, mgr, rest, sessionctl.Output{Out: stdout, Progress: stderr})
	if errors.Is(err, sessionctl.ErrUsage) {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return err
}
