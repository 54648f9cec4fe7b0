package redisstore

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fxsession/fxsession/cache"
)

// masters returns a client per master: the store's client on one server (or
// Sentinel), each master of a cluster (after reading the slot map again).
func (s *Store) masters(ctx context.Context) ([]*redis.Client, error) {
	if s.cluster == nil {
		return []*redis.Client{s.client.(*redis.Client)}, nil
	}
	var (
		mu  sync.Mutex
		out []*redis.Client
	)
	err := s.cluster.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		out = append(out, c)
		mu.Unlock()
		return nil
	})
	return out, err
}

// scan walks the keys matching pattern (of type typ; "" for any) on every
// master, one SCAN page of [Options.BatchSize] at a time, and calls page with
// each page and the node it came from; page returns false to stop. SCAN may
// return a key twice.
func (s *Store) scan(ctx context.Context, pattern, typ string, page func(node *redis.Client, keys []string) (bool, error)) error {
	nodes, err := s.masters(ctx)
	if err != nil {
		return err
	}
	for _, node := range nodes {
		var cursor uint64
		for {
			var keys []string
			if typ == "" {
				keys, cursor, err = node.Scan(ctx, cursor, pattern, int64(s.batch)).Result()
			} else {
				keys, cursor, err = node.ScanType(ctx, cursor, pattern, int64(s.batch), typ).Result()
			}
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				more, err := page(node, keys)
				if err != nil || !more {
					return err
				}
			}
			if cursor == 0 {
				break
			}
			if s.closed.Load() {
				return fmt.Errorf("redisstore: %w", cache.ErrClosed)
			}
		}
	}
	return nil
}

// liveness reads #v, #e and #t of the records under the Redis keys rks, in one
// pipeline on c.
func liveness(ctx context.Context, c redis.Cmdable, rks []string) ([]*redis.SliceCmd, error) {
	p := c.Pipeline()
	cmds := make([]*redis.SliceCmd, len(rks))
	for i, rk := range rks {
		cmds[i] = p.HMGet(ctx, rk, fieldVersion, fieldExpires, fieldTags)
	}
	_, err := p.Exec(ctx)
	return cmds, err
}

// alive reports whether an HMGET of #v, #e, #t found a live record at now
// (Unix ms), and its tags.
func alive(cmd *redis.SliceCmd, nowMs int64) (tags string, ok bool) {
	vals := cmd.Val()
	if len(vals) != 3 || vals[0] == nil {
		return "", false
	}
	if e, _ := vals[1].(string); e != "" {
		if ms, err := strconv.ParseInt(e, 10, 64); err != nil || ms <= nowMs {
			return "", false
		}
	}
	tags, _ = vals[2].(string)
	return tags, true
}

// hasTag reports whether the comma-separated list tags holds tag.
func hasTag(tags, tag string) bool {
	for t := range strings.SplitSeq(tags, ",") {
		if t == tag {
			return true
		}
	}
	return false
}

// Keys streams the keys of the namespace's live records: SCAN over every master,
// each page checked for expiry in one more round trip. A key is yielded once
// (the iteration remembers the keys it yielded).
func (s *Store) Keys(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if err := s.ready(ctx, "keys"); err != nil {
			yield("", err)
			return
		}
		prefix := s.prefix + "r:{"
		seen := map[string]struct{}{}
		stopped := false
		err := s.scan(ctx, prefix+"*", "hash", func(node *redis.Client, keys []string) (bool, error) {
			cmds, err := liveness(ctx, node, keys)
			if err != nil {
				return false, err
			}
			now := time.Now().UnixMilli()
			for i, rk := range keys {
				if _, ok := alive(cmds[i], now); !ok {
					continue
				}
				k, ok := unwrap(rk, prefix)
				if !ok {
					continue
				}
				if _, dup := seen[k]; dup {
					continue
				}
				seen[k] = struct{}{}
				if !yield(k, nil) {
					stopped = true
					return false, nil
				}
			}
			return true, nil
		})
		if err != nil && !stopped {
			yield("", s.fail(ctx, "keys", err))
		}
	}
}

// Tagged streams the keys of the live records carrying tag: ZSCAN of the tag's
// set, each page checked against the records' own tags in one more round trip
// (a pipeline over the nodes holding them). Stale members (records gone, expired
// or no longer tagged) are skipped, and removed when older than a minute.
func (s *Store) Tagged(ctx context.Context, tag string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if err := cache.ValidateKey(tag); err != nil {
			yield("", fmt.Errorf("redisstore: tagged: %w", err))
			return
		}
		if err := s.ready(ctx, "tagged"); err != nil {
			yield("", err)
			return
		}
		tk := s.tagKey(tag)
		seen := map[string]struct{}{}
		var cursor uint64
		for {
			pairs, next, err := s.client.ZScan(ctx, tk, cursor, "", int64(s.batch)).Result()
			if err != nil {
				yield("", s.fail(ctx, "tagged "+tag, err))
				return
			}
			cursor = next
			members := make([]string, 0, len(pairs)/2)
			scores := make([]string, 0, len(pairs)/2)
			for i := 0; i+1 < len(pairs); i += 2 {
				members = append(members, pairs[i])
				scores = append(scores, pairs[i+1])
			}
			if len(members) > 0 {
				if !s.taggedPage(ctx, tag, tk, members, scores, seen, yield) {
					return
				}
			}
			if cursor == 0 {
				return
			}
		}
	}
}

// taggedPage checks one page of a tag set's members, yields the valid ones and
// removes the old stale ones; it returns false when the iteration is over.
func (s *Store) taggedPage(ctx context.Context, tag, tk string, members, scores []string, seen map[string]struct{}, yield func(string, error) bool) bool {
	rks := make([]string, len(members))
	for i, m := range members {
		rks[i] = s.recordKey(m)
	}
	cmds, err := liveness(ctx, s.client, rks)
	if err != nil {
		yield("", s.fail(ctx, "tagged "+tag, err))
		return false
	}
	now := time.Now()
	var stale []string
	for i, m := range members {
		tags, ok := alive(cmds[i], now.UnixMilli())
		if !ok || !hasTag(tags, tag) {
			if old(scores[i], now.Add(-s.tagGrace)) {
				stale = append(stale, m)
			}
			continue
		}
		if _, dup := seen[m]; dup {
			continue
		}
		seen[m] = struct{}{}
		if !yield(m, nil) {
			return false
		}
	}
	if len(stale) > 0 {
		if err := s.pruneTag(ctx, tk, stale, now.Add(-s.tagGrace)); err != nil {
			yield("", s.fail(ctx, "tagged "+tag, err))
			return false
		}
	}
	return true
}

// old reports whether a sorted-set score (Unix ms) is before t.
func old(score string, t time.Time) bool {
	ms, err := strconv.ParseFloat(score, 64)
	return err == nil && ms < float64(t.UnixMilli())
}

// pruneTag removes members from the tag set tk when no write added them since
// limit: one script.
func (s *Store) pruneTag(ctx context.Context, tk string, members []string, limit time.Time) error {
	c := pruneCall(s.sc.tagPrune, tk, members, limit)
	if _, err := s.run(ctx, []*call{c}, false); err != nil {
		return err
	}
	return c.cmd.Err()
}

func pruneCall(sc *redis.Script, tk string, members []string, limit time.Time) *call {
	args := make([]any, 0, 1+len(members))
	args = append(args, limit.UnixMilli())
	for _, m := range members {
		args = append(args, m)
	}
	return scriptCall(sc, []string{tk}, args...)
}

// Flush removes every record, tag set, index shard and lock of the namespace:
// SCAN over every master, each page unlinked in one pipeline on its node. Sub
// namespaces are untouched (their keys start differently).
func (s *Store) Flush(ctx context.Context) error {
	if err := s.ready(ctx, "flush"); err != nil {
		return err
	}
	err := s.scan(ctx, s.prefix+"?:{*", "", func(node *redis.Client, keys []string) (bool, error) {
		p := node.Pipeline()
		for _, k := range slices.Compact(keys) {
			p.Unlink(ctx, k) // one key per command: a cluster refuses keys of several slots
		}
		_, err := p.Exec(ctx)
		return err == nil, err
	})
	if err != nil {
		return s.fail(ctx, "flush", err)
	}
	return nil
}
