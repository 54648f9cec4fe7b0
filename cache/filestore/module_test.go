package filestore_test

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/filestore"
)

func TestModule(t *testing.T) {
	var b cache.Backend
	app := fxtest.New(t,
		filestore.Module(filestore.Options{Dir: t.TempDir(), Namespace: "app"}),
		fx.Populate(&b),
	)
	app.RequireStart()
	if b.Namespace() != "app" {
		t.Fatalf("namespace %q", b.Namespace())
	}
	if _, err := b.Set(t.Context(), cache.Item{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	app.RequireStop()
	if _, err := b.Get(context.Background(), "k"); !errors.Is(err, cache.ErrClosed) {
		t.Fatalf("Get after the app stopped: %v, want ErrClosed", err)
	}
}

func TestModuleBadOptions(t *testing.T) {
	app := fx.New(fx.NopLogger, filestore.Module(filestore.Options{}), fx.Invoke(func(cache.Backend) {}))
	if app.Err() == nil {
		t.Fatal("fx app with a file store without Dir started")
	}
}
