// Package app assembles the demo shop: its configuration (flags with environment
// variables as alternatives), the session store it runs on, and the fx application.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/filestore"
	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/cache/pgstore"
	"github.com/fxsession/fxsession/cache/redisstore"
	"github.com/fxsession/fxsession/cache/sqlitestore"
)

// Config is the demo's configuration. Every field has a flag and an environment
// variable (the flag wins).
type Config struct {
	Addr      string // -addr, DEMO_ADDR (default ":8080")
	Store     string // -store, DEMO_STORE: memory, file (default), redis, sqlite, postgres
	Dir       string // -dir, DEMO_DIR: the file store's folder (default "var/sessions")
	RedisURL  string // -redis-url, DEMO_REDIS_URL (default "redis://127.0.0.1:6379/0")
	DSN       string // -dsn, DEMO_DSN: the SQLite file or the Postgres connection string
	Namespace string // -namespace, DEMO_NAMESPACE (default "fxsession-demo")
	Catalog   string // -catalog, DEMO_CATALOG: the product database (default "var/catalog.db")
	Dev       bool   // -dev, DEMO_DEV: development mode (misuse of sessions fails loudly)
	// ShutdownTimeout bounds the graceful shutdown (-shutdown-timeout, DEMO_SHUTDOWN_TIMEOUT, default 10s).
	ShutdownTimeout time.Duration
	// MaxSessionsPerUser caps the sessions of one signed-in user; signing in
	// beyond it ends the least recently used (-max-sessions-per-user,
	// DEMO_MAX_SESSIONS_PER_USER; default 0: no cap).
	MaxSessionsPerUser int
	// RedisMinReplicas turns on the Redis store's durability mode: each write
	// waits for this many replicas (up to half the URL's read_timeout), and a
	// write fewer acknowledge fails the request (503) instead of being
	// acknowledged (-redis-min-replicas, DEMO_REDIS_MIN_REPLICAS; default 0:
	// off).
	RedisMinReplicas int
	// OTel switches on OpenTelemetry metrics (served at /metrics) and traces
	// (-otel, DEMO_OTEL; default off).
	OTel bool

	envErr error // an environment variable FlagSet could not parse; Validate reports it
}

// Stores lists the -store values.
var Stores = []string{"memory", "file", "redis", "sqlite", "postgres"}

// FlagSet registers the flags of "demo serve" on fs, with defaults taken from
// the environment, and returns the Config they fill.
func FlagSet(fs *flag.FlagSet, getenv func(string) string) *Config {
	c := StoreFlagSet(fs, getenv)
	env := envOr(getenv)
	fs.StringVar(&c.Addr, "addr", env("DEMO_ADDR", ":8080"), "listen address (env DEMO_ADDR)")
	fs.StringVar(&c.Catalog, "catalog", env("DEMO_CATALOG", "var/catalog.db"), "product catalog database, created and seeded on first start (env DEMO_CATALOG)")
	dev, err := strconv.ParseBool(env("DEMO_DEV", "false"))
	if err != nil {
		c.envErr = errors.Join(c.envErr, fmt.Errorf("DEMO_DEV=%q: want true or false", getenv("DEMO_DEV")))
	}
	fs.BoolVar(&c.Dev, "dev", dev, "development mode (env DEMO_DEV)")
	st, err := time.ParseDuration(env("DEMO_SHUTDOWN_TIMEOUT", "10s"))
	if err != nil {
		c.envErr = errors.Join(c.envErr, fmt.Errorf("DEMO_SHUTDOWN_TIMEOUT=%q: want a duration such as 10s", getenv("DEMO_SHUTDOWN_TIMEOUT")))
		st = 10 * time.Second
	}
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", st, "graceful shutdown bound (env DEMO_SHUTDOWN_TIMEOUT)")
	fs.IntVar(&c.MaxSessionsPerUser, "max-sessions-per-user", c.envInt(getenv, "DEMO_MAX_SESSIONS_PER_USER"),
		"sessions one user may hold; signing in beyond it ends the least recently used (0: no cap) (env DEMO_MAX_SESSIONS_PER_USER)")
	otel, err := strconv.ParseBool(env("DEMO_OTEL", "false"))
	if err != nil {
		c.envErr = errors.Join(c.envErr, fmt.Errorf("DEMO_OTEL=%q: want true or false", getenv("DEMO_OTEL")))
	}
	fs.BoolVar(&c.OTel, "otel", otel, "OpenTelemetry metrics (Prometheus text at /metrics) and traces (env DEMO_OTEL)")
	return c
}

// envInt is the whole number in the environment variable name (0 when unset);
// a value that is not one is reported by Validate.
func (c *Config) envInt(getenv func(string) string, name string) int {
	v := getenv(name)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		c.envErr = errors.Join(c.envErr, fmt.Errorf("%s=%q: want a whole number", name, v))
	}
	return n
}

// StoreFlagSet registers only the flags that name the session store (-store,
// -dir, -redis-url, -redis-min-replicas, -dsn, -namespace) on fs, with defaults taken from the
// environment: the flags of "demo sessions". The other fields of the Config
// keep their defaults.
func StoreFlagSet(fs *flag.FlagSet, getenv func(string) string) *Config {
	env := envOr(getenv)
	c := &Config{Addr: ":8080", Catalog: "var/catalog.db", ShutdownTimeout: 10 * time.Second}
	fs.StringVar(&c.Store, "store", env("DEMO_STORE", "file"), "session store: "+strings.Join(Stores, ", ")+" (env DEMO_STORE)")
	fs.StringVar(&c.Dir, "dir", env("DEMO_DIR", "var/sessions"), "folder of the file store (env DEMO_DIR)")
	fs.StringVar(&c.RedisURL, "redis-url", env("DEMO_REDIS_URL", "redis://127.0.0.1:6379/0"), "Redis URL for -store redis, with go-redis options such as ?read_timeout=500ms (env DEMO_REDIS_URL)")
	fs.IntVar(&c.RedisMinReplicas, "redis-min-replicas", c.envInt(getenv, "DEMO_REDIS_MIN_REPLICAS"),
		"durability mode of -store redis: each write waits for this many replicas (up to half the URL's read_timeout) and fails (503) when fewer acknowledge it (0: off) (env DEMO_REDIS_MIN_REPLICAS)")
	fs.StringVar(&c.DSN, "dsn", env("DEMO_DSN", ""), "SQLite file for -store sqlite, connection string for -store postgres (env DEMO_DSN)")
	fs.StringVar(&c.Namespace, "namespace", env("DEMO_NAMESPACE", "fxsession-demo"), "cache namespace of the sessions (env DEMO_NAMESPACE)")
	return c
}

// envOr returns a lookup of an environment variable with a default.
func envOr(getenv func(string) string) func(name, def string) string {
	return func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.envErr != nil {
		return c.envErr
	}
	switch c.Store {
	case "memory", "file", "redis":
	case "sqlite", "postgres":
		if c.DSN == "" {
			return fmt.Errorf("-store %s needs -dsn", c.Store)
		}
	default:
		return fmt.Errorf("unknown -store %q (want one of %s)", c.Store, strings.Join(Stores, ", "))
	}
	if err := cache.ValidateKey(c.Namespace); err != nil {
		return fmt.Errorf("-namespace: %w", err)
	}
	switch {
	case c.MaxSessionsPerUser < 0:
		return fmt.Errorf("-max-sessions-per-user %d: want 0 (no cap) or more", c.MaxSessionsPerUser)
	case c.RedisMinReplicas < 0:
		return fmt.Errorf("-redis-min-replicas %d: want 0 (off) or more", c.RedisMinReplicas)
	case c.RedisMinReplicas > 0 && c.Store != "redis":
		return fmt.Errorf("-redis-min-replicas needs -store redis (it is %s)", c.Store)
	}
	return nil
}

// OpenBackend opens the session store the configuration names.
func (c *Config) OpenBackend(ctx context.Context) (cache.Store, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	switch c.Store {
	case "memory":
		return memstore.New(memstore.Options{Namespace: c.Namespace}), nil
	case "file":
		return filestore.Open(filestore.Options{Dir: c.Dir, Namespace: c.Namespace})
	case "redis":
		o, err := redis.ParseURL(c.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("-redis-url: %w", err)
		}
		// The URL's options (dial_timeout, read_timeout, max_retries, ...) win;
		// what it leaves out gets redisstore's defaults.
		o.DialTimeout = orDefault(o.DialTimeout, redisstore.DefaultDialTimeout)
		o.ReadTimeout = orDefault(o.ReadTimeout, redisstore.DefaultReadTimeout)
		o.WriteTimeout = orDefault(o.WriteTimeout, redisstore.DefaultWriteTimeout)
		// No retry unless the URL asks for one: a frozen Redis then costs a session
		// request one read timeout (1 s) before its 503, not two.
		o.MaxRetries = orDefault(o.MaxRetries, -1)
		o.DialerRetries = orDefault(o.DialerRetries, redisstore.DefaultDialerRetries)
		o.ContextTimeoutEnabled = true
		client := redis.NewClient(o)
		if err := client.Ping(ctx).Err(); err != nil {
			client.Close()
			return nil, cache.Unavailable("ping Redis at "+o.Addr, err)
		}
		ro := redisstore.Options{Namespace: c.Namespace, MinReplicas: c.RedisMinReplicas}
		if c.RedisMinReplicas > 0 && o.ReadTimeout > 0 {
			// The replicas get half the round trip's bound (the URL's
			// read_timeout): WAIT must answer before the client gives up.
			ro.ReplicaTimeout = o.ReadTimeout / 2
		}
		store, err := redisstore.New(client, ro)
		if err != nil {
			client.Close()
			return nil, err
		}
		return ownedClient{store, client.Close}, nil
	case "sqlite":
		return sqlitestore.Open(ctx, c.DSN, sqlitestore.Options{Namespace: c.Namespace})
	case "postgres":
		return pgstore.Open(ctx, c.DSN, pgstore.Options{Namespace: c.Namespace})
	}
	return nil, errors.New("unreachable")
}

// ErrNoStore: the session store the configuration names does not exist.
var ErrNoStore = errors.New("no session store")

// CheckExisting reports whether the configuration can name a store that
// already holds sessions: a memory store lives only inside its serving process.
func (c *Config) CheckExisting() error {
	if c.Store == "memory" {
		return errors.New("-store memory keeps its sessions inside the serving process, out of reach of another command: name the store the shop serves from")
	}
	return nil
}

// OpenExisting opens the session store the configuration names, which must
// exist: a missing file store folder or SQLite file is an error matching
// ErrNoStore that names the path, and nothing is created.
func (c *Config) OpenExisting(ctx context.Context) (cache.Store, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := c.CheckExisting(); err != nil {
		return nil, err
	}
	var path, what string
	switch c.Store {
	case "file":
		path, what = c.Dir, "folder"
	case "sqlite":
		path, what = c.DSN, "file"
	}
	if path != "" {
		fi, err := os.Stat(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("%w at %s: the %s does not exist (see -store, -dir, -dsn)", ErrNoStore, path, what)
		case err != nil:
			return nil, fmt.Errorf("the %s session store at %s: %w", c.Store, path, err)
		case what == "folder" && !fi.IsDir():
			return nil, fmt.Errorf("%w at %s: not a folder", ErrNoStore, path)
		case what == "file" && fi.IsDir():
			return nil, fmt.Errorf("%w at %s: a folder, not a SQLite file", ErrNoStore, path)
		}
	}
	b, err := c.OpenBackend(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening the %s session store: %w", c.Store, err)
	}
	return b, nil
}

// ownedClient is a backend that also closes the client it was opened on.
type ownedClient struct {
	cache.Store
	closeClient func() error
}

func (o ownedClient) Close() error {
	return errors.Join(o.Store.Close(), o.closeClient())
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
