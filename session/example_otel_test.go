package session_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/session"
)

// OpenTelemetry is off until Config gets a MeterProvider or a TracerProvider
// (with session.Module, the app can instead provide a metric.MeterProvider and
// a trace.TracerProvider to the fx graph). Here an SDK reads the metrics by
// hand; an app would give its MeterProvider a Prometheus exporter
// (go.opentelemetry.io/otel/exporters/prometheus) or an OTLP one, and its
// TracerProvider a span exporter.
func ExampleConfig_openTelemetry() {
	reader := sdkmetric.NewManualReader()
	meters := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	spans := tracetest.NewSpanRecorder()
	tracers := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer meters.Shutdown(context.Background())
	defer tracers.Shutdown(context.Background())

	store := memstore.New(memstore.Options{})
	defer store.Close()
	m, err := session.New(store, session.Config{MeterProvider: meters, TracerProvider: tracers})
	if err != nil {
		panic(err)
	}
	defer m.Close()

	// Two requests: a login starts a session, the next one resumes it.
	app := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		if r.URL.Path == "/login" {
			_ = s.Start(r.Context())
			_ = s.Put(r.Context(), "user", "alice")
			return
		}
		var user string
		_ = s.Get(r.Context(), "user", &user)
	}))
	w := httptest.NewRecorder()
	app.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/login", nil))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(w.Result().Cookies()[0])
	app.ServeHTTP(httptest.NewRecorder(), r)

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		panic(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, metric := range sm.Metrics {
			if sum, ok := metric.Data.(metricdata.Sum[int64]); ok && metric.Unit != "By" {
				fmt.Println(metric.Name, sum.DataPoints[0].Value)
			}
		}
	}
	for _, span := range spans.Ended() {
		fmt.Println("span", span.Name())
	}
	// Output:
	// fxsession.sessions.started 1
	// fxsession.sessions.resumed 1
	// fxsession.sessions.expired 0
	// fxsession.commits 1
	// fxsession.commits.failed 0
	// span fxsession.store.write
	// span fxsession.session.commit
	// span fxsession.store.read
	// span fxsession.session.resume
}
