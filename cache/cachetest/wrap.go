package cachetest

import (
	"context"
	"iter"
	"sync"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// Op names a [cache.Store] method, as a [Hook] sees it.
type Op string

// The operations of a store.
const (
	OpRead           Op = "Read"
	OpReadMany       Op = "ReadMany"
	OpWrite          Op = "Write"
	OpDelete         Op = "Delete"
	OpDeleteMany     Op = "DeleteMany"
	OpKeys           Op = "Keys"
	OpTagged         Op = "Tagged"
	OpFlush          Op = "Flush"
	OpCollectGarbage Op = "CollectGarbage"
	OpLock           Op = "Lock"
	OpUnlock         Op = "Unlock"
)

// Call describes one call that reaches a [Wrapped] store.
type Call struct {
	Op        Op
	Namespace string
	// Key is the record's key (Read, Write, Delete), the tag (Tagged) or the lock
	// name (Lock, Unlock).
	Key string
	// Keys are the keys of ReadMany and DeleteMany.
	Keys []string
	// Fields are the fields a Read or ReadMany names.
	Fields []string
	// Write is the change of a Write.
	Write *cache.Write
}

// Hook sees every call before it reaches the wrapped store; an error it returns
// fails the call (as the store's error would) without reaching the store.
type Hook func(ctx context.Context, c Call) error

// Wrapped forwards every method of [cache.Store] to another store, calling a Hook
// first: tests use it to count round trips and to make calls fail. It implements
// every method itself (it does not embed the interface), so a method added to
// cache.Store breaks its compilation rather than bypassing the hook. Subs are
// wrapped with the same hook.
type Wrapped struct {
	inner cache.Store
	hook  Hook
}

var _ cache.Store = (*Wrapped)(nil)

// Wrap returns s with hook in front of every call (a nil hook lets everything
// through).
func Wrap(s cache.Store, hook Hook) *Wrapped { return &Wrapped{inner: s, hook: hook} }

// Unwrap returns the wrapped store.
func (w *Wrapped) Unwrap() cache.Store { return w.inner }

func (w *Wrapped) call(ctx context.Context, c Call) error {
	if w.hook == nil {
		return nil
	}
	c.Namespace = w.inner.Namespace()
	return w.hook(ctx, c)
}

// Read forwards to the wrapped store.
func (w *Wrapped) Read(ctx context.Context, key string, fields ...string) (cache.Record, error) {
	if err := w.call(ctx, Call{Op: OpRead, Key: key, Fields: fields}); err != nil {
		return cache.Record{}, err
	}
	return w.inner.Read(ctx, key, fields...)
}

// ReadMany forwards to the wrapped store.
func (w *Wrapped) ReadMany(ctx context.Context, keys []string, fields ...string) ([]cache.Record, error) {
	if err := w.call(ctx, Call{Op: OpReadMany, Keys: keys, Fields: fields}); err != nil {
		return nil, err
	}
	return w.inner.ReadMany(ctx, keys, fields...)
}

// Write forwards to the wrapped store.
func (w *Wrapped) Write(ctx context.Context, key string, wr cache.Write) (cache.Version, error) {
	if err := w.call(ctx, Call{Op: OpWrite, Key: key, Write: &wr}); err != nil {
		return 0, err
	}
	return w.inner.Write(ctx, key, wr)
}

// Delete forwards to the wrapped store.
func (w *Wrapped) Delete(ctx context.Context, key string) (bool, error) {
	if err := w.call(ctx, Call{Op: OpDelete, Key: key}); err != nil {
		return false, err
	}
	return w.inner.Delete(ctx, key)
}

// DeleteMany forwards to the wrapped store.
func (w *Wrapped) DeleteMany(ctx context.Context, keys []string) (int, error) {
	if err := w.call(ctx, Call{Op: OpDeleteMany, Keys: keys}); err != nil {
		return 0, err
	}
	return w.inner.DeleteMany(ctx, keys)
}

// Keys forwards to the wrapped store.
func (w *Wrapped) Keys(ctx context.Context) iter.Seq2[string, error] {
	if err := w.call(ctx, Call{Op: OpKeys}); err != nil {
		return func(yield func(string, error) bool) { yield("", err) }
	}
	return w.inner.Keys(ctx)
}

// Tagged forwards to the wrapped store.
func (w *Wrapped) Tagged(ctx context.Context, tag string) iter.Seq2[string, error] {
	if err := w.call(ctx, Call{Op: OpTagged, Key: tag}); err != nil {
		return func(yield func(string, error) bool) { yield("", err) }
	}
	return w.inner.Tagged(ctx, tag)
}

// Flush forwards to the wrapped store.
func (w *Wrapped) Flush(ctx context.Context) error {
	if err := w.call(ctx, Call{Op: OpFlush}); err != nil {
		return err
	}
	return w.inner.Flush(ctx)
}

// CollectGarbage forwards to the wrapped store.
func (w *Wrapped) CollectGarbage(ctx context.Context, o cache.GCOptions) (int, error) {
	if err := w.call(ctx, Call{Op: OpCollectGarbage, Fields: o.Fields}); err != nil {
		return 0, err
	}
	return w.inner.CollectGarbage(ctx, o)
}

// Lock forwards to the wrapped store.
func (w *Wrapped) Lock(ctx context.Context, name string, ttl time.Duration) (string, error) {
	if err := w.call(ctx, Call{Op: OpLock, Key: name}); err != nil {
		return "", err
	}
	return w.inner.Lock(ctx, name, ttl)
}

// Unlock forwards to the wrapped store.
func (w *Wrapped) Unlock(ctx context.Context, name, token string) (bool, error) {
	if err := w.call(ctx, Call{Op: OpUnlock, Key: name}); err != nil {
		return false, err
	}
	return w.inner.Unlock(ctx, name, token)
}

// Sub wraps the wrapped store's Sub with the same hook.
func (w *Wrapped) Sub(name string) (cache.Store, error) {
	s, err := w.inner.Sub(name)
	if err != nil {
		return nil, err
	}
	return &Wrapped{inner: s, hook: w.hook}, nil
}

// Namespace forwards to the wrapped store.
func (w *Wrapped) Namespace() string { return w.inner.Namespace() }

// Close forwards to the wrapped store.
func (w *Wrapped) Close() error { return w.inner.Close() }

// Counter counts the calls a [Wrapped] store receives, by operation: a round-trip
// counter for tests. Use its Hook: cachetest.Wrap(store, counter.Hook). It is safe
// for concurrent use.
type Counter struct {
	mu    sync.Mutex
	calls []Call
}

// Hook records c and lets it through.
func (c *Counter) Hook(_ context.Context, call Call) error {
	c.mu.Lock()
	c.calls = append(c.calls, call)
	c.mu.Unlock()
	return nil
}

// Count returns how many calls of the given operations (all when none is named)
// were made since the last Reset.
func (c *Counter) Count(ops ...Op) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(ops) == 0 {
		return len(c.calls)
	}
	n := 0
	for _, call := range c.calls {
		for _, op := range ops {
			if call.Op == op {
				n++
				break
			}
		}
	}
	return n
}

// Calls returns the calls made since the last Reset, in order.
func (c *Counter) Calls() []Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Call(nil), c.calls...)
}

// Reset forgets the calls counted so far.
func (c *Counter) Reset() {
	c.mu.Lock()
	c.calls = nil
	c.mu.Unlock()
}
