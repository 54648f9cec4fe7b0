package session

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
)

// bagGroup is the fx value group of bag names registered with RegisterBag.
const bagGroup = "fxsession.session.bags"

// bagName is one RegisterBag registration in the fx graph.
type bagName string

// Module provides a *[Manager] to an fx application. It needs no configuration:
//
//   - Config is taken from the graph when one is supplied (fx.Supply(session.Config{...}));
//     otherwise the zero Config (every default) is used.
//   - cache.Backend is taken from the graph when one is provided (a cache
//     module such as memstore.Module); otherwise a file store is opened in
//     DefaultDir ("var/sessions") and closed when the app stops.
//   - *slog.Logger is taken from the graph when Config.Logger is nil and one is
//     provided.
//   - Bags registered with [RegisterBag] are registered before the app starts.
//
// The background garbage collector starts and stops with the app.
var Module = fx.Module("fxsession.session", fx.Provide(newModuleManager))

// RegisterBag registers a named attribute bag with the [Module]'s manager (the
// fx form of [Manager.RegisterBag]); the name is checked at once.
func RegisterBag(name string) fx.Option {
	if err := checkKey(name); err != nil {
		return fx.Error(fmt.Errorf("session: RegisterBag: %w", err))
	}
	return fx.Provide(fx.Annotate(
		func() bagName { return bagName(name) },
		fx.ResultTags(`group:"`+bagGroup+`"`),
	))
}

type moduleIn struct {
	fx.In
	Lifecycle fx.Lifecycle
	Config    Config        `optional:"true"`
	Backend   cache.Backend `optional:"true"`
	Logger    *slog.Logger  `optional:"true"`
	Bags      []bagName     `group:"fxsession.session.bags"`
}

func newModuleManager(in moduleIn) (*Manager, error) {
	cfg := in.Config
	if cfg.Logger == nil {
		cfg.Logger = in.Logger
	}
	backend := in.Backend
	var closeBackend func() error
	if backend == nil {
		b, err := openDefaultBackend()
		if err != nil {
			return nil, err
		}
		backend, closeBackend = b, b.Close
	}
	m, err := New(backend, cfg)
	if err == nil {
		for _, name := range in.Bags {
			if err = m.RegisterBag(string(name)); err != nil {
				break
			}
		}
	}
	if err != nil {
		if closeBackend != nil {
			_ = closeBackend()
		}
		return nil, err
	}
	var (
		cancel context.CancelFunc
		wg     sync.WaitGroup
	)
	in.Lifecycle.Append(fx.Hook{
		OnStart: func(context.Context) error {
			m.seal()
			var ctx context.Context
			ctx, cancel = context.WithCancel(context.Background())
			wg.Go(func() { m.RunCollector(ctx) })
			return nil
		},
		OnStop: func(context.Context) error {
			if cancel != nil {
				cancel()
			}
			wg.Wait()
			if closeBackend != nil {
				return closeBackend()
			}
			return nil
		},
	})
	return m, nil
}
