package session

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/memstore"
)

func TestModule(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		var m *Manager
		app := fxtest.New(t,
			Module,
			fx.Supply(fx.Annotate(b.store, fx.As(new(cache.Store)))),
			fx.Supply(Config{GCInterval: 10 * time.Millisecond, CookieName: "shop"}),
			RegisterBag("cart"),
			RegisterBag("admin"),
			fx.Populate(&m),
		)
		app.RequireStart()
		if err := m.RegisterBag("late"); !errors.Is(err, ErrRegistrationClosed) {
			t.Errorf("RegisterBag after start = %v", err)
		}
		if m.cfg.cookieName != "shop" {
			t.Errorf("the supplied Config was not used: cookie %q", m.cfg.cookieName)
		}
		w := httptest.NewRecorder()
		m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s := sess(t, r)
			_ = s.Start(r.Context())
			for _, name := range []string{"cart", "admin"} {
				bag, err := s.Bag(name)
				if err != nil {
					t.Errorf("bag %s registered through fx: %v", name, err)
					continue
				}
				if err := bag.Set(r.Context(), "k", 1); err != nil {
					t.Error(err)
				}
			}
		})).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
		if len(w.Result().Cookies()) != 1 || w.Result().Cookies()[0].Name != "shop" {
			t.Errorf("cookies %v", w.Result().Cookies())
		}
		app.RequireStop() // the collector goroutine stops (goleak checks in TestMain)
		// The app's own store is not closed by the session module.
		if _, err := b.store.Sub("still-open"); err != nil {
			t.Errorf("the application's store was closed by session.Module: %v", err)
		}
	})
}

func TestModuleZeroConfig(t *testing.T) {
	var m *Manager
	app := fxtest.New(t, Module, memstore.Module(memstore.Options{}), fx.Populate(&m))
	app.RequireStart()
	if m.cfg.timeout != DefaultInactivityTimeout || m.cfg.cookieName != DefaultCookieName {
		t.Errorf("zero config settings %+v", m.cfg)
	}
	app.RequireStop()
}

// TestModuleNoStore: session.Module alone has nowhere to keep sessions: fx
// start fails with ErrNoStore, whose message names the fix.
func TestModuleNoStore(t *testing.T) {
	app := fx.New(fx.NopLogger, Module, fx.Invoke(func(*Manager) {}))
	err := app.Err()
	if !errors.Is(err, ErrNoStore) {
		t.Fatalf("fx start without a store = %v, want ErrNoStore", err)
	}
	for _, want := range []string{"memstore.Module", "fxsession.Module"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not name %s: %v", want, err)
		}
	}
}

// TestModuleDefaultStore: DefaultStore's store is opened only when the app
// provides none, and closed when the app stops.
func TestModuleDefaultStore(t *testing.T) {
	var opened []*memstore.Store
	open := func() (cache.Store, error) {
		s := memstore.New(memstore.Options{})
		opened = append(opened, s)
		return s, nil
	}
	var m *Manager
	app := fxtest.New(t, Module, DefaultStore(open), fx.Populate(&m))
	app.RequireStart()
	if len(opened) != 1 {
		t.Fatalf("the default store was opened %d times, want once", len(opened))
	}
	ctx, s := m.NewContext(context.Background(), "")
	_ = s.Start(ctx)
	if err := s.Commit(ctx); err != nil {
		t.Fatalf("a session in the default store: %v", err)
	}
	app.RequireStop()
	if _, err := opened[0].Read(context.Background(), "k"); !errors.Is(err, cache.ErrClosed) {
		t.Errorf("the default store after the app stopped: %v, want ErrClosed", err)
	}

	// With a store of the app's own, the default is never opened.
	opened = nil
	app = fxtest.New(t, Module, DefaultStore(open), memstore.Module(memstore.Options{}), fx.Populate(&m))
	app.RequireStart()
	app.RequireStop()
	if len(opened) != 0 {
		t.Errorf("the default store was opened although the app provides one")
	}

	// A default that fails to open fails fx start.
	boom := errors.New("disk full")
	app2 := fx.New(fx.NopLogger, Module, DefaultStore(func() (cache.Store, error) { return nil, boom }), fx.Populate(&m))
	if err := app2.Err(); !errors.Is(err, boom) {
		t.Errorf("a failing default store = %v", err)
	}
	app3 := fx.New(fx.NopLogger, Module, DefaultStore(nil), fx.Populate(&m))
	if app3.Err() == nil {
		t.Error("DefaultStore(nil) was accepted")
	}
}

func TestRegisterBagInvalid(t *testing.T) {
	app := fx.New(fx.NopLogger, Module, memstore.Module(memstore.Options{}), RegisterBag("no spaces allowed"), fx.Invoke(func(*Manager) {}))
	if err := app.Err(); !errors.Is(err, cache.ErrInvalidKey) {
		t.Errorf("RegisterBag(invalid) = %v", err)
	}
}

func TestModuleInvalidConfig(t *testing.T) {
	app := fx.New(fx.NopLogger, Module, memstore.Module(memstore.Options{}), fx.Supply(Config{CookieName: "bad name"}), fx.Invoke(func(*Manager) {}))
	if err := app.Err(); !errors.Is(err, ErrConfig) {
		t.Errorf("an invalid Config = %v, want ErrConfig", err)
	}
}

func TestModuleRunsCollector(t *testing.T) {
	b := memoryBackend(t)
	logs := &logBuffer{}
	var m *Manager
	app := fxtest.New(t, Module,
		fx.Provide(func() cache.Store { return b.store }),
		fx.Supply(Config{GCInterval: 5 * time.Millisecond, Now: b.clock.Now,
			Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}),
		fx.Populate(&m))
	app.RequireStart()
	defer app.RequireStop()
	ctx, s := m.NewContext(context.Background(), "")
	_ = s.Start(ctx)
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	b.clock.Add(2 * time.Hour)
	want := "session=" + s.Ref() + " reason=expired"
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the collector started by the module did not remove the expired session; logs:\n%s", logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
