// Package fxsession gives Uber's fx a session lifetime. Its Module is the
// batteries-included start: sessions (package session) with a file store in
// ./var/sessions unless the application provides a cache.Store of its own.
//
//	fx.New(
//		fxsession.Module,         // sessions, stored in ./var/sessions
//		scope.Provide(NewBasket), // one Basket per visitor's session
//		fx.Invoke(routes),
//	)
//
// The packages: scope (session-scoped types for fx), session (sessions, the
// middleware, bags, flashes, admin operations), cache and its backends
// (memstore, filestore, redisstore, pgstore, sqlitestore), inject (the
// reflection work behind scope).
package fxsession

import (
	"fmt"

	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/filestore"
	"github.com/fxsession/fxsession/session"
)

// DefaultDir is the folder of the file store [Module] opens when the application
// provides no cache.Store (relative to the working directory).
const DefaultDir = "var/sessions"

// Module is [session.Module] with a default store: when the application provides
// no cache.Store, a file store in [DefaultDir], which survives restarts and
// deploys and is shared by the processes of one machine, opened when the app is
// built and closed when it stops.
var Module = fx.Module("fxsession",
	session.Module,
	session.DefaultStore(openDefaultStore),
)

func openDefaultStore() (cache.Store, error) {
	s, err := filestore.Open(filestore.Options{Dir: DefaultDir})
	if err != nil {
		return nil, fmt.Errorf("fxsession: opening the default file store in %s: %w", DefaultDir, err)
	}
	return s, nil
}
