package telemetry_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/internal/telemetry"
	"github.com/fxsession/fxsession/internal/telemetry/oteltest"
	"github.com/fxsession/fxsession/scope"
	"github.com/fxsession/fxsession/session"
)

// Counter and Gauge are session-scoped objects.
type Counter struct {
	N int `msgpack:"n"`
}

type Gauge struct {
	V int `msgpack:"v"`
}

// scopeRig is an fx app with session.Module and two session-scoped types,
// whose MeterProvider and TracerProvider come from the fx graph.
type scopeRig struct {
	t       *testing.T
	sdk     *oteltest.SDK
	store   cache.Store
	mgr     *session.Manager
	counter scope.Handle[*Counter]
	gauge   scope.Handle[*Gauge]
}

func newScopeRig(t *testing.T) *scopeRig {
	rig := &scopeRig{t: t, sdk: oteltest.New(t), store: memstore.New(memstore.Options{})}
	app := fxtest.New(t,
		fx.NopLogger,
		fx.Supply(fx.Annotate(rig.store, fx.As(new(cache.Store)))),
		fx.Supply(session.Config{GCInterval: session.Never, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}),
		fx.Provide(func() metric.MeterProvider { return rig.sdk.MeterProvider }),
		fx.Provide(func() trace.TracerProvider { return rig.sdk.TracerProvider }),
		session.Module,
		scope.Provide(func() *Counter { return &Counter{} }),
		scope.Provide(func() *Gauge { return &Gauge{} }, scope.Retries(1)),
		fx.Populate(&rig.mgr),
		fx.Invoke(func(c scope.Handle[*Counter], g scope.Handle[*Gauge]) { rig.counter, rig.gauge = c, g }),
	)
	app.RequireStart()
	t.Cleanup(func() { app.RequireStop(); _ = rig.store.Close() })
	return rig
}

// do runs a request with the session cookie id ("" for none).
func (rig *scopeRig) do(id string, fn func(ctx context.Context, s *session.Session) error) {
	rig.t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if id != "" {
		r.Header.Set("Cookie", session.DefaultCookieName+"="+id)
	}
	w := httptest.NewRecorder()
	rig.mgr.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		if err := fn(r.Context(), s); err != nil {
			rig.t.Errorf("handler: %v", err)
		}
	})).ServeHTTP(w, r)
}

// bump rewrites the stored fields of the session's objects as they are: their
// versions move, as when another request writes them.
func (rig *scopeRig) bump(ctx context.Context, ref string) {
	rig.t.Helper()
	ns, err := rig.store.Sub(session.DefaultNamespace)
	if err != nil {
		rig.t.Fatal(err)
	}
	rec, err := ns.Read(ctx, ref)
	if err != nil {
		rig.t.Fatal(err)
	}
	var w cache.Write
	for _, f := range rec.Fields {
		if strings.HasPrefix(f.Name, "e:") {
			w.Fields = append(w.Fields, cache.Set(f.Name, f.Value))
		}
	}
	if _, err := ns.Write(ctx, ref, w); err != nil {
		rig.t.Fatal(err)
	}
}

// TestScopeMetrics: objects decoded, Update conflicts and retries, by type,
// with the providers taken from the fx graph.
func TestScopeMetrics(t *testing.T) {
	rig := newScopeRig(t)
	counterType := attribute.String(telemetry.AttrType, "*telemetry_test.Counter")
	gaugeType := attribute.String(telemetry.AttrType, "*telemetry_test.Gauge")

	var id, ref string
	rig.do("", func(ctx context.Context, s *session.Session) error {
		if err := s.Start(ctx); err != nil {
			return err
		}
		if err := rig.counter.Update(ctx, func(c *Counter) error { c.N++; return nil }); err != nil {
			return err
		}
		if err := rig.gauge.Update(ctx, func(g *Gauge) error { g.V = 1; return nil }); err != nil {
			return err
		}
		id, _ = s.ID(ctx)
		ref = s.Ref()
		return nil
	})
	if n := rig.sdk.Sum(telemetry.MetricStarted); n != 1 {
		t.Fatalf("the fx graph's MeterProvider is not used: %s = %d", telemetry.MetricStarted, n)
	}
	if n := rig.sdk.Sum(telemetry.MetricDecoded); n != 0 {
		t.Fatalf("%s = %d before any decode", telemetry.MetricDecoded, n)
	}

	// Objects decoded: on the first Get of a request.
	rig.do(id, func(ctx context.Context, s *session.Session) error {
		for range 3 {
			c, err := rig.counter.Get(ctx)
			if err != nil || c.N != 1 {
				return errors.Join(err, errors.New("counter "+strconv.Itoa(c.N)))
			}
		}
		return nil
	})
	if n := rig.sdk.Sum(telemetry.MetricDecoded, counterType); n != 1 {
		t.Errorf("%s{Counter} = %d, want 1", telemetry.MetricDecoded, n)
	}

	// A conflict, retried: another writer moves the version during fn's
	// first run.
	runs := 0
	rig.do(id, func(ctx context.Context, s *session.Session) error {
		return rig.counter.Update(ctx, func(c *Counter) error {
			if runs++; runs == 1 {
				rig.bump(ctx, ref)
			}
			c.N++
			return nil
		})
	})
	if runs != 2 {
		t.Fatalf("fn ran %d times, want 2", runs)
	}
	if c, r := rig.sdk.Sum(telemetry.MetricConflicts, counterType), rig.sdk.Sum(telemetry.MetricRetries, counterType); c != 1 || r != 1 {
		t.Errorf("Counter: conflicts %d, retries %d; want 1, 1", c, r)
	}

	// A conflict that exhausts Retries(1): counted, not retried.
	rig.do(id, func(ctx context.Context, s *session.Session) error {
		err := rig.gauge.Update(ctx, func(g *Gauge) error { rig.bump(ctx, ref); g.V++; return nil })
		if !errors.Is(err, scope.ErrConflict) {
			return errors.Join(errors.New("want ErrConflict"), err)
		}
		return nil
	})
	if c, r := rig.sdk.Sum(telemetry.MetricConflicts, gaugeType), rig.sdk.Sum(telemetry.MetricRetries, gaugeType); c != 1 || r != 0 {
		t.Errorf("Gauge: conflicts %d, retries %d; want 1, 0", c, r)
	}
	// Every Update's read counted its bytes; every object decoded in Update is
	// counted too.
	if rig.sdk.Sum(telemetry.MetricRead) == 0 || rig.sdk.Sum(telemetry.MetricDecoded) < 3 {
		t.Errorf("read %d bytes, decoded %d objects", rig.sdk.Sum(telemetry.MetricRead), rig.sdk.Sum(telemetry.MetricDecoded))
	}
}

// TestPrometheusExporter: with OTel's Prometheus exporter as the
// MeterProvider's reader (what the demo's -otel does), GET /metrics serves
// the fxsession_… series under the names docs/operations.md gives.
func TestPrometheusExporter(t *testing.T) {
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer mp.Shutdown(context.Background())
	store := memstore.New(memstore.Options{})
	defer store.Close()
	m, err := session.New(store, session.Config{MeterProvider: mp, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	app := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		if r.URL.Path == "/login" {
			_ = s.Start(r.Context())
		}
		if r.URL.Path == "/logout" {
			_ = s.Destroy(r.Context(), "")
		}
	}))
	var cookie string
	for _, path := range []string{"/login", "/page", "/logout"} {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		if cookie != "" {
			r.Header.Set("Cookie", cookie)
		}
		w := httptest.NewRecorder()
		app.ServeHTTP(w, r)
		if c := w.Result().Cookies(); len(c) > 0 && c[0].MaxAge >= 0 {
			cookie = c[0].Name + "=" + c[0].Value
		}
	}

	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	t.Log(grepFxsession(text))
	for _, want := range []string{
		`fxsession_sessions_started_total{[^}]*} 1`,
		`fxsession_sessions_destroyed_total{[^}]*reason="logout"[^}]*} 1`,
		`fxsession_commits_total{[^}]*} 1`,
		`fxsession_store_written_bytes_total{[^}]*} [1-9]`,
		`fxsession_store_read_bytes_total{[^}]*} [1-9]`,
		`fxsession_store_duration_seconds_bucket{[^}]*backend="memory"[^}]*operation="write"[^}]*le="0.005"[^}]*} 1`,
		`fxsession_store_duration_seconds_count{[^}]*backend="memory"[^}]*operation="read"[^}]*} 1`,
		`# TYPE fxsession_store_duration_seconds histogram`,
	} {
		if !regexp.MustCompile(want).MatchString(text) {
			t.Errorf("no match for %s in:\n%s", want, grepFxsession(text))
		}
	}
}

func grepFxsession(text string) string {
	var out []string
	for line := range strings.Lines(text) {
		if strings.Contains(line, "fxsession_") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}
