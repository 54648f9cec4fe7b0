package sqlitestore

import (
	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache/internal/sqlcommon"
)

// Module provides a [cache.Store] on the SQLite database file at path. A path
// that is not a file path fails the app's construction; the folder, file and
// schema are created (or checked) when the app starts, so an unwritable folder
// fails start; the database is closed when the app stops.
//
//	fx.New(sqlitestore.Module("var/cache.db", sqlitestore.Options{}), ...)
func Module(path string, o Options) fx.Option {
	return sqlcommon.Module("sqlitestore", func() (*Store, error) { return open(path, o) })
}
