package reliability

import (
	"context"
	"sync/atomic"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
)

// Counting is a [cache.Store] that passes every call to the store it wraps and
// counts it: reads (Read, ReadMany, Keys, Tagged) and writes (everything that
// may change the store: Write, Delete, DeleteMany, Flush, CollectGarbage, Lock,
// Unlock). It is [cachetest.Wrap] with a counting hook, so every method of
// cache.Store is forwarded and counted, and its Subs count into the same
// counters: a session manager built on it is counted whole. Unlike
// [cachetest.Counter] it keeps no record of the calls, only their numbers, so
// it can sit under a long fuzz run. It is safe for concurrent use.
type Counting struct {
	*cachetest.Wrapped
	reads, writes, locks atomic.Int64
}

// NewCounting wraps s.
func NewCounting(s cache.Store) *Counting {
	c := &Counting{}
	c.Wrapped = cachetest.Wrap(s, c.hook)
	return c
}

func (c *Counting) hook(_ context.Context, call cachetest.Call) error {
	switch call.Op {
	case cachetest.OpRead, cachetest.OpReadMany, cachetest.OpKeys, cachetest.OpTagged:
		c.reads.Add(1)
	case cachetest.OpLock, cachetest.OpUnlock:
		c.locks.Add(1)
		c.writes.Add(1)
	default:
		c.writes.Add(1)
	}
	return nil
}

// Reads is the number of read calls so far.
func (c *Counting) Reads() int64 { return c.reads.Load() }

// Writes is the number of write calls so far.
func (c *Counting) Writes() int64 { return c.writes.Load() }

// Locks is the number of Lock and Unlock calls so far (they count as writes too).
func (c *Counting) Locks() int64 { return c.locks.Load() }

// Calls is the number of calls of either kind so far.
func (c *Counting) Calls() int64 { return c.Reads() + c.Writes() }
