package session

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/fxsession/fxsession/cache/memstore"
)

// BenchmarkOTel runs the request-path benchmarks of bench_test.go with
// OpenTelemetry off (Config's providers nil: the default), with the API's
// no-op providers (the instrumentation runs, into nothing) and with the SDK
// (metrics kept by a reader, spans handed to an exporter that drops them).
// "off" is the cost of the instrumentation when it is not wanted: compare it
// with the plain benchmarks (BenchmarkNoCookie, …), and with the same
// benchmarks of a build without the instrumentation:
//
//	go test -run '^$' -bench 'OTel/off' -count 10 ./session/
func BenchmarkOTel(b *testing.B) {
	for _, mode := range []string{"off", "noop", "sdk"} {
		b.Run(mode, func(b *testing.B) {
			b.Run("NoCookie", func(b *testing.B) {
				m := otelBenchManager(b, mode)
				runBench(b, m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(okBody) })), "")
			})
			b.Run("CookieUnused", func(b *testing.B) {
				m := otelBenchManager(b, mode)
				id := benchSession(b, m)
				runBench(b, m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(okBody) })), id)
			})
			b.Run("ReadSmallValue", func(b *testing.B) {
				m := otelBenchManager(b, mode)
				id := benchSession(b, m)
				runBench(b, m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					s, _ := FromContext(r.Context())
					var n int
					if err := s.Get(r.Context(), "n", &n); err != nil || n != 42 {
						b.Fatalf("Get = %d, %v", n, err)
					}
					_, _ = w.Write(okBody)
				})), id)
			})
			b.Run("WriteSmallValue", func(b *testing.B) {
				m := otelBenchManager(b, mode)
				id := benchSession(b, m)
				i := 0
				runBench(b, m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					s, _ := FromContext(r.Context())
					i++
					if err := s.Put(r.Context(), "n", i); err != nil {
						b.Fatal(err)
					}
					_, _ = w.Write(okBody)
				})), id)
			})
		})
	}
}

// otelBenchManager is benchManager with OpenTelemetry off, on no-op
// providers, or on the SDK.
func otelBenchManager(b *testing.B, mode string) *Manager {
	b.Helper()
	cfg := Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	switch mode {
	case "noop":
		cfg.MeterProvider, cfg.TracerProvider = metricnoop.NewMeterProvider(), tracenoop.NewTracerProvider()
	case "sdk":
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter()))
		b.Cleanup(func() {
			_ = mp.Shutdown(context.Background())
			_ = tp.Shutdown(context.Background())
		})
		cfg.MeterProvider, cfg.TracerProvider = mp, tp
	}
	s := memstore.New(memstore.Options{})
	b.Cleanup(func() { _ = s.Close() })
	m, err := New(s, cfg)
	if err != nil {
		b.Fatal(err)
	}
	return m
}
