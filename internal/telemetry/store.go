package telemetry

import (
	"context"
	"errors"
	"iter"
	"path"
	"reflect"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/fxsession/fxsession/cache"
)

// op is a store call.
type op uint8

const (
	opRead op = iota
	opReadMany
	opWrite
	opDelete
	opDeleteMany
	opKeys
	opTagged
	opFlush
	opCollectGarbage
	opLock
	opUnlock
	numOps
)

// opNames are the AttrOperation values.
var opNames = [numOps]string{
	opRead:           "read",
	opReadMany:       "read_many",
	opWrite:          "write",
	opDelete:         "delete",
	opDeleteMany:     "delete_many",
	opKeys:           "keys",
	opTagged:         "tagged",
	opFlush:          "flush",
	opCollectGarbage: "collect_garbage",
	opLock:           "lock",
	opUnlock:         "unlock",
}

// Backend names a store's backend for AttrBackend: memory, file, redis,
// postgres or sqlite for fxsession's backends; for another store its package's
// name less a "store" suffix. A wrapper with an Unwrap() cache.Store method
// (cachetest.Wrapped) is looked through.
func Backend(s cache.Store) string {
	for range 16 {
		u, ok := s.(interface{ Unwrap() cache.Store })
		if !ok {
			break
		}
		inner := u.Unwrap()
		if inner == nil {
			break
		}
		s = inner
	}
	t := reflect.TypeOf(s)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.PkgPath() == "" {
		return "unknown"
	}
	return backendName(t.PkgPath())
}

// backendName is the backend of a store type of the package pkgPath.
func backendName(pkgPath string) string {
	switch name := path.Base(pkgPath); name {
	case "memstore":
		return "memory"
	case "filestore":
		return "file"
	case "redisstore":
		return "redis"
	case "pgstore":
		return "postgres"
	case "sqlitestore":
		return "sqlite"
	default:
		if n := strings.TrimSuffix(name, "store"); n != "" {
			return n
		}
		return name
	}
}

// WrapStore returns s instrumented: each call is timed (MetricDuration), gets
// a span, and the bytes of the field values read and written are counted.
// Subs are wrapped too. Off (t nil), it returns s itself.
func (t *Telemetry) WrapStore(s cache.Store) cache.Store {
	if t == nil || s == nil {
		return s
	}
	if w, ok := s.(*store); ok && w.t == t {
		return s
	}
	return t.wrap(s, newOpAttrs(Backend(s)))
}

func (t *Telemetry) wrap(s cache.Store, a *opAttrs) *store {
	return &store{inner: s, t: t, attrs: a}
}

// opAttrs are the measurement and span options of one backend's operations,
// made once.
type opAttrs struct {
	backend string
	record  [numOps][]metric.RecordOption
	span    [numOps][]trace.SpanStartOption
	names   [numOps]string
}

func newOpAttrs(backend string) *opAttrs {
	a := &opAttrs{backend: backend}
	for o := range numOps {
		set := attribute.NewSet(attribute.String(AttrOperation, opNames[o]), attribute.String(AttrBackend, backend))
		a.record[o] = []metric.RecordOption{metric.WithAttributeSet(set)}
		a.span[o] = []trace.SpanStartOption{trace.WithAttributes(attribute.String(SpanAttrBackend, backend))}
		a.names[o] = SpanStorePrefix + opNames[o]
	}
	return a
}

// store is an instrumented cache.Store.
type store struct {
	inner cache.Store
	t     *Telemetry
	attrs *opAttrs
}

var _ cache.Store = (*store)(nil)

// Unwrap returns the instrumented store.
func (s *store) Unwrap() cache.Store { return s.inner }

// call is one store call being measured.
type call struct {
	op    op
	start time.Time
	span  trace.Span
}

// begin starts measuring a call: its span (a child of ctx's) and its clock.
func (s *store) begin(ctx context.Context, o op) (context.Context, call) {
	c := call{op: o}
	if s.t.tracer != nil {
		ctx, c.span = s.t.tracer.Start(ctx, s.attrs.names[o], s.attrs.span[o]...)
	}
	if s.t.metrics {
		c.start = time.Now()
	}
	return ctx, c
}

// end ends the call's measure with its outcome.
func (s *store) end(ctx context.Context, c call, err error) {
	if s.t.metrics {
		s.t.duration.Record(ctx, time.Since(c.start).Seconds(), s.attrs.record[c.op]...)
	}
	s.endSpan(c, err)
}

func (s *store) endSpan(c call, err error) {
	if c.span == nil {
		return
	}
	switch {
	case err == nil:
	case errors.Is(err, cache.ErrNotFound):
		c.span.SetAttributes(attribute.String(SpanAttrResult, "not_found"))
		err = nil
	case errors.Is(err, cache.ErrConflict):
		c.span.SetAttributes(attribute.String(SpanAttrResult, "conflict"))
		err = nil
	case errors.Is(err, cache.ErrLocked):
		c.span.SetAttributes(attribute.String(SpanAttrResult, "locked"))
		err = nil
	}
	endSpan(c.span, err)
}

func (s *store) countRead(ctx context.Context, recs ...cache.Record) {
	if !s.t.metrics {
		return
	}
	n := 0
	for i := range recs {
		for _, f := range recs[i].Fields {
			n += len(f.Value)
		}
	}
	if n > 0 {
		s.t.read.Add(ctx, int64(n))
	}
}

func (s *store) Read(ctx context.Context, key string, fields ...string) (cache.Record, error) {
	ctx, c := s.begin(ctx, opRead)
	rec, err := s.inner.Read(ctx, key, fields...)
	s.end(ctx, c, err)
	if err == nil {
		s.countRead(ctx, rec)
	}
	return rec, err
}

func (s *store) ReadMany(ctx context.Context, keys []string, fields ...string) ([]cache.Record, error) {
	ctx, c := s.begin(ctx, opReadMany)
	recs, err := s.inner.ReadMany(ctx, keys, fields...)
	s.end(ctx, c, err)
	if err == nil {
		s.countRead(ctx, recs...)
	}
	return recs, err
}

func (s *store) Write(ctx context.Context, key string, w cache.Write) (cache.Version, error) {
	ctx, c := s.begin(ctx, opWrite)
	v, err := s.inner.Write(ctx, key, w)
	s.end(ctx, c, err)
	if err == nil && s.t.metrics {
		n := 0
		for _, f := range w.Fields {
			if !f.Remove {
				n += len(f.Value)
			}
		}
		if n > 0 {
			s.t.written.Add(ctx, int64(n))
		}
	}
	return v, err
}

func (s *store) Delete(ctx context.Context, key string) (bool, error) {
	ctx, c := s.begin(ctx, opDelete)
	ok, err := s.inner.Delete(ctx, key)
	s.end(ctx, c, err)
	return ok, err
}

func (s *store) DeleteMany(ctx context.Context, keys []string) (int, error) {
	ctx, c := s.begin(ctx, opDeleteMany)
	n, err := s.inner.DeleteMany(ctx, keys)
	s.end(ctx, c, err)
	return n, err
}

func (s *store) Keys(ctx context.Context) iter.Seq2[string, error] {
	return s.iterate(ctx, opKeys, func(ctx context.Context) iter.Seq2[string, error] { return s.inner.Keys(ctx) })
}

func (s *store) Tagged(ctx context.Context, tag string) iter.Seq2[string, error] {
	return s.iterate(ctx, opTagged, func(ctx context.Context) iter.Seq2[string, error] { return s.inner.Tagged(ctx, tag) })
}

// iterate measures an iteration: its span covers the whole iteration, its
// duration only the store's share of it (the time the caller spends between
// keys is left out).
func (s *store) iterate(ctx context.Context, o op, seq func(context.Context) iter.Seq2[string, error]) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		ctx, c := s.begin(ctx, o)
		var (
			err  error
			busy time.Duration
			t0   = c.start
		)
		for k, e := range seq(ctx) {
			if e != nil {
				err = e
			}
			if s.t.metrics {
				busy += time.Since(t0)
			}
			more := yield(k, e)
			if s.t.metrics {
				t0 = time.Now()
			}
			if !more {
				break
			}
		}
		if s.t.metrics {
			busy += time.Since(t0)
			s.t.duration.Record(ctx, busy.Seconds(), s.attrs.record[o]...)
		}
		s.endSpan(c, err)
	}
}

func (s *store) Flush(ctx context.Context) error {
	ctx, c := s.begin(ctx, opFlush)
	err := s.inner.Flush(ctx)
	s.end(ctx, c, err)
	return err
}

func (s *store) CollectGarbage(ctx context.Context, o cache.GCOptions) (int, error) {
	ctx, c := s.begin(ctx, opCollectGarbage)
	n, err := s.inner.CollectGarbage(ctx, o)
	s.end(ctx, c, err)
	return n, err
}

func (s *store) Lock(ctx context.Context, name string, ttl time.Duration) (string, error) {
	ctx, c := s.begin(ctx, opLock)
	token, err := s.inner.Lock(ctx, name, ttl)
	s.end(ctx, c, err)
	return token, err
}

func (s *store) Unlock(ctx context.Context, name, token string) (bool, error) {
	ctx, c := s.begin(ctx, opUnlock)
	ok, err := s.inner.Unlock(ctx, name, token)
	s.end(ctx, c, err)
	return ok, err
}

func (s *store) Sub(name string) (cache.Store, error) {
	sub, err := s.inner.Sub(name)
	if err != nil {
		return nil, err
	}
	return s.t.wrap(sub, s.attrs), nil
}

func (s *store) Namespace() string { return s.inner.Namespace() }

func (s *store) Close() error { return s.inner.Close() }
