package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
)

// Client defaults applied by [Module], [ModuleWith] and [NewClient] to the
// options left 0. go-redis' own defaults (5 s timeouts, 3 retries of 5 dials
// each) can keep a request waiting for many seconds on a dead server; with these
// a call to a stopped server fails at once and one to a frozen server within
// about two read timeouts.
const (
	DefaultDialTimeout  = time.Second
	DefaultReadTimeout  = time.Second
	DefaultWriteTimeout = time.Second
	// DefaultMaxRetries: one retry of a command that failed on the network.
	DefaultMaxRetries = 1
	// DefaultDialerRetries: one dial attempt per command attempt.
	DefaultDialerRetries = 1
)

// NewClient builds the client [ModuleWith] uses: [redis.NewUniversalClient] on
// uo (one address for a single server, several for Redis Cluster, MasterName for
// Sentinel), with the package's defaults for the timeouts and retries uo leaves
// 0, ContextTimeoutEnabled on (context deadlines bound every call), and
// pipelines on the main connection pool unless PipelinePoolSize is set (go-redis'
// dedicated pipeline pool spends two more read timeouts before a pipeline to a
// frozen server fails). The caller closes it.
func NewClient(uo redis.UniversalOptions) redis.UniversalClient {
	uo.DialTimeout = orDefault(uo.DialTimeout, DefaultDialTimeout)
	uo.ReadTimeout = orDefault(uo.ReadTimeout, DefaultReadTimeout)
	uo.WriteTimeout = orDefault(uo.WriteTimeout, DefaultWriteTimeout)
	uo.MaxRetries = orDefault(uo.MaxRetries, DefaultMaxRetries)
	uo.DialerRetries = orDefault(uo.DialerRetries, DefaultDialerRetries)
	uo.PipelinePoolSize = orDefault(uo.PipelinePoolSize, -1)
	uo.ContextTimeoutEnabled = true
	return redis.NewUniversalClient(&uo)
}

// Module provides a [cache.Backend] on the Redis server at url, a go-redis URL:
// redis://[user:password@]host:port/db, rediss:// for TLS or unix:///path/to.sock,
// with go-redis' query options (dial_timeout, read_timeout, max_retries, ...), see
// [redis.ParseURL]. What the URL leaves out gets the defaults of [NewClient].
//
// On start it pings the server and fails the app with an error matching
// [cache.ErrUnavailable] when Redis cannot be reached; on stop it closes the store
// and the client. A *slog.Logger in the container is used when opts.Logger is
// nil.
func Module(url string, opts Options) fx.Option {
	return fx.Module("redisstore",
		fx.Provide(func(p moduleParams) (cache.Backend, error) {
			o, err := redis.ParseURL(url)
			if err != nil {
				return nil, fmt.Errorf("redisstore: Redis URL: %w", err)
			}
			o.DialTimeout = orDefault(o.DialTimeout, DefaultDialTimeout)
			o.ReadTimeout = orDefault(o.ReadTimeout, DefaultReadTimeout)
			o.WriteTimeout = orDefault(o.WriteTimeout, DefaultWriteTimeout)
			o.MaxRetries = orDefault(o.MaxRetries, DefaultMaxRetries)
			o.DialerRetries = orDefault(o.DialerRetries, DefaultDialerRetries)
			o.PipelinePoolSize = orDefault(o.PipelinePoolSize, -1)
			o.ContextTimeoutEnabled = true
			return provide(p, redis.NewClient(o), opts, o.Addr)
		}),
	)
}

// ModuleWith provides a [cache.Backend] on the client [NewClient] builds from uo.
// Start and stop behave as in [Module].
func ModuleWith(uo redis.UniversalOptions, opts Options) fx.Option {
	return fx.Module("redisstore",
		fx.Provide(func(p moduleParams) (cache.Backend, error) {
			addr := strings.Join(uo.Addrs, ",")
			if addr == "" {
				addr = "127.0.0.1:6379"
			}
			return provide(p, NewClient(uo), opts, addr)
		}),
	)
}

type moduleParams struct {
	fx.In
	Lifecycle fx.Lifecycle
	Logger    *slog.Logger `optional:"true"`
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// provide makes the store on client and ties both to the app's lifecycle.
func provide(p moduleParams, client redis.UniversalClient, opts Options, addr string) (cache.Backend, error) {
	if opts.Logger == nil {
		opts.Logger = p.Logger
	}
	s, err := New(client, opts)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			if err := client.Ping(ctx).Err(); err != nil {
				// fx does not run the stop hook of a failed start: close here.
				_ = client.Close()
				return cache.Unavailable(fmt.Sprintf("redisstore: ping Redis at %s", addr), err)
			}
			s.log.DebugContext(ctx, "redisstore: connected", "addr", addr, "namespace", s.ns)
			return nil
		},
		OnStop: func(context.Context) error {
			_ = s.Close()
			if err := client.Close(); err != nil {
				return fmt.Errorf("redisstore: close client: %w", err)
			}
			return nil
		},
	})
	return s, nil
}
