// Package oteltest gives fxsession's tests an OpenTelemetry SDK to record
// into: a MeterProvider read by a ManualReader and a TracerProvider whose
// ended spans are kept in memory, with helpers to read a counter, a histogram
// and the spans back.
package oteltest

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// SDK is a metric and a trace SDK recording in memory.
type SDK struct {
	Reader         *sdkmetric.ManualReader
	MeterProvider  *sdkmetric.MeterProvider
	Spans          *tracetest.SpanRecorder
	TracerProvider *sdktrace.TracerProvider
	tb             testing.TB
}

// New returns an SDK shut down when the test ends.
func New(tb testing.TB) *SDK {
	tb.Helper()
	s := &SDK{tb: tb, Reader: sdkmetric.NewManualReader(), Spans: tracetest.NewSpanRecorder()}
	s.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(s.Reader))
	s.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(s.Spans))
	tb.Cleanup(func() {
		_ = s.MeterProvider.Shutdown(context.Background())
		_ = s.TracerProvider.Shutdown(context.Background())
	})
	return s
}

// Collect reads the metrics recorded so far.
func (s *SDK) Collect() metricdata.ResourceMetrics {
	s.tb.Helper()
	var rm metricdata.ResourceMetrics
	if err := s.Reader.Collect(context.Background(), &rm); err != nil {
		s.tb.Fatalf("collecting metrics: %v", err)
	}
	return rm
}

// Find returns the metric called name, if it was recorded.
func Find(rm metricdata.ResourceMetrics, name string) (metricdata.Metrics, bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m, true
			}
		}
	}
	return metricdata.Metrics{}, false
}

// has reports whether set holds every attribute of want.
func has(set attribute.Set, want []attribute.KeyValue) bool {
	for _, kv := range want {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// Sum is the total of the int64 counter called name over the data points that
// have the attributes want (all of them when none): 0 when not recorded.
func (s *SDK) Sum(name string, want ...attribute.KeyValue) int64 {
	s.tb.Helper()
	m, ok := Find(s.Collect(), name)
	if !ok {
		return 0
	}
	sum, ok := m.Data.(metricdata.Sum[int64])
	if !ok {
		s.tb.Fatalf("%s is a %T, not an int64 sum", name, m.Data)
	}
	var n int64
	for _, dp := range sum.DataPoints {
		if has(dp.Attributes, want) {
			n += dp.Value
		}
	}
	return n
}

// Count is the number of measurements of the float64 histogram called name
// over the data points that have the attributes want.
func (s *SDK) Count(name string, want ...attribute.KeyValue) uint64 {
	s.tb.Helper()
	m, ok := Find(s.Collect(), name)
	if !ok {
		return 0
	}
	h, ok := m.Data.(metricdata.Histogram[float64])
	if !ok {
		s.tb.Fatalf("%s is a %T, not a float64 histogram", name, m.Data)
	}
	var n uint64
	for _, dp := range h.DataPoints {
		if has(dp.Attributes, want) {
			n += dp.Count
		}
	}
	return n
}

// Ended returns the ended spans called name.
func (s *SDK) Ended(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, sp := range s.Spans.Ended() {
		if sp.Name() == name {
			out = append(out, sp)
		}
	}
	return out
}

// Children returns the ended spans whose parent is parent.
func (s *SDK) Children(parent trace.SpanContext) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, sp := range s.Spans.Ended() {
		if sp.Parent().SpanID() == parent.SpanID() && sp.Parent().TraceID() == parent.TraceID() {
			out = append(out, sp)
		}
	}
	return out
}

// Attr returns the value of the span attribute key.
func Attr(sp sdktrace.ReadOnlySpan, key string) (attribute.Value, bool) {
	for _, kv := range sp.Attributes() {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}
