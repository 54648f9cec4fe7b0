package sqlcommon

import (
	"context"

	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
)

// Opened is a SQL backend as its package's Open makes it, before Ready.
type Opened interface {
	cache.Store
	Ready(ctx context.Context) error
}

// Module is the fx module of a SQL backend: it provides the cache.Store that
// open returns (an error fails the app's construction), makes it Ready when the
// app starts (an error fails the start) and closes it when the app stops.
func Module[S Opened](name string, open func() (S, error)) fx.Option {
	return fx.Module(name,
		fx.Provide(func(lc fx.Lifecycle) (cache.Store, error) {
			s, err := open()
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
