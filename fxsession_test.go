package fxsession_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"

	"github.com/fxsession/fxsession"
	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/session"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestModuleDefaultFileStore: fxsession.Module with no store of the app's own
// keeps sessions in ./var/sessions, where a restarted app finds them.
func TestModuleDefaultFileStore(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	var m *session.Manager
	app := fxtest.New(t, fxsession.Module, fx.Populate(&m))
	app.RequireStart()
	ctx, s := m.NewContext(context.Background(), "")
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	id, _ := s.ID(ctx)
	app.RequireStop()
	if fi, err := os.Stat(filepath.Join(dir, fxsession.DefaultDir)); err != nil || !fi.IsDir() {
		t.Fatalf("the default folder %s: %v", fxsession.DefaultDir, err)
	}

	// A second app (a restart) finds the session in var/sessions.
	app = fxtest.New(t, fxsession.Module, fx.Populate(&m))
	app.RequireStart()
	defer app.RequireStop()
	s2, err := m.Session(context.Background(), id)
	if err != nil {
		t.Fatalf("the session after a restart: %v", err)
	}
	var v string
	if err := s2.Get(context.Background(), "k", &v); err != nil || v != "v" {
		t.Errorf("value after a restart = %q, %v", v, err)
	}
}

// TestModuleAppStore: a store the app provides wins; the default folder is
// never created.
func TestModuleAppStore(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	var m *session.Manager
	app := fxtest.New(t, fxsession.Module, memstore.Module(memstore.Options{}), fx.Populate(&m))
	app.RequireStart()
	ctx, s := m.NewContext(context.Background(), "")
	_ = s.Start(ctx)
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	app.RequireStop()
	if _, err := os.Stat(filepath.Join(dir, fxsession.DefaultDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the default folder was created although the app provides a store: %v", err)
	}
}

// TestModuleDefaultFolderUnusable: when ./var/sessions cannot be made, fx start
// fails and says where.
func TestModuleDefaultFolderUnusable(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("var", []byte("a file where the folder should be"), 0o600); err != nil {
		t.Fatal(err)
	}
	app := fx.New(fx.NopLogger, fxsession.Module, fx.Invoke(func(*session.Manager) {}))
	if err := app.Err(); err == nil {
		t.Fatal("fx start succeeded without a usable default folder")
	} else if !strings.Contains(err.Error(), fxsession.DefaultDir) {
		t.Errorf("the error does not name the folder: %v", err)
	}
}
