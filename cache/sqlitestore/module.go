package sqlitestore

import (
	"context"

	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
)

// Module provides a [cache.Backend] on the SQLite database file at path. A path
// that is not a file path fails the app's construction; the folder, file and
// schema are created (or checked) when the app starts, so an unwritable folder
// fails start; the database is closed when the app stops.
//
//	fx.New(sqlitestore.Module("var/cache.db", sqlitestore.Options{}), ...)
func Module(path string, o Options) fx.Option {
	return fx.Module("sqlitestore",
		fx.Provide(func(lc fx.Lifecycle) (cache.Backend, error) {
			s, err := open(path, o)
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
