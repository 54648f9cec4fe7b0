package pgstore

import (
	"context"

	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
)

// Module provides a [cache.Backend] on the PostgreSQL database at dsn. A
// connection string that cannot be parsed fails the app's construction with an
// error saying so; the schema is created (or checked) when the app starts, so an
// unreachable database fails start; the pool is closed when the app stops.
//
//	fx.New(pgstore.Module("postgres://app@db/app", pgstore.Options{}), ...)
func Module(dsn string, o Options) fx.Option {
	return fx.Module("pgstore",
		fx.Provide(func(lc fx.Lifecycle) (cache.Backend, error) {
			s, err := open(dsn, o)
			if err != nil {
				return nil, err
			}
			lc.Append(fx.Hook{
				OnStart: func(ctx context.Context) error {
					if err := s.Ready(ctx); err != nil {
						_ = s.Close() // OnStop will not run for a failed start
						return err
					}
					return nil
				},
				OnStop: func(context.Context) error { return s.Close() },
			})
			return s, nil
		}),
	)
}
