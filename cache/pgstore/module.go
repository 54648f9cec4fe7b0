package pgstore

import (
	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache/internal/sqlcommon"
)

// Module provides a [cache.Store] on the PostgreSQL database at dsn. A
// connection string that cannot be parsed fails the app's construction with an
// error saying so; the schema is created (or checked) when the app starts, so an
// unreachable database fails start; the pool is closed when the app stops.
//
//	fx.New(pgstore.Module("postgres://app@db/app", pgstore.Options{}), ...)
func Module(dsn string, o Options) fx.Option {
	return sqlcommon.Module("pgstore", func() (*Store, error) { return open(dsn, o) })
}
