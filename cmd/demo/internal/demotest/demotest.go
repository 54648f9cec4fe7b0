// Package demotest holds what the demo's tests share: the stores the demo can
// run on, each on a real server or file of the test's own.
package demotest

import (
	"path/filepath"
	"testing"

	"github.com/fxsession/fxsession/cmd/demo/internal/app"
	"github.com/fxsession/fxsession/internal/testserver"
)

// Stores are the demo's -store choices by name, each a function that starts
// what the store needs for the test (a redis-server, a Postgres, a temp folder)
// and returns the demo's configuration for it; the test's cleanup stops it.
func Stores() map[string]func(t *testing.T) *app.Config {
	return map[string]func(t *testing.T) *app.Config{
		"memory": func(t *testing.T) *app.Config { return &app.Config{Store: "memory"} },
		"file":   func(t *testing.T) *app.Config { return &app.Config{Store: "file"} },
		"redis": func(t *testing.T) *app.Config {
			return &app.Config{Store: "redis", RedisURL: testserver.StartRedis(t).URL()}
		},
		"sqlite": func(t *testing.T) *app.Config {
			return &app.Config{Store: "sqlite", DSN: filepath.Join(t.TempDir(), "sessions.db")}
		},
		"postgres": func(t *testing.T) *app.Config {
			return &app.Config{Store: "postgres", DSN: testserver.StartPostgres(t).DSN()}
		},
	}
}
