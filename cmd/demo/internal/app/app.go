package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cmd/demo/internal/shop"
	"github.com/fxsession/fxsession/cmd/demo/internal/web"
	"github.com/fxsession/fxsession/inject"
	"github.com/fxsession/fxsession/scope"
	"github.com/fxsession/fxsession/session"
)

// Options builds the fx options of the shop on c: the session store, the session
// module, the catalog, the session-scoped basket with its products as entities,
// the telemetry (-otel) and the web server. When logger shows debug messages
// (-dev), a session.Listen listener logs every lifecycle event.
func Options(c *Config, logger *slog.Logger) fx.Option {
	var events fx.Option = fx.Options()
	if logger.Enabled(context.Background(), slog.LevelDebug) {
		events = session.Listen(eventLog(logger.With("component", "sessions")))
	}
	return fx.Options(
		fx.Supply(logger),
		fx.Provide(func(lc fx.Lifecycle) (*telemetry, error) { return newTelemetry(c, logger, lc) }),
		fx.Provide(func(t *telemetry) session.Config { return t.sessionConfig(SessionConfig(c, logger)) }),
		fx.Provide(func(t *telemetry) *web.Telemetry { return t.web() }),
		events,
		fx.Provide(func(lc fx.Lifecycle) (cache.Store, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			b, err := c.OpenBackend(ctx)
			if err != nil {
				return nil, fmt.Errorf("opening the %s session store: %w", c.Store, err)
			}
			lc.Append(fx.StopHook(b.Close))
			return b, nil
		}),
		session.Module,
		fx.Provide(func(lc fx.Lifecycle) (*shop.Catalog, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cat, err := shop.OpenCatalog(ctx, c.Catalog)
			if err != nil {
				return nil, err
			}
			lc.Append(fx.StopHook(cat.Close))
			return cat, nil
		}),
		scope.Provide(shop.NewBasket, scope.Key(shop.BasketKey)),
		// Products in a basket are entities found in the catalog, through its
		// entity cache.
		fx.Provide((*shop.Catalog).Products),
		scope.Repository[*inject.Cache[*shop.Product]](),
		fx.Provide(web.New),
	)
}

// SessionConfig is the session configuration of the shop, shared by "demo
// serve" and "demo sessions" so that both see the same sessions expire alike.
func SessionConfig(c *Config, logger *slog.Logger) session.Config {
	return session.Config{
		Development:        c.Dev,
		Namespace:          "session",
		MaxSessionsPerUser: c.MaxSessionsPerUser,
		Logger:             logger,
		ErrorHandler:       web.SessionError,
	}
}

// Serve adds the HTTP server on c.Addr to the app: it listens on start (so a
// taken port fails the start) and shuts down gracefully on stop, letting
// in-flight requests finish and commit their sessions.
func Serve(c *Config, logger *slog.Logger, ready func(addr net.Addr)) fx.Option {
	return fx.Invoke(func(lc fx.Lifecycle, h *web.Server) {
		srv := &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
		lc.Append(fx.Hook{
			OnStart: func(ctx context.Context) error {
				ln, err := net.Listen("tcp", c.Addr)
				if err != nil {
					return fmt.Errorf("listen on %s: %w", c.Addr, err)
				}
				logger.Info("demo shop listening", "addr", ln.Addr().String(), "store", c.Store)
				if ready != nil {
					ready(ln.Addr())
				}
				go func() {
					if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
						logger.Error("server stopped", "err", err)
					}
				}()
				return nil
			},
			OnStop: func(ctx context.Context) error {
				ctx, cancel := context.WithTimeout(ctx, c.ShutdownTimeout)
				defer cancel()
				return srv.Shutdown(ctx)
			},
		})
	})
}
