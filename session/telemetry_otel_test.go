package session

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/internal/telemetry"
	"github.com/fxsession/fxsession/internal/telemetry/oteltest"
)

// otelRig is a manager on a memory store and a settable clock, with
// OpenTelemetry recording into an in-memory SDK, and a request span around
// every request, as an instrumented router (otelhttp) would open.
type otelRig struct {
	t    *testing.T
	sdk  *oteltest.SDK
	m    *Manager
	mu   sync.Mutex
	now  time.Time
	fail atomic.Bool // fail every store write
	// last is the span context of the last request's span.
	last trace.SpanContext
}

func newOTelRig(t *testing.T, cfg Config) *otelRig {
	t.Helper()
	rig := &otelRig{t: t, sdk: oteltest.New(t), now: time.Date(2040, 1, 2, 3, 4, 5, 0, time.UTC)}
	store := memstore.New(memstore.Options{Now: rig.clock})
	t.Cleanup(func() { _ = store.Close() })
	cfg.MeterProvider, cfg.TracerProvider = rig.sdk.MeterProvider, rig.sdk.TracerProvider
	cfg.Now = rig.clock
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := New(cachetest.Wrap(store, func(_ context.Context, c cachetest.Call) error {
		if rig.fail.Load() && c.Op == cachetest.OpWrite {
			return cache.Unavailable("test", errors.New("injected failure"))
		}
		return nil
	}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	rig.m = m
	return rig
}

func (rig *otelRig) clock() time.Time {
	rig.mu.Lock()
	defer rig.mu.Unlock()
	return rig.now
}

func (rig *otelRig) advance(d time.Duration) {
	rig.mu.Lock()
	rig.now = rig.now.Add(d)
	rig.mu.Unlock()
}

// do runs one request with the session cookie id ("" for none) inside a
// request span, and returns the response.
func (rig *otelRig) do(id string, fn func(ctx context.Context, s *Session) error) *httptest.ResponseRecorder {
	rig.t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if id != "" {
		r.Header.Set("Cookie", DefaultCookieName+"="+id)
	}
	w := httptest.NewRecorder()
	h := rig.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := FromContext(r.Context())
		if err := fn(r.Context(), s); err != nil {
			rig.t.Errorf("handler: %v", err)
		}
	}))
	ctx, span := rig.sdk.TracerProvider.Tracer("test").Start(r.Context(), "GET /")
	rig.last = span.SpanContext()
	h.ServeHTTP(w, r.WithContext(ctx))
	span.End()
	return w
}

// start starts a session in a request and returns its ID.
func (rig *otelRig) start(tags ...string) string {
	rig.t.Helper()
	var id string
	rig.do("", func(ctx context.Context, s *Session) error {
		if err := s.Start(ctx); err != nil {
			return err
		}
		for _, tag := range tags {
			if err := s.AddTag(ctx, tag); err != nil {
				return err
			}
		}
		var err error
		id, err = s.ID(ctx)
		return err
	})
	return id
}

func (rig *otelRig) want(name string, want int64, attrs ...attribute.KeyValue) {
	rig.t.Helper()
	if got := rig.sdk.Sum(name, attrs...); got != want {
		rig.t.Errorf("%s%v = %d, want %d", name, attrs, got, want)
	}
}

func reason(r string) attribute.KeyValue { return attribute.String(telemetry.AttrReason, r) }

// TestOTelSessionMetrics: each session metric moves as documented.
func TestOTelSessionMetrics(t *testing.T) {
	rig := newOTelRig(t, Config{RotateAfter: 10 * time.Minute, MaxSessionsPerUser: 1})
	ctx := context.Background()

	// Started, with its commit and the bytes it wrote.
	id := rig.start()
	rig.want(telemetry.MetricStarted, 1)
	rig.want(telemetry.MetricCommits, 1)
	rig.want(telemetry.MetricCommitsFailed, 0)
	written := rig.sdk.Sum(telemetry.MetricWritten)
	if written == 0 {
		t.Errorf("%s did not move", telemetry.MetricWritten)
	}

	// Resumed; a request that only reads neither commits nor writes.
	rig.do(id, func(ctx context.Context, s *Session) error {
		var v int
		if err := s.Get(ctx, "n", &v); !errors.Is(err, ErrNotFound) {
			return err
		}
		return nil
	})
	rig.want(telemetry.MetricResumed, 1)
	rig.want(telemetry.MetricCommits, 1)
	if rig.sdk.Sum(telemetry.MetricRead) == 0 {
		t.Errorf("%s did not move", telemetry.MetricRead)
	}
	// A cookie naming no session is not a resume.
	rig.do(id[:len(id)-1]+"x", func(ctx context.Context, s *Session) error {
		_, err := s.IsStarted(ctx)
		return err
	})
	rig.want(telemetry.MetricResumed, 1)

	// A write commits.
	rig.do(id, func(ctx context.Context, s *Session) error { return s.Put(ctx, "n", 1) })
	rig.want(telemetry.MetricResumed, 2)
	rig.want(telemetry.MetricCommits, 2)
	if rig.sdk.Sum(telemetry.MetricWritten) <= written {
		t.Errorf("%s did not move on a write", telemetry.MetricWritten)
	}

	// Renewed by RenewID, then by rotation.
	rig.do(id, func(ctx context.Context, s *Session) error {
		if err := s.RenewID(ctx); err != nil {
			return err
		}
		id, _ = s.ID(ctx)
		return nil
	})
	rig.want(telemetry.MetricRenewed, 1, reason(ReasonRenew))
	rig.advance(11 * time.Minute)
	rig.do(id, func(ctx context.Context, s *Session) error {
		_, err := s.IsStarted(ctx)
		id, _ = s.ID(ctx)
		return err
	})
	rig.want(telemetry.MetricRenewed, 1, reason(ReasonRotation))
	rig.want(telemetry.MetricRenewed, 2)

	// Destroyed: logout, admin, by tag, cap.
	rig.do(id, func(ctx context.Context, s *Session) error { return s.Destroy(ctx, "") })
	rig.want(telemetry.MetricDestroyed, 1, reason(ReasonLogout))
	other := rig.start()
	if ok, err := rig.m.Destroy(ctx, other, ""); !ok || err != nil {
		t.Fatalf("Destroy = %v, %v", ok, err)
	}
	rig.want(telemetry.MetricDestroyed, 1, reason(ReasonAdmin))
	rig.start("team")
	rig.start("team")
	if n, err := rig.m.DestroyByTag(ctx, "team", ""); n != 2 || err != nil {
		t.Fatalf("DestroyByTag = %v, %v", n, err)
	}
	rig.want(telemetry.MetricDestroyed, 2, reason(ReasonByTag))
	rig.start(rig.m.UserTag("alice"))
	rig.advance(time.Second)
	rig.start(rig.m.UserTag("alice")) // over the cap of 1: the first goes
	rig.want(telemetry.MetricDestroyed, 1, reason(ReasonCap))
	rig.want(telemetry.MetricDestroyed, 5)
	rig.want(telemetry.MetricStarted, 6)

	// Expired: collected after the inactivity timeout.
	rig.advance(DefaultInactivityTimeout + time.Minute)
	n, err := rig.m.CollectGarbage(ctx)
	if err != nil || n != 1 {
		t.Fatalf("CollectGarbage = %d, %v", n, err)
	}
	rig.want(telemetry.MetricExpired, 1)

	// A failed commit.
	rig.fail.Store(true)
	w := rig.do("", func(ctx context.Context, s *Session) error { return s.Start(ctx) })
	rig.fail.Store(false)
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("failed commit answered %d", w.Code)
	}
	rig.want(telemetry.MetricCommitsFailed, 1)
	rig.want(telemetry.MetricStarted, 6)

	// Store latency, by operation and backend (a wrapped memory store).
	backend := attribute.String(telemetry.AttrBackend, "memory")
	for _, op := range []string{"read", "write", "delete", "read_many", "delete_many", "tagged", "lock", "unlock", "collect_garbage"} {
		if rig.sdk.Count(telemetry.MetricDuration, attribute.String(telemetry.AttrOperation, op), backend) == 0 {
			t.Errorf("no %s timed", op)
		}
	}
}

// TestOTelSpans: the resume, the commit and the store calls have spans,
// children of the request's span (the store calls of a resume or commit:
// children of its span).
func TestOTelSpans(t *testing.T) {
	rig := newOTelRig(t, Config{})
	id := rig.start()
	start := rig.last
	rig.do(id, func(ctx context.Context, s *Session) error { return s.Put(ctx, "n", 1) })
	req := rig.last

	child := func(parent trace.SpanContext, name string) trace.SpanContext {
		t.Helper()
		for _, sp := range rig.sdk.Children(parent) {
			if sp.Name() == name {
				return sp.SpanContext()
			}
		}
		t.Fatalf("no span %s under %s", name, parent.SpanID())
		return trace.SpanContext{}
	}
	commit := child(start, telemetry.SpanCommit)
	child(commit, "fxsession.store.write")

	resume := child(req, telemetry.SpanResume)
	child(resume, "fxsession.store.read")
	commit = child(req, telemetry.SpanCommit)
	child(commit, "fxsession.store.write")
	for _, sp := range rig.sdk.Ended(telemetry.SpanResume) {
		if v, _ := oteltest.Attr(sp, telemetry.SpanAttrFound); !v.AsBool() {
			t.Errorf("resume span: found = %v", v.AsBool())
		}
	}

	// A failed commit's span is an error.
	rig.fail.Store(true)
	rig.do(id, func(ctx context.Context, s *Session) error { return s.Put(ctx, "n", 2) })
	rig.fail.Store(false)
	failed := false
	for _, sp := range rig.sdk.Children(rig.last) {
		if sp.Name() == telemetry.SpanCommit && sp.Status().Code == codes.Error {
			failed = true
		}
	}
	if !failed {
		t.Error("the failed commit's span is not an error")
	}

	// A detached session: children of the caller's span.
	ctx, span := rig.sdk.TracerProvider.Tracer("test").Start(context.Background(), "job")
	ctx, s := rig.m.NewContext(ctx, id)
	if err := s.Put(ctx, "n", 3); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	span.End()
	child(span.SpanContext(), telemetry.SpanResume)
	child(span.SpanContext(), telemetry.SpanCommit)
}

// TestOTelOffAddsNoAllocations: with OpenTelemetry off, a resume and a commit
// cost the allocations they cost before the instrumentation was added, and no
// store wrapper is in the way.
func TestOTelOffAddsNoAllocations(t *testing.T) {
	// The allocations of these requests with OpenTelemetry off: every
	// telemetry call is a nil check, so off must cost what the session code
	// costs without the instrumentation. Measured at 585dae7 before the
	// instrumentation (17 and 10, with and without -race); the request path
	// work of issue 13 brought them to 13 and 7 (0586be6, with and without
	// -race). If a change of the session code moves them, measure them again
	// with the instrumentation's calls removed, and update these numbers.
	const (
		beforeCommit = 13 // resume + Put + commit
		beforeRead   = 7  // resume + Get
	)
	m, id := otelAllocManager(t, Config{})
	if m.tel != nil {
		t.Fatal("OpenTelemetry on with no provider")
	}
	if _, ok := m.store.(interface{ Unwrap() cache.Store }); ok {
		t.Fatalf("the store is wrapped (%T) with OpenTelemetry off", m.store)
	}
	commit, read := otelAllocs(t, m, id)
	if commit > beforeCommit || read > beforeRead {
		t.Errorf("OpenTelemetry off: resume+commit %v allocations (before: %d), resume+read %v (before: %d)",
			commit, beforeCommit, read, beforeRead)
	}
	t.Logf("off: resume+commit %v allocs, resume+read %v allocs", commit, read)

	// For comparison: the same requests with the no-op providers (the
	// instrumentation runs, into nothing) and with the SDK.
	m, id = otelAllocManager(t, Config{MeterProvider: metricnoop.NewMeterProvider(), TracerProvider: tracenoop.NewTracerProvider()})
	commit, read = otelAllocs(t, m, id)
	t.Logf("no-op providers: resume+commit %v allocs, resume+read %v allocs", commit, read)
	sdk := oteltest.New(t)
	m, id = otelAllocManager(t, Config{MeterProvider: sdk.MeterProvider, TracerProvider: sdk.TracerProvider})
	commit, read = otelAllocs(t, m, id)
	t.Logf("SDK: resume+commit %v allocs, resume+read %v allocs", commit, read)
}

func otelAllocManager(t *testing.T, cfg Config) (*Manager, string) {
	t.Helper()
	s := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = s.Close() })
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := New(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, sess := m.NewContext(context.Background(), "")
	if err := sess.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sess.Put(ctx, "n", 42); err != nil {
		t.Fatal(err)
	}
	if err := sess.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	id, _ := sess.ID(ctx)
	return m, id
}

// otelAllocs measures the allocations of a request that resumes its session
// and writes a value (committed), and of one that resumes it and reads one.
func otelAllocs(t *testing.T, m *Manager, id string) (commit, read float64) {
	t.Helper()
	i := 0
	put := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := FromContext(r.Context())
		i++
		if err := s.Put(r.Context(), "n", i); err != nil {
			t.Fatal(err)
		}
	}))
	get := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := FromContext(r.Context())
		var v int
		if err := s.Get(r.Context(), "n", &v); err != nil {
			t.Fatal(err)
		}
	}))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Cookie", DefaultCookieName+"="+id)
	w := &benchWriter{h: http.Header{}}
	commit = testing.AllocsPerRun(200, func() { clear(w.h); put.ServeHTTP(w, r) })
	read = testing.AllocsPerRun(200, func() { clear(w.h); get.ServeHTTP(w, r) })
	return commit, read
}
