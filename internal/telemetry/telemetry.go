// Package telemetry is fxsession's OpenTelemetry instrumentation, kept in one
// place: the metrics and spans of packages session and scope, and a
// [cache.Store] wrapper that times every store call.
//
// A *Telemetry is made by [New] from session.Config's MeterProvider and
// TracerProvider. Both nil (the default) give a nil *Telemetry, and every
// method of a nil *Telemetry is a nil check and nothing else: no allocation, no
// clock reading, the context passed through unchanged. The small exported
// methods are written to be inlined into their callers, so that check is all a
// request pays when OpenTelemetry is off; the work is in unexported methods
// called only when it is on.
//
// The names of the metrics, their attributes and the spans are the constants
// below; docs/operations.md ("Metrics and traces") lists them with the
// Prometheus names and the queries a dashboard needs.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of fxsession's meter and tracer.
const ScopeName = "github.com/fxsession/fxsession"

// The metrics. Counters are monotonic; the Prometheus exporter appends the unit
// and "_total" (fxsession.sessions.started is fxsession_sessions_started_total,
// fxsession.store.read is fxsession_store_read_bytes_total,
// fxsession.store.duration is fxsession_store_duration_seconds).
const (
	// MetricStarted counts sessions created in the store.
	MetricStarted = "fxsession.sessions.started"
	// MetricResumed counts sessions resumed from their ID (a request's cookie
	// or a detached session's ID) and found alive.
	MetricResumed = "fxsession.sessions.resumed"
	// MetricRenewed counts committed ID renewals, by AttrReason ("renew",
	// "rotation").
	MetricRenewed = "fxsession.sessions.renewed"
	// MetricDestroyed counts sessions destroyed, by AttrReason ("logout",
	// "by-tag", "admin", "cap", or the application's own).
	MetricDestroyed = "fxsession.sessions.destroyed"
	// MetricExpired counts expired sessions removed by the collector (each
	// counted once, by the process that removed it).
	MetricExpired = "fxsession.sessions.expired"
	// MetricCommits counts the commits that wrote a session's record (one store
	// write each, its conflict retries included), failed ones included.
	MetricCommits = "fxsession.commits"
	// MetricCommitsFailed counts the commits of MetricCommits that failed.
	MetricCommitsFailed = "fxsession.commits.failed"
	// MetricConflicts counts the compare-and-set writes of scope's Handle.Update
	// that met a concurrent writer, by AttrType.
	MetricConflicts = "fxsession.update.conflicts"
	// MetricRetries counts the attempts of Handle.Update after a conflict, by
	// AttrType: conflicts minus retries are the Updates that gave up
	// (scope.ErrConflict).
	MetricRetries = "fxsession.update.retries"
	// MetricDecoded counts the session-scoped objects decoded from the session,
	// by AttrType.
	MetricDecoded = "fxsession.objects.decoded"
	// MetricRead counts the bytes of field values read from session records.
	MetricRead = "fxsession.store.read"
	// MetricWritten counts the bytes of field values written to session records.
	MetricWritten = "fxsession.store.written"
	// MetricDuration is the latency of store calls, in seconds, by AttrOperation
	// and AttrBackend.
	MetricDuration = "fxsession.store.duration"
)

// The metrics' attributes.
const (
	// AttrReason is why a session was renewed or destroyed.
	AttrReason = "reason"
	// AttrType is a session-scoped object's Go type, as reflect prints it.
	AttrType = "type"
	// AttrOperation is a store call: read, read_many, write, delete,
	// delete_many, keys, tagged, flush, collect_garbage, lock, unlock.
	AttrOperation = "operation"
	// AttrBackend is the store's backend: memory, file, redis, postgres, sqlite
	// (another store: its package's name, less a "store" suffix).
	AttrBackend = "backend"
)

// The spans. A store call's span is "fxsession.store." and its operation
// (fxsession.store.read, …).
const (
	// SpanResume is a session's resume: the read of its record and its checks.
	SpanResume = "fxsession.session.resume"
	// SpanCommit is a commit: the write of a session's record, with its retries.
	SpanCommit = "fxsession.session.commit"
	// SpanStorePrefix starts the name of a store call's span.
	SpanStorePrefix = "fxsession.store."
)

// The span attributes.
const (
	// SpanAttrFound, on a resume span: whether the ID named a live session.
	SpanAttrFound = "fxsession.session.found"
	// SpanAttrBackend, on a store call's span: AttrBackend's value.
	SpanAttrBackend = "fxsession.store.backend"
	// SpanAttrResult, on a store call's span that ended with an expected
	// outcome rather than a failure: "not_found", "conflict" or "locked". Other
	// errors set the span's status to Error.
	SpanAttrResult = "fxsession.store.result"
)

// durationBuckets are the store latency histogram's bounds, in seconds: 50 µs
// (a memory store) to 10 s (a commit's default timeout is 5 s).
var durationBuckets = []float64{
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
	0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// Telemetry records fxsession's metrics and spans. A nil *Telemetry records
// nothing, at the cost of a nil check.
type Telemetry struct {
	tracer  trace.Tracer // nil: no spans
	metrics bool         // a MeterProvider was given

	started, resumed, expired   metric.Int64Counter
	renewed, destroyed          metric.Int64Counter
	commits, commitsFailed      metric.Int64Counter
	conflicts, retries, decoded metric.Int64Counter
	read, written               metric.Int64Counter
	duration                    metric.Float64Histogram
	reasons                     attrCache[string]
	types                       attrCache[reflect.Type]
}

// New returns the Telemetry of a manager whose Config has these providers; nil
// when both are nil (off). With only one of them, the other part records
// nothing.
func New(mp metric.MeterProvider, tp trace.TracerProvider) (*Telemetry, error) {
	if mp == nil && tp == nil {
		return nil, nil
	}
	t := &Telemetry{
		reasons: attrCache[string]{key: AttrReason, str: func(s string) string { return s }},
		types:   attrCache[reflect.Type]{key: AttrType, str: reflect.Type.String},
	}
	if tp != nil {
		t.tracer = tp.Tracer(ScopeName)
	}
	t.metrics = mp != nil
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	meter := mp.Meter(ScopeName)
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if err != nil {
			errs = append(errs, err)
		}
		if c == nil {
			c = noop.Int64Counter{}
		}
		return c
	}
	t.started = counter(MetricStarted, "{session}", "Sessions created in the store.")
	t.resumed = counter(MetricResumed, "{session}", "Sessions resumed from their ID and found alive.")
	t.renewed = counter(MetricRenewed, "{session}", "Session ID renewals committed, by reason.")
	t.destroyed = counter(MetricDestroyed, "{session}", "Sessions destroyed, by reason.")
	t.expired = counter(MetricExpired, "{session}", "Expired sessions removed by the collector.")
	t.commits = counter(MetricCommits, "{commit}", "Commits that wrote a session's record, failed ones included.")
	t.commitsFailed = counter(MetricCommitsFailed, "{commit}", "Commits that failed.")
	t.conflicts = counter(MetricConflicts, "{conflict}", "Compare-and-set writes of Handle.Update that met a concurrent writer, by type.")
	t.retries = counter(MetricRetries, "{retry}", "Attempts of Handle.Update after a conflict, by type.")
	t.decoded = counter(MetricDecoded, "{object}", "Session-scoped objects decoded from the session, by type.")
	t.read = counter(MetricRead, "By", "Bytes of field values read from session records.")
	t.written = counter(MetricWritten, "By", "Bytes of field values written to session records.")
	h, err := meter.Float64Histogram(MetricDuration, metric.WithUnit("s"),
		metric.WithDescription("Latency of store calls, by operation and backend."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err != nil {
		errs = append(errs, err)
	}
	if h == nil {
		h = noop.Float64Histogram{}
	}
	t.duration = h
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	// The counters without attributes start at 0, so that their series exist
	// (and rate() sees their first increase) before anything happened.
	for _, c := range []metric.Int64Counter{t.started, t.resumed, t.expired, t.commits, t.commitsFailed, t.read, t.written} {
		c.Add(context.Background(), 0)
	}
	return t, nil
}

// Span is a span started by [Telemetry.Start]; its zero value (OpenTelemetry
// off) does nothing.
type Span struct{ s trace.Span }

// Start starts the span called name as a child of ctx's span and returns the
// context carrying it. Off, it returns ctx itself and a zero Span.
func (t *Telemetry) Start(ctx context.Context, name string) (context.Context, Span) {
	if t == nil || t.tracer == nil {
		return ctx, Span{}
	}
	return t.start(ctx, name)
}

//go:noinline
func (t *Telemetry) start(ctx context.Context, name string) (context.Context, Span) {
	ctx, s := t.tracer.Start(ctx, name)
	return ctx, Span{s: s}
}

// End ends the span, recording err (nil: success).
func (s Span) End(err error) {
	if s.s != nil {
		endSpan(s.s, err)
	}
}

// SetFound records on a resume span whether the ID named a live session.
func (s Span) SetFound(found bool) {
	if s.s != nil {
		setFound(s.s, found)
	}
}

func setFound(s trace.Span, found bool) { s.SetAttributes(attribute.Bool(SpanAttrFound, found)) }

func endSpan(s trace.Span, err error) {
	if err != nil {
		s.RecordError(err)
		s.SetStatus(codes.Error, err.Error())
	}
	s.End()
}

// SessionStarted counts a session created in the store.
func (t *Telemetry) SessionStarted(ctx context.Context) {
	if t != nil {
		t.started.Add(ctx, 1)
	}
}

// SessionResumed counts a session resumed from its ID.
func (t *Telemetry) SessionResumed(ctx context.Context) {
	if t != nil {
		t.resumed.Add(ctx, 1)
	}
}

// SessionRenewed counts a committed ID renewal.
func (t *Telemetry) SessionRenewed(ctx context.Context, reason string) {
	if t != nil {
		t.sessionRenewed(ctx, reason)
	}
}

func (t *Telemetry) sessionRenewed(ctx context.Context, reason string) {
	t.renewed.Add(ctx, 1, t.reasons.get(reason)...)
}

// SessionsDestroyed counts n sessions destroyed for reason.
func (t *Telemetry) SessionsDestroyed(ctx context.Context, reason string, n int) {
	if t != nil && n > 0 {
		t.sessionsDestroyed(ctx, reason, n)
	}
}

func (t *Telemetry) sessionsDestroyed(ctx context.Context, reason string, n int) {
	t.destroyed.Add(ctx, int64(n), t.reasons.get(reason)...)
}

// SessionsExpired counts n expired sessions removed by the collector.
func (t *Telemetry) SessionsExpired(ctx context.Context, n int) {
	if t != nil && n > 0 {
		t.expired.Add(ctx, int64(n))
	}
}

// Committed counts a commit that wrote a session's record, failed when err is
// not nil.
func (t *Telemetry) Committed(ctx context.Context, err error) {
	if t != nil {
		t.committed(ctx, err)
	}
}

func (t *Telemetry) committed(ctx context.Context, err error) {
	t.commits.Add(ctx, 1)
	if err != nil {
		t.commitsFailed.Add(ctx, 1)
	}
}

// UpdateConflict counts a conflict of an Update of the session-scoped type typ,
// and a retry when the Update tries again.
func (t *Telemetry) UpdateConflict(ctx context.Context, typ reflect.Type, retry bool) {
	if t != nil {
		t.updateConflict(ctx, typ, retry)
	}
}

func (t *Telemetry) updateConflict(ctx context.Context, typ reflect.Type, retry bool) {
	opts := t.types.get(typ)
	t.conflicts.Add(ctx, 1, opts...)
	// 0 when not retrying: the type's retries series exists whenever its
	// conflicts series does, so that conflicts − retries can be queried.
	var n int64
	if retry {
		n = 1
	}
	t.retries.Add(ctx, n, opts...)
}

// ObjectDecoded counts a session-scoped object of type typ decoded from the
// session.
func (t *Telemetry) ObjectDecoded(ctx context.Context, typ reflect.Type) {
	if t != nil {
		t.objectDecoded(ctx, typ)
	}
}

func (t *Telemetry) objectDecoded(ctx context.Context, typ reflect.Type) {
	t.decoded.Add(ctx, 1, t.types.get(typ)...)
}

// maxCachedAttrs bounds an attrCache: values beyond it (an application passing
// unbounded destroy reasons) are built at each use.
const maxCachedAttrs = 256

// attrCache keeps the measurement options of one attribute's values, so that a
// measurement allocates nothing for them.
type attrCache[K comparable] struct {
	key string
	str func(K) string // the attribute's value
	mu  sync.RWMutex
	m   map[K][]metric.AddOption
}

func (c *attrCache[K]) get(v K) []metric.AddOption {
	c.mu.RLock()
	opts, ok := c.m[v]
	c.mu.RUnlock()
	if ok {
		return opts
	}
	opts = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String(c.key, c.str(v))))}
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[K][]metric.AddOption)
	}
	if len(c.m) < maxCachedAttrs {
		c.m[v] = opts
	}
	c.mu.Unlock()
	return opts
}
