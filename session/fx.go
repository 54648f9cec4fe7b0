package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
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
//   - cache.Store is taken from the graph: provide one with a store module
//     (filestore.Module, redisstore.Module, memstore.Module, ...). Package
//     fxsession's Module adds a default (a file store in ./var/sessions) used
//     when the app provides none; without either, fx start fails with
//     [ErrNoStore].
//   - *slog.Logger is taken from the graph when Config.Logger is nil and one is
//     provided.
//   - OpenTelemetry is off unless switched on: a metric.MeterProvider and a
//     trace.TracerProvider are taken from the graph when Config's are nil and
//     the app provides them (fx.Provide(func() metric.MeterProvider { … })).
//   - Bags registered with [RegisterBag] and listeners registered with [Listen]
//     are registered before the app starts; queued events are delivered before
//     it stops.
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

// defaultStore opens the store Module uses when the app provides none.
type defaultStore func() (cache.Store, error)

// defaultStoreName is the dig name of the defaultStore.
const defaultStoreName = "fxsession.session.default-store"

// DefaultStore supplies the store [Module] uses when the application provides no
// cache.Store: open is called only then, and the store it returns is closed when
// the app stops. Package fxsession's Module uses it to default to a file store in
// ./var/sessions; an application rarely needs it.
func DefaultStore(open func() (cache.Store, error)) fx.Option {
	if open == nil {
		return fx.Error(errors.New("session.DefaultStore(nil): want a function opening a store"))
	}
	return fx.Provide(fx.Annotate(func() defaultStore { return open }, fx.ResultTags(`name:"`+defaultStoreName+`"`)))
}

// ErrNoStore: [Module] found no cache.Store in the app and no [DefaultStore].
var ErrNoStore = errors.New("session.Module: no cache.Store in the app: add a store module (filestore.Module, redisstore.Module, memstore.Module, pgstore.Module, sqlitestore.Module) or use fxsession.Module, which defaults to a file store in ./var/sessions")

type moduleIn struct {
	fx.In
	Lifecycle fx.Lifecycle
	Config    Config               `optional:"true"`
	Store     cache.Store          `optional:"true"`
	Default   defaultStore         `name:"fxsession.session.default-store" optional:"true"`
	Logger    *slog.Logger         `optional:"true"`
	Meter     metric.MeterProvider `optional:"true"`
	Tracer    trace.TracerProvider `optional:"true"`
	Bags      []bagName            `group:"fxsession.session.bags"`
	Listeners []Listener           `group:"fxsession.session.listeners"`
}

func newModuleManager(in moduleIn) (*Manager, error) {
	cfg := in.Config
	if cfg.Logger == nil {
		cfg.Logger = in.Logger
	}
	if cfg.MeterProvider == nil {
		cfg.MeterProvider = in.Meter
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = in.Tracer
	}
	store := in.Store
	var closeStore func() error
	if store == nil {
		if in.Default == nil {
			return nil, ErrNoStore
		}
		s, err := in.Default()
		if err != nil {
			return nil, fmt.Errorf("session.Module: opening the default store: %w", err)
		}
		store, closeStore = s, s.Close
	}
	m, err := New(store, cfg)
	if err == nil {
		for _, name := range in.Bags {
			if err = m.RegisterBag(string(name)); err != nil {
				break
			}
		}
		for _, fn := range in.Listeners {
			if err == nil {
				err = m.Listen(fn)
			}
		}
	}
	if err != nil {
		if closeStore != nil {
			_ = closeStore()
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
			_ = m.Close() // delivers the queued events
			if closeStore != nil {
				return closeStore()
			}
			return nil
		},
	})
	return m, nil
}
