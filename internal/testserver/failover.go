package testserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Timing shared by the Sentinel and Cluster helpers. Generous: the test machines
// are small and shared, and a wait returns as soon as its condition holds.
const (
	pollInterval     = 50 * time.Millisecond // between two looks at the servers' state
	adminTimeout     = time.Second           // dial, read and write of one admin query
	setupTimeout     = 60 * time.Second      // from the first exec to a healthy setup
	promotionTimeout = 60 * time.Second      // WaitForPromotion when ctx has no earlier deadline
)

// Promotion is what a WaitForPromotion helper saw: the server that failed, the
// one that took over its role, and when the helper first saw the takeover
// complete. Detected is at most one poll interval (50 ms) and one round of admin
// queries after the servers agreed; measure a client's recovery from it.
type Promotion struct {
	Old, New *Redis
	Detected time.Time
}

// adminClient is a client for the helpers' own queries: short timeouts, no
// retries and context deadlines honoured, so a dead or paused server costs one
// adminTimeout, never a test's patience. The caller closes it.
func adminClient(addr string) *redis.Client {
	return redis.NewClient(adminOptions(addr))
}

func adminOptions(addr string) *redis.Options {
	return &redis.Options{
		Addr:                  addr,
		DialTimeout:           adminTimeout,
		ReadTimeout:           adminTimeout,
		WriteTimeout:          adminTimeout,
		MaxRetries:            -1,
		DialerRetries:         1,
		ContextTimeoutEnabled: true,
	}
}

// query runs f with a context bounded by adminTimeout (and ctx).
func query[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	return f(ctx)
}

// waitFor calls check every pollInterval until it returns nil, and fails when
// ctx ends or limit has passed, with the last reason check gave.
func waitFor(ctx context.Context, limit time.Duration, what string, check func(context.Context) error) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	last := errors.New("not checked yet")
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() == nil {
			last = err // an error caused by the deadline itself says nothing
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: gave up after %v (%w): %w", what, time.Since(start).Round(time.Millisecond), ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// role returns the first element of ROLE: "master", "slave" or "sentinel".
func role(ctx context.Context, c *redis.Client) (string, error) {
	v, err := query(ctx, func(ctx context.Context) ([]any, error) { return c.Do(ctx, "ROLE").Slice() })
	if err != nil {
		return "", fmt.Errorf("ROLE: %w", err)
	}
	if len(v) == 0 {
		return "", errors.New("ROLE: empty reply")
	}
	s, _ := v[0].(string)
	return s, nil
}

// portOf returns the port of a host:port address.
func portOf(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(p)
}
