package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// gcLockName is the cache lock that lets one process collect at a time.
const gcLockName = "session-gc"

// gcLockTTL bounds how long a crashed collector keeps others out.
const gcLockTTL = 5 * time.Minute

// CollectGarbage removes expired sessions (inactivity timeout, the session's own
// lifetime, or the absolute lifetime), at most Config.GCMaxPerRun per call,
// reports each to the listeners (EventExpired: exactly one collector among the
// processes sharing the store reports a session) and returns how many it
// removed; the store's own leftovers go too. It holds the cache lock
// "session-gc" while it runs: when another process is collecting, it returns an
// error matching cache.ErrLocked. Requests never collect.
func (m *Manager) CollectGarbage(ctx context.Context) (int, error) {
	token, err := m.store.Lock(ctx, gcLockName, gcLockTTL)
	if err != nil {
		return 0, fmt.Errorf("session: garbage collection: %w", err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.commitTimeout)
		defer cancel()
		if _, err := m.store.Unlock(uctx, gcLockName, token); err != nil {
			m.log.Warn("releasing the session collector lock", "error", err)
		}
	}()
	now := m.cfg.now()
	n, err := m.store.CollectGarbage(ctx, cache.GCOptions{
		Before: now,
		Max:    m.cfg.gcMax,
		Fields: []string{fieldMeta, fieldActivity},
		Removed: func(r cache.Record) {
			m.log.Debug("session destroyed", "session", r.Key, "reason", "expired")
			m.emit(Event{Kind: EventExpired, Ref: r.Key, Time: now, Metadata: m.recordMetadata(r)})
		},
	})
	m.tel.SessionsExpired(ctx, n)
	if err != nil {
		return n, fmt.Errorf("session: garbage collection: %w", err)
	}
	return n, nil
}

// RunCollector runs CollectGarbage every Config.GCInterval until ctx ends. [Module]
// runs it for the application's lifetime; call it yourself (in a goroutine)
// when using [New] directly. With GCInterval Never it returns at once.
func (m *Manager) RunCollector(ctx context.Context) {
	if m.cfg.gcInterval <= 0 {
		return
	}
	t := time.NewTicker(m.cfg.gcInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := m.CollectGarbage(ctx)
		switch {
		case errors.Is(err, cache.ErrLocked):
			m.log.Debug("session garbage collection skipped: another process is collecting")
		case err != nil && ctx.Err() == nil:
			m.log.Error("session garbage collection", "error", err, "removed", n)
		case n > 0:
			m.log.Info("session garbage collection", "removed", n)
		}
	}
}
