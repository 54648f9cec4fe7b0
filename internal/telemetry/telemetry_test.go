package telemetry_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/goleak"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/filestore"
	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/internal/telemetry"
	"github.com/fxsession/fxsession/internal/telemetry/oteltest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestOffIsNil: without providers there is no Telemetry, and the store is not
// wrapped.
func TestOffIsNil(t *testing.T) {
	tel, err := telemetry.New(nil, nil)
	if err != nil || tel != nil {
		t.Fatalf("New(nil, nil) = %v, %v; want nil, nil", tel, err)
	}
	s := memstore.New(memstore.Options{})
	defer s.Close()
	if got := tel.WrapStore(s); got != cache.Store(s) {
		t.Fatalf("a nil Telemetry wrapped the store: %T", got)
	}
}

// TestOffCostsNothing: every call on a nil Telemetry allocates nothing and
// hands the context back unchanged.
func TestOffCostsNothing(t *testing.T) {
	var tel *telemetry.Telemetry
	ctx := context.Background()
	typ := reflect.TypeFor[int]()
	fail := errors.New("failed")
	allocs := testing.AllocsPerRun(1000, func() {
		c, span := tel.Start(ctx, telemetry.SpanResume)
		if c != ctx {
			t.Fatal("Start wrapped the context")
		}
		tel.SessionStarted(c)
		tel.SessionResumed(c)
		tel.SessionRenewed(c, "renew")
		tel.SessionsDestroyed(c, "logout", 1)
		tel.SessionsExpired(c, 3)
		tel.Committed(c, fail)
		tel.UpdateConflict(c, typ, true)
		tel.ObjectDecoded(c, typ)
		span.SetFound(true)
		span.End(fail)
	})
	if allocs != 0 {
		t.Fatalf("OpenTelemetry off: %v allocations per run, want 0", allocs)
	}
}

// TestNoopProviders: the API's no-op providers work (what an app gets from
// otel.GetMeterProvider() without an SDK).
func TestNoopProviders(t *testing.T) {
	tel, err := telemetry.New(metricnoop.NewMeterProvider(), tracenoop.NewTracerProvider())
	if err != nil || tel == nil {
		t.Fatalf("New(noop, noop) = %v, %v", tel, err)
	}
	ctx, span := tel.Start(context.Background(), telemetry.SpanCommit)
	tel.Committed(ctx, nil)
	span.End(nil)
	s := memstore.New(memstore.Options{})
	defer s.Close()
	w := tel.WrapStore(s)
	if _, err := w.Write(ctx, "k", cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("f", []byte("v"))}}); err != nil {
		t.Fatal(err)
	}
}

// TestOnlyOneProvider: metrics without traces and traces without metrics.
func TestOnlyOneProvider(t *testing.T) {
	sdk := oteltest.New(t)
	s := memstore.New(memstore.Options{})
	defer s.Close()
	ctx := context.Background()

	tel, err := telemetry.New(sdk.MeterProvider, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, span := tel.Start(ctx, telemetry.SpanCommit)
	if c != ctx {
		t.Error("metrics only: Start wrapped the context")
	}
	span.End(nil)
	if _, err := tel.WrapStore(s).Read(ctx, "absent"); !errors.Is(err, cache.ErrNotFound) {
		t.Fatal(err)
	}
	if n := sdk.Count(telemetry.MetricDuration, attribute.String(telemetry.AttrOperation, "read")); n != 1 {
		t.Errorf("metrics only: %d reads timed, want 1", n)
	}
	if n := len(sdk.Spans.Ended()); n != 0 {
		t.Errorf("metrics only: %d spans", n)
	}

	tel, err = telemetry.New(nil, sdk.TracerProvider)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tel.WrapStore(s).Read(ctx, "absent"); !errors.Is(err, cache.ErrNotFound) {
		t.Fatal(err)
	}
	tel.SessionStarted(ctx) // goes nowhere
	if n := len(sdk.Ended("fxsession.store.read")); n != 1 {
		t.Errorf("traces only: %d read spans, want 1", n)
	}
	if n := sdk.Count(telemetry.MetricDuration); n != 1 {
		t.Errorf("traces only: the histogram moved to %d", n)
	}
}

// TestStoreWrapper: every store call is timed by operation and backend and
// gets a span, a child of the caller's; bytes read and written are counted;
// expected outcomes (not found, conflict, locked) are not span errors.
func TestStoreWrapper(t *testing.T) {
	sdk := oteltest.New(t)
	tel, err := telemetry.New(sdk.MeterProvider, sdk.TracerProvider)
	if err != nil {
		t.Fatal(err)
	}
	root := memstore.New(memstore.Options{})
	defer root.Close()
	s, err := tel.WrapStore(root).Sub("session")
	if err != nil {
		t.Fatal(err)
	}
	if s.Namespace() != root.Namespace()+".session" {
		t.Fatalf("namespace %q", s.Namespace())
	}
	ctx, parent := sdk.TracerProvider.Tracer("test").Start(context.Background(), "request")

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err = s.Write(ctx, "a", cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("x", []byte("12345")), cache.Set("y", []byte("678"))}, AddTags: []string{"t"}})
	must(err)
	rec, err := s.Read(ctx, "a")
	must(err)
	_, err = s.ReadMany(ctx, []string{"a", "b"}, "x")
	must(err)
	if _, err := s.Read(ctx, "b"); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Read of an absent record: %v", err)
	}
	f, _ := rec.Field("x")
	if _, err := s.Write(ctx, "a", cache.Write{Fields: []cache.FieldWrite{cache.SetIf("x", []byte("z"), f.Version+1000)}}); !errors.Is(err, cache.ErrConflict) {
		t.Fatalf("conflicting write: %v", err)
	}
	_, err = s.Write(ctx, "a", cache.Write{Fields: []cache.FieldWrite{cache.Remove("y"), cache.Set("z", []byte("ab"))}})
	must(err)
	for _, err := range s.Keys(ctx) {
		must(err)
	}
	for _, err := range s.Tagged(ctx, "t") {
		must(err)
	}
	token, err := s.Lock(ctx, "l", time.Minute)
	must(err)
	if _, err := s.Lock(ctx, "l", time.Minute); !errors.Is(err, cache.ErrLocked) {
		t.Fatalf("second Lock: %v", err)
	}
	_, err = s.Unlock(ctx, "l", token)
	must(err)
	_, err = s.CollectGarbage(ctx, cache.GCOptions{})
	must(err)
	_, err = s.Delete(ctx, "a")
	must(err)
	_, err = s.DeleteMany(ctx, []string{"a", "b"})
	must(err)
	must(s.Flush(ctx))
	parent.End()

	backend := attribute.String(telemetry.AttrBackend, "memory")
	for op, want := range map[string]uint64{
		"read": 2, "read_many": 1, "write": 3, "delete": 1, "delete_many": 1, "keys": 1,
		"tagged": 1, "flush": 1, "collect_garbage": 1, "lock": 2, "unlock": 1,
	} {
		if n := sdk.Count(telemetry.MetricDuration, attribute.String(telemetry.AttrOperation, op), backend); n != want {
			t.Errorf("%s: %d timed, want %d", op, n, want)
		}
		spans := sdk.Ended(telemetry.SpanStorePrefix + op)
		if uint64(len(spans)) != want {
			t.Errorf("%s: %d spans, want %d", op, len(spans), want)
		}
		for _, sp := range spans {
			if sp.Parent().SpanID() != parent.SpanContext().SpanID() {
				t.Errorf("%s: span not a child of the caller's", op)
			}
			if v, _ := oteltest.Attr(sp, telemetry.SpanAttrBackend); v.AsString() != "memory" {
				t.Errorf("%s: span backend %q", op, v.AsString())
			}
			if sp.Status().Code == codes.Error {
				t.Errorf("%s: span status %v", op, sp.Status())
			}
		}
	}
	results := map[string]int{}
	for _, sp := range sdk.Spans.Ended() {
		if v, ok := oteltest.Attr(sp, telemetry.SpanAttrResult); ok {
			results[sp.Name()+" "+v.AsString()]++
		}
	}
	want := map[string]int{"fxsession.store.read not_found": 1, "fxsession.store.write conflict": 1, "fxsession.store.lock locked": 1}
	if !reflect.DeepEqual(results, want) {
		t.Errorf("span results %v, want %v", results, want)
	}
	// Written: 5+3 at creation, 2 later (the conflicting write wrote nothing).
	// Read: 8 by Read, 5 by ReadMany.
	if n := sdk.Sum(telemetry.MetricWritten); n != 10 {
		t.Errorf("%s = %d, want 10", telemetry.MetricWritten, n)
	}
	if n := sdk.Sum(telemetry.MetricRead); n != 13 {
		t.Errorf("%s = %d, want 13", telemetry.MetricRead, n)
	}
}

// TestStoreErrorSpan: a store failure sets the span's status to Error.
func TestStoreErrorSpan(t *testing.T) {
	sdk := oteltest.New(t)
	tel, err := telemetry.New(sdk.MeterProvider, sdk.TracerProvider)
	if err != nil {
		t.Fatal(err)
	}
	root := memstore.New(memstore.Options{})
	defer root.Close()
	down := errors.New("down")
	s := tel.WrapStore(cachetest.Wrap(root, func(context.Context, cachetest.Call) error {
		return cache.Unavailable("test", down)
	}))
	if _, err := s.Read(context.Background(), "k"); !errors.Is(err, down) {
		t.Fatalf("Read = %v", err)
	}
	spans := sdk.Ended("fxsession.store.read")
	if len(spans) != 1 || spans[0].Status().Code != codes.Error {
		t.Fatalf("spans %v", spans)
	}
	if n := sdk.Count(telemetry.MetricDuration, attribute.String(telemetry.AttrBackend, "memory")); n != 1 {
		t.Errorf("a wrapped memory store is timed as memory: %d", n)
	}
}

// TestIterationStopsEarly: a caller that stops iterating ends the span and
// the measure.
func TestIterationStopsEarly(t *testing.T) {
	sdk := oteltest.New(t)
	tel, _ := telemetry.New(sdk.MeterProvider, sdk.TracerProvider)
	root := memstore.New(memstore.Options{})
	defer root.Close()
	s := tel.WrapStore(root)
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c"} {
		if _, err := s.Write(ctx, k, cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("f", nil)}}); err != nil {
			t.Fatal(err)
		}
	}
	for range s.Keys(ctx) {
		break
	}
	if n := len(sdk.Ended("fxsession.store.keys")); n != 1 {
		t.Fatalf("%d keys spans", n)
	}
	if n := sdk.Count(telemetry.MetricDuration, attribute.String(telemetry.AttrOperation, "keys")); n != 1 {
		t.Fatalf("%d keys timed", n)
	}
}

// TestConformance: the wrapped store is still a conforming cache.Store.
func TestConformance(t *testing.T) {
	sdk := oteltest.New(t)
	tel, err := telemetry.New(sdk.MeterProvider, sdk.TracerProvider)
	if err != nil {
		t.Fatal(err)
	}
	world := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = world.Close() })
	cachetest.Run(t, "instrumented-memory", func(tb testing.TB, ns string) cache.Store {
		s, err := world.Namespaced(ns)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = s.Close() })
		return tel.WrapStore(s)
	}, cachetest.Options{Parallel: true, Many: 500})
}

// TestBackend names the backends.
func TestBackend(t *testing.T) {
	mem := memstore.New(memstore.Options{})
	defer mem.Close()
	file, err := filestore.Open(filestore.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	sub, err := file.Sub("session")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		s    cache.Store
		want string
	}{
		{mem, "memory"},
		{file, "file"},
		{sub, "file"},
		{cachetest.Wrap(mem, nil), "memory"},
		{otherStore{}, "telemetry_test"},
	} {
		if got := telemetry.Backend(tc.s); got != tc.want {
			t.Errorf("Backend(%T) = %q, want %q", tc.s, got, tc.want)
		}
	}
}

type otherStore struct{ cache.Store }
