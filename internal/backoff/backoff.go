// Package backoff is the one retry pause of fxsession: a jittered pause that
// doubles from Min up to Max, bounded by a context and an optional deadline. Lock
// waits, compare-and-set retries and store retries all use it.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff hands out growing, jittered pauses. The zero value pauses from 1 ms up
// to 64 ms with no deadline. It is not safe for concurrent use: make one per
// retry loop.
type Backoff struct {
	// Min is the first pause (default 1 ms); Max the largest (default 64 ms).
	Min, Max time.Duration
	// Deadline, when set, ends the waiting: Wait returns false once it passed,
	// and no pause goes beyond it.
	Deadline time.Time

	next time.Duration
}

// Wait sleeps for the next pause (between half and one and a half times the
// current step, which then doubles) and reports whether the caller should try
// again: false when ctx ended (ctx.Err() tells why) or the deadline passed.
func (b *Backoff) Wait(ctx context.Context) bool {
	if b.next == 0 {
		b.next = b.Min
		if b.next <= 0 {
			b.next = time.Millisecond
		}
	}
	limit := b.Max
	if limit <= 0 {
		limit = 64 * time.Millisecond
	}
	d := b.next/2 + rand.N(b.next)
	if !b.Deadline.IsZero() {
		left := time.Until(b.Deadline)
		if left <= 0 {
			return false
		}
		d = min(d, left)
	}
	b.next = min(2*b.next, limit)
	return Sleep(ctx, d) == nil
}

// Sleep pauses for d or until ctx ends, and returns ctx.Err() in the second case.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
