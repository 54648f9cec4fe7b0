package sqlcommon

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync/atomic"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// Driver is the SQL of one backend. [Store] calls it with validated input
// (namespaces, keys, field names, tags and lock names follow
// [cache.ValidateKey]; keys are unique) and a context bounded by the statement
// timeout, and only after Migrate succeeded. Byte slices it passes to a row
// callback need only live for the call.
type Driver interface {
	// Migrate creates the schema when the database has none and checks its
	// version otherwise (see [Migrate]), and prepares what the driver needs,
	// each statement bounded by timeout. It reports whether it created the
	// schema.
	Migrate(ctx context.Context, timeout time.Duration) (created bool, err error)
	// Read reads the live records under keys (at least one) in one statement
	// and calls row for each result row: per record one row per field, among
	// fields (all when fields is empty), or one row without a field.
	Read(ctx context.Context, ns string, keys, fields []string, row func(*Row)) error
	// Write applies p to the record under key atomically, in one round trip
	// to the database (one transaction for an embedded one), and reports what
	// it did. A refused write changes nothing.
	Write(ctx context.Context, ns, key string, p *Plan) (Outcome, error)
	// Delete removes the records under keys (fields and tags go with them) in
	// one statement and returns how many of them were live.
	Delete(ctx context.Context, ns string, keys []string) (int, error)
	// Page returns up to limit keys of live records after the key after (""
	// before the first), in key order; only those carrying tag unless tag is
	// empty.
	Page(ctx context.Context, ns, tag, after string, limit int) ([]string, error)
	// Flush removes every record and lock of the namespace.
	Flush(ctx context.Context, ns string) error
	// Collect removes up to max records that expired at or before before (the
	// zero time: the database's now), each by exactly one caller across
	// processes, together with expired locks, and calls row for each row of
	// the removed records as they were: one row per field among fields (none
	// when fields is empty), or one row without a field.
	Collect(ctx context.Context, ns string, before time.Time, max int, fields []string, row func(*Row)) error
	// Lock takes the lock for token when it is free or expired and reports
	// whether it did.
	Lock(ctx context.Context, ns, name, token string, ttl time.Duration) (bool, error)
	// Unlock releases the lock if token holds it, unexpired, and reports
	// whether it did.
	Unlock(ctx context.Context, ns, name, token string) (bool, error)
	// Unavailable tells a failure to reach the database (connection, I/O,
	// timeout, lock wait) from an error about a statement.
	Unavailable(err error) bool
	// Close releases the driver's connections.
	Close() error
}

// Store implements [cache.Store] on a [Driver]: the backends embed it.
type Store struct {
	sh   *shared
	ns   string
	root bool // Close closes the driver only on the root
}

var _ cache.Store = (*Store)(nil)

// shared is what a root store and its Subs have in common.
type shared struct {
	name   string // the backend's package name, which starts every error
	d      Driver
	cfg    Config
	closed atomic.Bool
	ready  atomic.Bool   // Migrate succeeded
	sem    chan struct{} // one slot: one Migrate at a time, and Close waits for it
}

// New returns the root store of the backend called name (which prefixes its
// errors) on d, with a normalised cfg. Nothing is sent to the database yet.
func New(name string, d Driver, cfg Config) *Store {
	sh := &shared{name: name, d: d, cfg: cfg, sem: make(chan struct{}, 1)}
	return &Store{sh: sh, ns: cfg.Namespace, root: true}
}

// Ready creates the schema when it is missing and checks its version. Every
// call does it on first use; calling it at start-up finds a misconfiguration
// early. It takes several statements, each bounded by the statement timeout.
func (s *Store) Ready(ctx context.Context) error {
	if s.sh.ready.Load() {
		return nil
	}
	if s.sh.closed.Load() {
		return fmt.Errorf("%s: %w", s.sh.name, cache.ErrClosed)
	}
	return s.ensure(ctx)
}

// ensure runs Migrate once; callers that fail leave it to the next call.
func (s *Store) ensure(ctx context.Context) error {
	sh := s.sh
	select {
	case sh.sem <- struct{}{}:
	case <-ctx.Done():
		return cache.Unavailable(sh.name+": schema", ctx.Err())
	}
	defer func() { <-sh.sem }()
	if sh.ready.Load() {
		return nil
	}
	if sh.closed.Load() {
		return fmt.Errorf("%s: %w", sh.name, cache.ErrClosed)
	}
	created, err := sh.d.Migrate(ctx, sh.cfg.StatementTimeout)
	if err != nil {
		return s.fail(ctx, "schema", err)
	}
	if created {
		sh.cfg.Logger.Info("fxsession: cache schema created", "backend", sh.name, "version", SchemaVersion)
	}
	sh.ready.Store(true)
	return nil
}

// Namespace implements [cache.Store].
func (s *Store) Namespace() string { return s.ns }

// Sub implements [cache.Store].
func (s *Store) Sub(name string) (cache.Store, error) {
	if s.sh.closed.Load() {
		return nil, fmt.Errorf("%s: sub %q: %w", s.sh.name, name, cache.ErrClosed)
	}
	ns, err := cache.JoinNamespace(s.ns, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.sh.name, err)
	}
	return &Store{sh: s.sh, ns: ns}, nil
}

// Close implements [cache.Store]: closing the root closes the driver (after a
// schema check in progress); closing a Sub does nothing. A second Close
// returns nil.
func (s *Store) Close() error {
	if !s.root || s.sh.closed.Swap(true) {
		return nil
	}
	s.sh.sem <- struct{}{}
	defer func() { <-s.sh.sem }()
	if err := s.sh.d.Close(); err != nil {
		return fmt.Errorf("%s: close: %w", s.sh.name, err)
	}
	return nil
}

// call prepares a call of op: it refuses a closed store and an ended context,
// makes sure the schema is there and bounds ctx by the statement timeout.
func (s *Store) call(ctx context.Context, op string) (context.Context, context.CancelFunc, error) {
	if s.sh.closed.Load() {
		return nil, nil, fmt.Errorf("%s: %s: %w", s.sh.name, op, cache.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, cache.Unavailable(s.sh.name+": "+op, err)
	}
	if !s.sh.ready.Load() {
		if err := s.ensure(ctx); err != nil {
			return nil, nil, err
		}
	}
	cctx, cancel := context.WithTimeout(ctx, s.sh.cfg.StatementTimeout)
	return cctx, cancel, nil
}

// fail wraps a driver error of op. cctx is the call's context: when it has
// ended (the caller cancelled, or the statement timeout passed), its error is
// part of the result.
func (s *Store) fail(cctx context.Context, op string, err error) error {
	if cerr := cctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w (%w)", cerr, err)
	}
	name := s.sh.name
	switch {
	case s.sh.closed.Load() && !errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: %s: %w: %w", name, op, cache.ErrClosed, err)
	case errors.As(err, new(schemaError)):
		return fmt.Errorf("%s: %s: %w", name, op, err)
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || s.sh.d.Unavailable(err):
		return cache.Unavailable(name+": "+op, err)
	default:
		return fmt.Errorf("%s: %s: %w", name, op, err)
	}
}

// invalid wraps a validation error of op.
func (s *Store) invalid(op string, err error) error {
	return fmt.Errorf("%s: %s: %w", s.sh.name, op, err)
}

// Read implements [cache.Store] with one statement.
func (s *Store) Read(ctx context.Context, key string, fields ...string) (cache.Record, error) {
	if err := cache.ValidateKeys(key, fields); err != nil {
		return cache.Record{}, s.invalid("read", err)
	}
	cctx, cancel, err := s.call(ctx, "read")
	if err != nil {
		return cache.Record{}, err
	}
	defer cancel()
	b := builder{names: fields, recs: make([]cache.Record, 0, 1)}
	if err := s.sh.d.Read(cctx, s.ns, []string{key}, fields, b.add); err != nil {
		return cache.Record{}, s.fail(cctx, "read", err)
	}
	if len(b.recs) == 0 {
		return cache.Record{}, fmt.Errorf("%s: read %q: %w", s.sh.name, key, cache.ErrNotFound)
	}
	return b.recs[0], nil
}

// ReadMany implements [cache.Store] with one statement.
func (s *Store) ReadMany(ctx context.Context, keys []string, fields ...string) ([]cache.Record, error) {
	for _, k := range keys {
		if err := cache.ValidateKeys(k, fields); err != nil {
			return nil, s.invalid("read", err)
		}
	}
	out := make([]cache.Record, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	cctx, cancel, err := s.call(ctx, "read")
	if err != nil {
		return nil, err
	}
	defer cancel()
	b := builder{names: fields}
	if err := s.sh.d.Read(cctx, s.ns, unique(keys), fields, b.add); err != nil {
		return nil, s.fail(cctx, "read", err)
	}
	for i, k := range keys {
		if j := b.find([]byte(k)); j >= 0 {
			out[i] = b.recs[j]
		} else {
			out[i] = cache.Record{Key: k}
		}
	}
	return out, nil
}

// Write implements [cache.Store]: the driver applies it in one round trip.
func (s *Store) Write(ctx context.Context, key string, w cache.Write) (cache.Version, error) {
	p, err := NewPlan(key, w, s.sh.cfg.MaxValueSize)
	if err != nil {
		return 0, s.invalid("write", err)
	}
	cctx, cancel, err := s.call(ctx, "write")
	if err != nil {
		return 0, err
	}
	defer cancel()
	out, err := s.sh.d.Write(cctx, s.ns, key, p)
	if err != nil {
		return 0, s.fail(cctx, "write", err)
	}
	if out.Version == 0 {
		return 0, out.err(s.sh.name, key, p)
	}
	return out.Version, nil
}

// Delete implements [cache.Store] with one statement; the record's fields and
// tags go with it (ON DELETE CASCADE).
func (s *Store) Delete(ctx context.Context, key string) (bool, error) {
	if err := cache.ValidateKey(key); err != nil {
		return false, s.invalid("delete", err)
	}
	n, err := s.deleteBatch(ctx, []string{key})
	return n > 0, err
}

// DeleteMany implements [cache.Store]: one statement per BatchSize keys.
func (s *Store) DeleteMany(ctx context.Context, keys []string) (int, error) {
	for _, k := range keys {
		if err := cache.ValidateKey(k); err != nil {
			return 0, s.invalid("delete", err)
		}
	}
	if len(keys) == 0 {
		return 0, nil
	}
	total := 0
	for batch := range slices.Chunk(unique(keys), s.sh.cfg.BatchSize) {
		n, err := s.deleteBatch(ctx, batch)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (s *Store) deleteBatch(ctx context.Context, keys []string) (int, error) {
	cctx, cancel, err := s.call(ctx, "delete")
	if err != nil {
		return 0, err
	}
	defer cancel()
	n, err := s.sh.d.Delete(cctx, s.ns, keys)
	if err != nil {
		return 0, s.fail(cctx, "delete", err)
	}
	return n, nil
}

// Keys implements [cache.Store] by keyset pagination in key order, BatchSize
// keys a statement; no connection is held while the caller's loop runs.
func (s *Store) Keys(ctx context.Context) iter.Seq2[string, error] {
	return s.pages(ctx, "keys", "")
}

// Tagged implements [cache.Store] like Keys, through the tag index.
func (s *Store) Tagged(ctx context.Context, tag string) iter.Seq2[string, error] {
	if err := cache.ValidateKey(tag); err != nil {
		err = s.invalid("tagged", fmt.Errorf("tag: %w", err))
		return func(yield func(string, error) bool) { yield("", err) }
	}
	return s.pages(ctx, "tagged", tag)
}

// pages streams the keys of the driver's Page, a page shorter than BatchSize
// ending the stream.
func (s *Store) pages(ctx context.Context, op, tag string) iter.Seq2[string, error] {
	size := s.sh.cfg.BatchSize
	return func(yield func(string, error) bool) {
		after := ""
		for {
			page, err := s.page(ctx, op, tag, after, size)
			if err != nil {
				yield("", err)
				return
			}
			for _, k := range page {
				if err := ctx.Err(); err != nil {
					yield("", cache.Unavailable(s.sh.name+": "+op, err))
					return
				}
				if !yield(k, nil) {
					return
				}
			}
			if len(page) < size {
				return
			}
			after = page[len(page)-1]
		}
	}
}

func (s *Store) page(ctx context.Context, op, tag, after string, size int) ([]string, error) {
	cctx, cancel, err := s.call(ctx, op)
	if err != nil {
		return nil, err
	}
	defer cancel()
	page, err := s.sh.d.Page(cctx, s.ns, tag, after, size)
	if err != nil {
		return nil, s.fail(cctx, op, err)
	}
	return page, nil
}

// Flush implements [cache.Store].
func (s *Store) Flush(ctx context.Context) error {
	cctx, cancel, err := s.call(ctx, "flush")
	if err != nil {
		return err
	}
	defer cancel()
	if err := s.sh.d.Flush(cctx, s.ns); err != nil {
		return s.fail(cctx, "flush", err)
	}
	return nil
}

// CollectGarbage implements [cache.Store] with one statement (on SQLite, one
// write transaction) through the expiry index: each removed record is reported
// by exactly one caller, after it is gone. Expired locks go too.
func (s *Store) CollectGarbage(ctx context.Context, o cache.GCOptions) (int, error) {
	for _, f := range o.Fields {
		if err := cache.ValidateKey(f); err != nil {
			return 0, s.invalid("collect garbage", fmt.Errorf("field: %w", err))
		}
	}
	limit := o.Max
	if limit <= 0 {
		limit = cache.DefaultGCBatchSize
	}
	cctx, cancel, err := s.call(ctx, "collect garbage")
	if err != nil {
		return 0, err
	}
	defer cancel()
	b := builder{names: o.Fields}
	if err := s.sh.d.Collect(cctx, s.ns, o.Before, limit, o.Fields, b.add); err != nil {
		return 0, s.fail(cctx, "collect garbage", err)
	}
	if o.Removed != nil {
		for _, r := range b.recs {
			o.Removed(r)
		}
	}
	return len(b.recs), nil
}

// Lock implements [cache.Store] with a row of the locks table, taken when
// absent or expired.
func (s *Store) Lock(ctx context.Context, name string, ttl time.Duration) (string, error) {
	if err := cache.ValidateKey(name); err != nil {
		return "", s.invalid("lock", err)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("%s: lock %q: lifetime %v is not positive", s.sh.name, name, ttl)
	}
	cctx, cancel, err := s.call(ctx, "lock")
	if err != nil {
		return "", err
	}
	defer cancel()
	tok := token()
	ok, err := s.sh.d.Lock(cctx, s.ns, name, tok, ttl)
	switch {
	case err != nil:
		return "", s.fail(cctx, "lock", err)
	case !ok:
		return "", fmt.Errorf("%s: lock %q: %w", s.sh.name, name, cache.ErrLocked)
	}
	return tok, nil
}

// Unlock implements [cache.Store].
func (s *Store) Unlock(ctx context.Context, name, token string) (bool, error) {
	if err := cache.ValidateKey(name); err != nil {
		return false, s.invalid("unlock", err)
	}
	cctx, cancel, err := s.call(ctx, "unlock")
	if err != nil {
		return false, err
	}
	defer cancel()
	ok, err := s.sh.d.Unlock(cctx, s.ns, name, token)
	if err != nil {
		return false, s.fail(cctx, "unlock", err)
	}
	return ok, nil
}
