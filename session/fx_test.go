package session

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/memstore"
)

func TestModule(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b cache.Backend) {
		var m *Manager
		app := fxtest.New(t,
			Module,
			fx.Supply(fx.Annotate(b, fx.As(new(cache.Backend)))),
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
	})
}

func TestModuleZeroConfig(t *testing.T) {
	s := memstore.New(memstore.Options{JanitorInterval: -1})
	defer s.Close()
	var m *Manager
	app := fxtest.New(t, Module, fx.Provide(func() cache.Backend { return s }), fx.Populate(&m))
	app.RequireStart()
	if m.cfg.timeout != DefaultInactivityTimeout || m.cfg.cookieName != DefaultCookieName {
		t.Errorf("zero config settings %+v", m.cfg)
	}
	app.RequireStop()
}

func TestRegisterBagInvalid(t *testing.T) {
	app := fx.New(fx.NopLogger, Module, RegisterBag("no spaces allowed"), fx.Invoke(func(*Manager) {}))
	if err := app.Err(); !errors.Is(err, cache.ErrInvalidKey) {
		t.Errorf("RegisterBag(invalid) = %v", err)
	}
}

func TestModuleRunsCollector(t *testing.T) {
	b := backends()[0].open(t)
	c := newClock()
	var m *Manager
	app := fxtest.New(t, Module,
		fx.Provide(func() cache.Backend { return b }),
		fx.Supply(Config{GCInterval: 5 * time.Millisecond, Now: c.Now}),
		fx.Populate(&m))
	app.RequireStart()
	defer app.RequireStop()
	ctx, s := m.NewContext(context.Background(), "")
	_ = s.Start(ctx)
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	c.Add(2 * time.Hour)
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := 0
		for range m.All(context.Background()) {
			n++
		}
		raw := 0
		for range m.meta.All(context.Background()) {
			raw++
		}
		if raw == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the collector started by the module did not remove the expired session")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestModuleDefaultFileStore(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	var m *Manager
	app := fxtest.New(t, Module, fx.Populate(&m))
	app.RequireStart()
	ctx, s := m.NewContext(context.Background(), "")
	_ = s.Start(ctx)
	_ = s.Put(ctx, "k", "v")
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	id, _ := s.ID(ctx)
	app.RequireStop()

	// A second app (a restart) finds the session in var/sessions.
	app = fxtest.New(t, Module, fx.Populate(&m))
	app.RequireStart()
	defer app.RequireStop()
	s2, err := m.Session(context.Background(), id)
	if err != nil {
		t.Fatalf("session after a restart: %v", err)
	}
	var v string
	if err := s2.Get(context.Background(), "k", &v); err != nil || v != "v" {
		t.Errorf("value after a restart = %q, %v", v, err)
	}
	if _, err := os.Stat(filepath.Join(dir, DefaultDir)); err != nil {
		t.Errorf("default folder: %v", err)
	}
}
