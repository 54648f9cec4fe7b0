package redisstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fxsession/fxsession/cache"
)

// Lock takes the lock called name for ttl (rounded up to a millisecond): one SET
// NX PX GET of a random token on the lock's own key. The GET makes a SET that
// go-redis sent again after a lost reply recognise the token it wrote the first
// time.
func (s *Store) Lock(ctx context.Context, name string, ttl time.Duration) (string, error) {
	if err := cache.ValidateKey(name); err != nil {
		return "", fmt.Errorf("redisstore: lock: %w", err)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("redisstore: lock %q: lifetime %v is not positive", name, ttl)
	}
	if err := s.ready(ctx, "lock"); err != nil {
		return "", err
	}
	token := rand.Text()
	ttl = (ttl + time.Millisecond - 1).Truncate(time.Millisecond)
	prev, err := s.client.SetArgs(ctx, s.lockKey(name), token, redis.SetArgs{Mode: "NX", TTL: ttl, Get: true}).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return token, nil // it was free: ours now
	case err != nil:
		return "", s.fail(ctx, "lock "+name, err)
	case prev == token:
		return token, nil // our own SET, sent again
	default:
		return "", fmt.Errorf("redisstore: lock %q: %w", name, cache.ErrLocked)
	}
}

// Unlock releases the lock if token still owns it: one script.
func (s *Store) Unlock(ctx context.Context, name, token string) (bool, error) {
	if err := cache.ValidateKey(name); err != nil {
		return false, fmt.Errorf("redisstore: unlock: %w", err)
	}
	if err := s.ready(ctx, "unlock"); err != nil {
		return false, err
	}
	c := scriptCall(s.sc.unlock, []string{s.lockKey(name)}, token)
	if _, err := s.run(ctx, []*call{c}, false); err != nil {
		return false, s.fail(ctx, "unlock "+name, err)
	}
	n, err := c.cmd.Int()
	if err != nil {
		return false, s.fail(ctx, "unlock "+name, err)
	}
	return n == 1, nil
}
