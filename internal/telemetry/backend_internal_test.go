package telemetry

import "testing"

func TestBackendName(t *testing.T) {
	for pkg, want := range map[string]string{
		"github.com/fxsession/fxsession/cache/memstore":    "memory",
		"github.com/fxsession/fxsession/cache/filestore":   "file",
		"github.com/fxsession/fxsession/cache/redisstore":  "redis",
		"github.com/fxsession/fxsession/cache/pgstore":     "postgres",
		"github.com/fxsession/fxsession/cache/sqlitestore": "sqlite",
		"example.com/app/mongostore":                       "mongo",
		"example.com/app/store":                            "store",
		"example.com/app/faults":                           "faults",
	} {
		if got := backendName(pkg); got != want {
			t.Errorf("backendName(%q) = %q, want %q", pkg, got, want)
		}
	}
}
