// Package cachetest is the conformance suite every [cache.Store] runs: one set of
// tests, one set of benchmarks, the same promises for memory, file, Redis and SQL
// storage. It also has [Wrap], a complete forwarding wrapper of the interface for
// tests that count or fail store calls.
//
// A backend's test calls [Run] with an [OpenFunc] that opens a fresh store in a
// given namespace on one shared underlying store (the same folder, Redis server or
// database), and its benchmark calls [Bench]:
//
//	func TestConformance(t *testing.T) {
//		cachetest.Run(t, "file", func(tb testing.TB, ns string) cache.Store {
//			s, err := filestore.Open(filestore.Options{Dir: dir, Namespace: ns})
//			if err != nil {
//				tb.Fatal(err)
//			}
//			tb.Cleanup(func() { s.Close() })
//			return s
//		}, cachetest.Options{})
//	}
//
// The suite runs every check as a subtest named after the backend
// ("TestConformance/file/Expiry"), so `go test -run 'Conformance/file/FieldCAS'`
// picks one. It uses short real lifetimes (Options.TTL, default 1 s) and never
// fakes the clock, so the same tests run against servers; a backend's suite takes a
// few seconds.
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
	"github.com/fxsession/fxsession/internal/backoff"
)

// OpenFunc opens a fresh store in namespace. Every call of one test must reach the
// same underlying store (same folder, server or database), so that namespace
// isolation is tested for real. The store must use the default value size limit
// ([cache.DefaultMaxValueSize]). The function registers the store's Close with
// tb.Cleanup; the suite closes some stores itself, so Close must tolerate being
// called twice.
type OpenFunc func(tb testing.TB, namespace string) cache.Store

// Options describes a backend to the suite.
type Options struct {
	// TTL is the short lifetime used by the expiry, garbage collection and lock
	// tests; the suite waits a little longer than TTL for things to expire.
	// Default 1 s: the writes and checks a test makes before the lifetime ends
	// must fit in it, also on a loaded machine that stalls the test for a few
	// hundred milliseconds (with 150 ms they did not).
	TTL time.Duration
	// Parallel runs the checks as parallel subtests, so that a store whose time
	// goes into waiting (fsync, network round trips) overlaps its waits. Every
	// check uses its own namespaces, so they never see each other.
	Parallel bool
	// Many is the number of records the iteration checks write (default 2500,
	// enough to cross a backend's batch boundaries).
	Many int
}

// Run runs the conformance suite against the store called name (used in the
// subtest names).
func Run(t *testing.T, name string, open OpenFunc, o Options) {
	t.Helper()
	if o.TTL <= 0 {
		o.TTL = time.Second
	}
	if o.Many <= 0 {
		o.Many = 2500
	}
	s := &suite{open: open, o: o}
	t.Run(name, func(t *testing.T) {
		for _, tc := range []struct {
			name string
			fn   func(*testing.T)
		}{
			{"Basic", s.basic},
			{"ReadFields", s.readFields},
			{"ReadMany", s.readMany},
			{"CreateAndExistence", s.createAndExistence},
			{"NoResurrection", s.noResurrection},
			{"FieldCAS", s.fieldCAS},
			{"Atomic", s.atomic},
			{"RemoveFields", s.removeFields},
			{"ManyFields", s.manyFields},
			{"Versions", s.versions},
			{"Values", s.values},
			{"Expiry", s.expiry},
			{"Tags", s.tags},
			{"TagsMany", s.tagsMany},
			{"Delete", s.delete},
			{"Keys", s.keys},
			{"Flush", s.flush},
			{"CollectGarbage", s.collectGarbage},
			{"CollectGarbageOnce", s.collectGarbageOnce},
			{"Namespaces", s.namespaces},
			{"Sub", s.sub},
			{"InvalidKeys", s.invalidKeys},
			{"ValueTooLarge", s.valueTooLarge},
			{"Context", s.context},
			{"CASCounter", s.casCounter},
			{"ConcurrentFields", s.concurrentFields},
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

// Increment adds one to the decimal counter in field of the record under key with
// a compare-and-set retry loop (reading the field, writing the successor against
// the version read, retrying on [cache.ErrConflict] after a short jittered pause)
// and returns the new value. A missing record or field counts as 0. The suite's
// concurrency check uses it; backends use it in their multi-process tests.
func Increment(ctx context.Context, s cache.Store, key, field string) (int, error) {
	b := backoff.Backoff{Min: 50 * time.Microsecond, Max: 2 * time.Millisecond}
	for {
		var (
			cur    int
			ver    cache.Version
			create bool
		)
		r, err := s.Read(ctx, key, field)
		switch {
		case err == nil:
			if f, ok := r.Field(field); ok {
				n, perr := strconv.Atoi(string(f.Value))
				if perr != nil {
					return 0, fmt.Errorf("cachetest: counter %q/%q holds %q: %w", key, field, f.Value, perr)
				}
				cur, ver = n, f.Version
			}
		case errors.Is(err, cache.ErrNotFound):
			create = true
		default:
			return 0, err
		}
		_, err = s.Write(ctx, key, cache.Write{Create: create, Fields: []cache.FieldWrite{
			cache.SetIf(field, []byte(strconv.Itoa(cur+1)), ver),
		}})
		if err == nil {
			return cur + 1, nil
		}
		if !errors.Is(err, cache.ErrConflict) && !errors.Is(err, cache.ErrNotFound) {
			return 0, err
		}
		if !b.Wait(ctx) {
			return 0, ctx.Err()
		}
	}
}
