package app

import (
	"context"
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cmd/demo/internal/web"
	"github.com/fxsession/fxsession/session"
)

// ServiceName names the demo in its telemetry (the service.name resource
// attribute: target_info's service_name in /metrics).
const ServiceName = "fxsession-demo"

// telemetry is the demo's OpenTelemetry: with -otel, a MeterProvider whose
// reader is the Prometheus exporter, collected into the registry /metrics
// serves, and a TracerProvider whose spans go to the debug log. Without it
// the providers are nil, so that the session library's instrumentation is
// off (and free), and /metrics serves the empty registry.
type telemetry struct {
	registry *prometheus.Registry
	meter    *sdkmetric.MeterProvider // nil without -otel
	tracer   *sdktrace.TracerProvider // nil without -otel
}

// newTelemetry builds the telemetry of c; the providers flush and stop with
// the app. The registry is the app's own (never the global one), so that
// several apps in one process do not collide.
func newTelemetry(c *Config, logger *slog.Logger, lc fx.Lifecycle) (*telemetry, error) {
	t := &telemetry{registry: prometheus.NewRegistry()}
	if !c.OTel {
		return t, nil
	}
	res := resource.NewSchemaless(attribute.String("service.name", ServiceName))
	exporter, err := otelprom.New(otelprom.WithRegisterer(t.registry))
	if err != nil {
		return nil, err
	}
	t.meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter), sdkmetric.WithResource(res))
	t.tracer = sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(spanLog{logger.With("component", "otel")}),
		sdktrace.WithResource(res),
	)
	lc.Append(fx.StopHook(func(ctx context.Context) error {
		return errors.Join(t.tracer.Shutdown(ctx), t.meter.Shutdown(ctx))
	}))
	return t, nil
}

// sessionConfig adds the telemetry's providers to cfg (none without -otel:
// a nil provider in an interface field would not be nil).
func (t *telemetry) sessionConfig(cfg session.Config) session.Config {
	if t.meter != nil {
		cfg.MeterProvider = t.meter
	}
	if t.tracer != nil {
		cfg.TracerProvider = t.tracer
	}
	return cfg
}

// web is what the web server needs of the telemetry.
func (t *telemetry) web() *web.Telemetry {
	wt := &web.Telemetry{Metrics: promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{})}
	if t.tracer != nil {
		wt.Tracer = t.tracer
	}
	return wt
}

// spanLog exports finished spans to the log at debug level: the demo's trace
// viewer (run with -dev -otel).
type spanLog struct{ log *slog.Logger }

func (l spanLog) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if !l.log.Enabled(ctx, slog.LevelDebug) {
		return nil
	}
	for _, s := range spans {
		attrs := []any{
			"span", s.Name(),
			"trace", s.SpanContext().TraceID().String(),
			"id", s.SpanContext().SpanID().String(),
			"duration", s.EndTime().Sub(s.StartTime()),
		}
		if p := s.Parent(); p.IsValid() {
			attrs = append(attrs, "parent", p.SpanID().String())
		}
		if st := s.Status(); st.Code != 0 {
			attrs = append(attrs, "status", st.Code.String(), "error", st.Description)
		}
		l.log.DebugContext(ctx, "span", attrs...)
	}
	return nil
}

func (spanLog) Shutdown(context.Context) error { return nil }

// eventLog logs the sessions' lifecycle events at debug level (registered
// with session.Listen when the log shows debug messages, i.e. with -dev).
func eventLog(logger *slog.Logger) session.Listener {
	return func(ctx context.Context, e session.Event) {
		logger.DebugContext(ctx, "session "+e.Kind.String(),
			"session", e.Ref, "reason", e.Reason, "tags", e.Metadata.Tags, "device", e.Metadata.Device)
	}
}
