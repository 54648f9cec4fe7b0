package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
)

// Client defaults applied by [NewClient], [NewClusterClient], [Module] and
// [ModuleWith] to the options left 0. go-redis' own defaults (5 s timeouts, 3
// retries of 5 dials each, the cluster's slot map re-read once a minute) can
// keep a request waiting for many seconds on a dead server and a cluster client
// on a dead master for a minute after a failover; with these a call to a stopped
// server fails at once, one to a frozen server within about two read timeouts,
// and a cluster client finds a promoted replica within about a second.
const (
	DefaultDialTimeout  = time.Second
	DefaultReadTimeout  = time.Second
	DefaultWriteTimeout = time.Second
	// DefaultMaxRetries: one retry of a command that failed on the network (one
	// server and Sentinel; a cluster client retries through MaxRedirects).
	DefaultMaxRetries = 1
	// DefaultDialerRetries: one dial attempt per command attempt.
	DefaultDialerRetries = 1
	// DefaultMaxRedirects: how many times a cluster client follows a MOVED or ASK
	// reply or tries again after a network error (go-redis: 3). One is enough to
	// follow a moved slot or replace a broken connection; more attempts on a dead
	// master find it dead again until the slot map is read anew, and each costs a
	// ReadTimeout on a frozen one.
	DefaultMaxRedirects = 1
	// DefaultClusterStateReloadInterval: how often a cluster client reads the slot
	// map while it has traffic (go-redis: every 60 s). A failover shows in the
	// slot map, not in MOVED replies (the dead master answers nothing), so this
	// interval bounds how long a client keeps sending to a dead master.
	DefaultClusterStateReloadInterval = time.Second
)

// NewClient builds a client as [redis.NewUniversalClient] does from uo (one
// address: one server; MasterName: Sentinel; several addresses or IsClusterMode:
// Redis Cluster, built with [NewClusterClient]), with the package's defaults for
// the timeouts and retries uo leaves 0, context deadlines honoured
// (ContextTimeoutEnabled), and pipelines on the main connection pool unless
// PipelinePoolSize is set (go-redis' dedicated pipeline pool spends two more read
// timeouts before a pipeline to a frozen server fails). The caller closes it.
//
// UniversalOptions cannot carry a cluster's ClusterStateReloadInterval: a cluster
// client gets [DefaultClusterStateReloadInterval]; build one with
// [NewClusterClient] to choose another.
func NewClient(uo redis.UniversalOptions) redis.UniversalClient {
	uo.DialTimeout = orDefault(uo.DialTimeout, DefaultDialTimeout)
	uo.ReadTimeout = orDefault(uo.ReadTimeout, DefaultReadTimeout)
	uo.WriteTimeout = orDefault(uo.WriteTimeout, DefaultWriteTimeout)
	uo.DialerRetries = orDefault(uo.DialerRetries, DefaultDialerRetries)
	uo.PipelinePoolSize = orDefault(uo.PipelinePoolSize, -1)
	uo.ContextTimeoutEnabled = true
	clusterMode := uo.IsClusterMode || uo.RouteByLatency || uo.RouteRandomly
	switch {
	case uo.MasterName != "" && clusterMode:
		uo.MaxRedirects = orDefault(uo.MaxRedirects, DefaultMaxRedirects)
		return redis.NewFailoverClusterClient(uo.Failover())
	case uo.MasterName != "":
		uo.MaxRetries = orDefault(uo.MaxRetries, DefaultMaxRetries)
		return redis.NewFailoverClient(uo.Failover())
	case len(uo.Addrs) > 1 || uo.IsClusterMode:
		return NewClusterClient(*uo.Cluster())
	default:
		uo.MaxRetries = orDefault(uo.MaxRetries, DefaultMaxRetries)
		return redis.NewClient(uo.Simple())
	}
}

// NewClusterClient builds a Redis Cluster client from co with the package's
// defaults for what co leaves 0: the timeouts, DialerRetries, MaxRedirects
// ([DefaultMaxRedirects]) and ClusterStateReloadInterval
// ([DefaultClusterStateReloadInterval]); context deadlines are honoured. The
// caller closes it.
func NewClusterClient(co redis.ClusterOptions) *redis.ClusterClient {
	co.DialTimeout = orDefault(co.DialTimeout, DefaultDialTimeout)
	co.ReadTimeout = orDefault(co.ReadTimeout, DefaultReadTimeout)
	co.WriteTimeout = orDefault(co.WriteTimeout, DefaultWriteTimeout)
	co.DialerRetries = orDefault(co.DialerRetries, DefaultDialerRetries)
	co.MaxRedirects = orDefault(co.MaxRedirects, DefaultMaxRedirects)
	co.ClusterStateReloadInterval = orDefault(co.ClusterStateReloadInterval, DefaultClusterStateReloadInterval)
	co.ContextTimeoutEnabled = true
	return redis.NewClusterClient(&co)
}

// Module provides a [cache.Store] on the Redis at url, a go-redis URL:
//
//   - redis://[user:password@]host:port/db (rediss:// for TLS, unix:///path for a
//     socket): one server, as [redis.ParseURL] reads it;
//   - redis://host:port?addr=host2:port2&addr=host3:port3: Redis Cluster (any
//     URL with addr parameters), as [redis.ParseClusterURL] reads it;
//   - redis://sentinel-host:port/db?master_name=mymaster&addr=...: Sentinel (any
//     URL with master_name), as [redis.ParseFailoverURL] reads it.
//
// The query may also set go-redis' options (dial_timeout, read_timeout,
// max_retries, ...). What the URL leaves out gets the defaults of [NewClient].
//
// On start it pings Redis and fails the app with an error matching
// [cache.ErrUnavailable] when Redis cannot be reached; on stop it closes the store
// and the client. A *slog.Logger in the container is used when opts.Logger is
// nil.
func Module(url string, opts Options) fx.Option {
	return fx.Module("redisstore",
		fx.Provide(func(p moduleParams) (cache.Store, error) {
			client, addr, err := clientFromURL(url)
			if err != nil {
				return nil, err
			}
			return provide(p, client, opts, addr)
		}),
	)
}

// clientFromURL builds the client Module uses; addr names the server in logs and
// errors (without the password).
func clientFromURL(raw string) (redis.UniversalClient, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", fmt.Errorf("redisstore: Redis URL: %w", err)
	}
	q := u.Query()
	switch {
	case q.Has("master_name"):
		o, err := redis.ParseFailoverURL(raw)
		if err != nil {
			return nil, "", fmt.Errorf("redisstore: Redis Sentinel URL: %w", err)
		}
		o.DialTimeout = orDefault(o.DialTimeout, DefaultDialTimeout)
		o.ReadTimeout = orDefault(o.ReadTimeout, DefaultReadTimeout)
		o.WriteTimeout = orDefault(o.WriteTimeout, DefaultWriteTimeout)
		o.MaxRetries = orDefault(o.MaxRetries, DefaultMaxRetries)
		o.DialerRetries = orDefault(o.DialerRetries, DefaultDialerRetries)
		o.ContextTimeoutEnabled = true
		return redis.NewFailoverClient(o), "sentinel " + o.MasterName + "@" + strings.Join(o.SentinelAddrs, ","), nil
	case q.Has("addr"):
		o, err := redis.ParseClusterURL(raw)
		if err != nil {
			return nil, "", fmt.Errorf("redisstore: Redis Cluster URL: %w", err)
		}
		return NewClusterClient(*o), "cluster " + strings.Join(o.Addrs, ","), nil
	default:
		o, err := redis.ParseURL(raw)
		if err != nil {
			return nil, "", fmt.Errorf("redisstore: Redis URL: %w", err)
		}
		o.DialTimeout = orDefault(o.DialTimeout, DefaultDialTimeout)
		o.ReadTimeout = orDefault(o.ReadTimeout, DefaultReadTimeout)
		o.WriteTimeout = orDefault(o.WriteTimeout, DefaultWriteTimeout)
		o.MaxRetries = orDefault(o.MaxRetries, DefaultMaxRetries)
		o.DialerRetries = orDefault(o.DialerRetries, DefaultDialerRetries)
		o.PipelinePoolSize = orDefault(o.PipelinePoolSize, -1)
		o.ContextTimeoutEnabled = true
		return redis.NewClient(o), o.Addr, nil
	}
}

// ModuleWith provides a [cache.Store] on the client [NewClient] builds from uo.
// Start and stop behave as in [Module].
func ModuleWith(uo redis.UniversalOptions, opts Options) fx.Option {
	return fx.Module("redisstore",
		fx.Provide(func(p moduleParams) (cache.Store, error) {
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

// provide makes the store on client and ties both to the app's lifecycle.
func provide(p moduleParams, client redis.UniversalClient, opts Options, addr string) (cache.Store, error) {
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
			s.log.DebugContext(ctx, "redisstore: connected", "addr", addr, "namespace", s.ns,
				"min_replicas", s.replicas)
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
