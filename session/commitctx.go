package session

import (
	"context"
	"sync"
	"time"
)

// commitContext is the context of a commit point: the request's values without
// its cancellation, ending at a deadline (CommitTimeout) and when the point
// ends — what context.WithTimeout(context.WithoutCancel(r.Context()), …) gives,
// kept in the request's state so that a point costs no allocation. Its Done
// channel and timer are made only when someone asks for Done (a store that
// waits on the network); Err compares the clock with the deadline otherwise.
type commitContext struct {
	parent   context.Context // context.WithoutCancel of the request's context
	deadline time.Time

	mu    sync.Mutex
	done  chan struct{}
	timer *time.Timer
	err   error
}

// begin readies c for a commit point ending at deadline.
func (c *commitContext) begin(deadline time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = deadline
	c.done, c.timer, c.err = nil, nil, nil
}

// kept reports whether someone asked for the Done channel of a past commit
// point (and may still wait on it): c must then not be restarted.
func (c *commitContext) kept() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done != nil
}

// end ends the commit point: the context is canceled (as a deferred cancel
// would) for anyone still holding it.
func (c *commitContext) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.err == nil {
		c.err = context.Canceled
		if c.done != nil {
			close(c.done)
		}
	}
}

// Deadline returns the commit point's deadline.
func (c *commitContext) Deadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadline, true
}

// Value looks key up in the request's context (without its cancellation).
func (c *commitContext) Value(key any) any { return c.parent.Value(key) }

// Err reports context.DeadlineExceeded once the deadline passed and
// context.Canceled once the commit point ended.
func (c *commitContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil && !time.Now().Before(c.deadline) {
		c.expireLocked()
	}
	return c.err
}

// Done returns a channel closed at the deadline or when the commit point ends.
func (c *commitContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done != nil {
		return c.done
	}
	c.done = make(chan struct{})
	if c.err != nil {
		close(c.done)
		return c.done
	}
	d := time.Until(c.deadline)
	if d <= 0 {
		c.expireLocked()
		return c.done
	}
	done := c.done
	c.timer = time.AfterFunc(d, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.done == done && c.err == nil {
			c.expireLocked()
		}
	})
	return c.done
}

func (c *commitContext) expireLocked() {
	c.err = context.DeadlineExceeded
	if c.done != nil {
		close(c.done)
	}
}
