package reliability

import (
	"context"
	"iter"
	"sync/atomic"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// Counting is a [cache.Backend] that passes every call to the backend it wraps
// and counts it: reads (Get, GetMany, Has, Tagged, All) and writes (everything
// that may change the store: Set, SetMany, CompareAndSet, Delete, Flush,
// FlushByTag, CollectGarbage, Lock, Unlock). Its Subs count into the same
// counters, so a session manager built on it is counted whole. It is safe for
// concurrent use.
type Counting struct {
	next cache.Backend
	c    *counters
}

type counters struct {
	reads  atomic.Int64
	writes atomic.Int64
	locks  atomic.Int64
}

var _ cache.Backend = (*Counting)(nil)

// NewCounting wraps b.
func NewCounting(b cache.Backend) *Counting {
	return &Counting{next: b, c: &counters{}}
}

// Reads is the number of read calls so far.
func (c *Counting) Reads() int64 { return c.c.reads.Load() }

// Writes is the number of write calls so far.
func (c *Counting) Writes() int64 { return c.c.writes.Load() }

// Locks is the number of Lock and Unlock calls so far (they count as writes too).
func (c *Counting) Locks() int64 { return c.c.locks.Load() }

// Calls is the number of calls of either kind so far.
func (c *Counting) Calls() int64 { return c.Reads() + c.Writes() }

func (c *Counting) read()  { c.c.reads.Add(1) }
func (c *Counting) write() { c.c.writes.Add(1) }

// Get counts a read and passes the call on.
func (c *Counting) Get(ctx context.Context, key string) (cache.Entry, error) {
	c.read()
	return c.next.Get(ctx, key)
}

// GetMany counts a read and passes the call on.
func (c *Counting) GetMany(ctx context.Context, keys []string) ([]cache.Entry, error) {
	c.read()
	return c.next.GetMany(ctx, keys)
}

// Set counts a write and passes the call on.
func (c *Counting) Set(ctx context.Context, item cache.Item) (cache.Version, error) {
	c.write()
	return c.next.Set(ctx, item)
}

// SetMany counts a write and passes the call on.
func (c *Counting) SetMany(ctx context.Context, items []cache.Item) error {
	c.write()
	return c.next.SetMany(ctx, items)
}

// CompareAndSet counts a write and passes the call on.
func (c *Counting) CompareAndSet(ctx context.Context, item cache.Item, expected cache.Version) (cache.Version, error) {
	c.write()
	return c.next.CompareAndSet(ctx, item, expected)
}

// Delete counts a write and passes the call on.
func (c *Counting) Delete(ctx context.Context, key string) (bool, error) {
	c.write()
	return c.next.Delete(ctx, key)
}

// Has counts a read and passes the call on.
func (c *Counting) Has(ctx context.Context, key string) (bool, error) {
	c.read()
	return c.next.Has(ctx, key)
}

// Flush counts a write and passes the call on.
func (c *Counting) Flush(ctx context.Context) error {
	c.write()
	return c.next.Flush(ctx)
}

// FlushByTag counts a write and passes the call on.
func (c *Counting) FlushByTag(ctx context.Context, tag string) (int, error) {
	c.write()
	return c.next.FlushByTag(ctx, tag)
}

// Tagged counts a read and passes the call on.
func (c *Counting) Tagged(ctx context.Context, tag string) iter.Seq2[string, error] {
	c.read()
	return c.next.Tagged(ctx, tag)
}

// All counts a read and passes the call on.
func (c *Counting) All(ctx context.Context) iter.Seq2[cache.Entry, error] {
	c.read()
	return c.next.All(ctx)
}

// CollectGarbage counts a write and passes the call on.
func (c *Counting) CollectGarbage(ctx context.Context) (int, error) {
	c.write()
	return c.next.CollectGarbage(ctx)
}

// Lock counts a write and passes the call on.
func (c *Counting) Lock(ctx context.Context, name string, ttl time.Duration) (string, error) {
	c.write()
	c.c.locks.Add(1)
	return c.next.Lock(ctx, name, ttl)
}

// Unlock counts a write and passes the call on.
func (c *Counting) Unlock(ctx context.Context, name, token string) (bool, error) {
	c.write()
	c.c.locks.Add(1)
	return c.next.Unlock(ctx, name, token)
}

// Sub returns the wrapped backend's child namespace, counting into the same
// counters.
func (c *Counting) Sub(name string) (cache.Backend, error) {
	sub, err := c.next.Sub(name)
	if err != nil {
		return nil, err
	}
	return &Counting{next: sub, c: c.c}, nil
}

// Namespace is the wrapped backend's namespace.
func (c *Counting) Namespace() string { return c.next.Namespace() }

// Close closes the wrapped backend; it is not counted.
func (c *Counting) Close() error { return c.next.Close() }
