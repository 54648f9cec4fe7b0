package scope

import (
	"context"
	"sync"
)

// keyedLocks serialises the Updates of one object of one session within this
// process, so that concurrent requests of a session wait for each other instead
// of spending their compare-and-set retries against each other; the retries
// then only absorb writers in other processes.
//
// A lock exists while someone holds or waits for it; released locks go to a
// free list, so an uncontended lock and unlock allocate nothing.
type keyedLocks struct {
	mu   sync.Mutex
	m    map[lockKey]*keyLock
	free []*keyLock
}

// lockKey names one object of one session: the session's hashed ID and the
// type's index in the registry.
type lockKey struct {
	sess string
	idx  int
}

type keyLock struct {
	ch   chan struct{}
	refs int
}

// lock takes the lock called key, waiting at most until ctx ends. Pass the
// returned lock to unlock.
func (k *keyedLocks) lock(ctx context.Context, key lockKey) (*keyLock, error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[lockKey]*keyLock{}
	}
	l := k.m[key]
	if l == nil {
		if n := len(k.free); n > 0 {
			l = k.free[n-1]
			k.free[n-1] = nil
			k.free = k.free[:n-1]
		} else {
			l = &keyLock{ch: make(chan struct{}, 1)}
		}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()

	select {
	case l.ch <- struct{}{}:
		return l, nil
	default:
	}
	select {
	case l.ch <- struct{}{}:
		return l, nil
	case <-ctx.Done():
		k.release(key, l)
		return nil, ctx.Err()
	}
}

// unlock releases a lock taken by lock.
func (k *keyedLocks) unlock(key lockKey, l *keyLock) {
	<-l.ch
	k.release(key, l)
}

func (k *keyedLocks) release(key lockKey, l *keyLock) {
	k.mu.Lock()
	l.refs--
	if l.refs == 0 {
		delete(k.m, key)
		if len(k.free) < 64 {
			k.free = append(k.free, l)
		}
	}
	k.mu.Unlock()
}
