// Package cachetest is the conformance suite every [cache.Backend] runs: one set
// of tests, one set of benchmarks, the same promises for memory, file, Redis and
// SQL storage.
//
// A backend's test calls [Run] (or [RunWith] for backends with native expiry)
// with an [OpenFunc] that opens a fresh backend in a given namespace on one shared
// underlying store (the same folder, Redis server or database), and its benchmark
// calls [Bench]:
//
//	func TestConformance(t *testing.T) {
//		cachetest.Run(t, "file", func(tb testing.TB, ns string) cache.Backend {
//			s, err := filestore.Open(filestore.Options{Dir: dir, Namespace: ns})
//			if err != nil {
//				tb.Fatal(err)
//			}
//			tb.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The suite runs every check as a subtest named after the backend
// ("TestConformance/file/Expiry"), so `go test -run 'Conformance/file/CAS'` picks
// one. It uses short real lifetimes (Options.TTL, default 150 ms) and never fakes
// the clock, so the same tests run against servers; a backend's suite takes a few
// seconds.
package cachetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// OpenFunc opens a fresh backend in namespace. Every call of one test must reach
// the same underlying store (same folder, server or database), so that namespace
// isolation is tested for real. The backend must use the default value size limit
// ([cache.DefaultMaxValueSize]). The function registers the backend's Close with
// tb.Cleanup; the suite closes some backends itself, so Close must tolerate being
// called twice (the second call returns nil or an error matching
// [cache.ErrClosed]).
type OpenFunc func(tb testing.TB, namespace string) cache.Backend

// Options describes a backend's documented quirks to the suite.
type Options struct {
	// NativeExpiry says that the store removes expired entries itself (Redis), so
	// CollectGarbage must return 0. Otherwise CollectGarbage must report every
	// expired entry it removed.
	NativeExpiry bool
	// TTL is the short lifetime used by the expiry, garbage collection and lock
	// tests; the suite waits a little longer than TTL for things to expire.
	// Default 150 ms. Raise it only for a store with a coarse clock.
	TTL time.Duration
	// Parallel runs the checks as parallel subtests, so that a store whose
	// time goes into waiting (fsync, network round trips) overlaps its waits.
	// Every check uses its own namespaces, so they never see each other.
	Parallel bool
}

// Run runs the conformance suite against the backend called name (used in the
// subtest names) with default [Options].
func Run(t *testing.T, name string, open OpenFunc) {
	t.Helper()
	RunWith(t, name, open, Options{})
}

// RunWith runs the conformance suite against the backend called name with the
// given options.
func RunWith(t *testing.T, name string, open OpenFunc, o Options) {
	t.Helper()
	if o.TTL <= 0 {
		o.TTL = 150 * time.Millisecond
	}
	s := &suite{open: open, o: o}
	t.Run(name, func(t *testing.T) {
		for _, tc := range []struct {
			name string
			fn   func(*testing.T)
		}{
			{"Basic", s.basic},
			{"GetManySetMany", s.getManySetMany},
			{"Expiry", s.expiry},
			{"Tags", s.tags},
			{"Flush", s.flush},
			{"All", s.all},
			{"CollectGarbage", s.collectGarbage},
			{"Namespaces", s.namespaces},
			{"Sub", s.sub},
			{"InvalidKeys", s.invalidKeys},
			{"ValueTooLarge", s.valueTooLarge},
			{"Context", s.context},
			{"Versions", s.versions},
			{"CompareAndSet", s.compareAndSet},
			{"CASCounter", s.casCounter},
			{"Lock", s.lock},
			{"LockExpiry", s.lockExpiry},
			{"LockExclusion", s.lockExclusion},
			{"WaitLock", s.waitLock},
			{"Closed", s.closed},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if o.Parallel {
					t.Parallel()
				}
				tc.fn(t)
			})
		}
	})
}

// Namespace returns a fresh, valid namespace name starting with prefix, unlikely
// to exist in a shared store (a Redis server or database used by many tests).
func Namespace(prefix string) string {
	return prefix + strconv.FormatUint(rand.Uint64(), 36)
}

// Increment adds one to the decimal counter stored under key in b with a
// CompareAndSet retry loop (reading the entry, writing the successor against the
// version read, retrying on [cache.ErrConflict] after a short jittered pause)
// and returns the new value. A missing key counts as 0. The suite's concurrency
// test uses it; backends use it in their multi-process tests.
func Increment(ctx context.Context, b cache.Backend, key string) (int, error) {
	for attempt := 0; ; attempt++ {
		var (
			cur int
			ver cache.Version
		)
		e, err := b.Get(ctx, key)
		switch {
		case err == nil:
			n, perr := strconv.Atoi(string(e.Value))
			if perr != nil {
				return 0, fmt.Errorf("cachetest: counter %q holds %q: %w", key, e.Value, perr)
			}
			cur, ver = n, e.Version
		case errors.Is(err, cache.ErrNotFound):
		default:
			return 0, err
		}
		_, err = b.CompareAndSet(ctx, cache.Item{Key: key, Value: []byte(strconv.Itoa(cur + 1))}, ver)
		if err == nil {
			return cur + 1, nil
		}
		if !errors.Is(err, cache.ErrConflict) {
			return 0, err
		}
		// Back off a little so that many contenders do not livelock.
		pause := time.Duration(rand.N(min(attempt+1, 20))) * 50 * time.Microsecond
		if pause > 0 {
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return 0, ctx.Err()
			case <-t.C:
			}
		}
	}
}
