package redisstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fxsession/fxsession/cache"
)

// maxGCPasses bounds the passes of one CollectGarbage call.
const maxGCPasses = 1000

// indexEntry is one entry of the expiry index.
type indexEntry struct {
	shard string // the shard's Redis key
	key   string // the record key
	score float64
}

// CollectGarbage removes the records expired by o.Before, at most o.Max, and
// reports each to o.Removed. A pass reads the due entries of the 16 expiry-index
// shards (one pipeline), deletes their records with a script that checks again
// that each has expired and returns it (one pipeline: exactly one collector gets
// each record), and then corrects the index and removes the collected records
// from their tag sets (one pipeline). Passes repeat until o.Max records went or
// nothing is due. At most every 10 minutes per namespace, the call also sweeps
// the stale members out of every tag set (see the package documentation).
func (s *Store) CollectGarbage(ctx context.Context, o cache.GCOptions) (int, error) {
	for _, f := range o.Fields {
		if err := cache.ValidateKey(f); err != nil {
			return 0, fmt.Errorf("redisstore: collect garbage: field: %w", err)
		}
	}
	if err := s.ready(ctx, "collect garbage"); err != nil {
		return 0, err
	}
	limit := o.Max
	if limit <= 0 {
		limit = cache.DefaultGCBatchSize
	}
	before := o.Before
	if before.IsZero() {
		before = time.Now()
	}
	token := "gc-" + newID() + ":"
	removed := 0
	for pass := 0; removed < limit && pass < maxGCPasses; pass++ {
		entries, err := s.dueEntries(ctx, before, min(limit-removed, s.batch))
		if err != nil {
			return removed, s.fail(ctx, "collect garbage", err)
		}
		if len(entries) == 0 {
			break
		}
		n, progress, err := s.collectPass(ctx, entries, before, token, o)
		removed += n
		if err != nil {
			return removed, err
		}
		if !progress {
			break
		}
	}
	if err := s.sweepTags(ctx, token); err != nil {
		return removed, s.fail(ctx, "collect garbage: tag sweep", err)
	}
	return removed, nil
}

// dueEntries returns up to n entries of the expiry index due by before, the
// earliest first, reading every shard in one pipeline.
func (s *Store) dueEntries(ctx context.Context, before time.Time, n int) ([]indexEntry, error) {
	p := s.client.Pipeline()
	cmds := make([]*redis.ZSliceCmd, expiryShards)
	for i := range cmds {
		cmds[i] = p.ZRangeByScoreWithScores(ctx, s.shards[i], &redis.ZRangeBy{
			Min: "-inf", Max: strconv.FormatInt(before.UnixMilli(), 10), Count: int64(n),
		})
	}
	if _, err := p.Exec(ctx); err != nil {
		return nil, err
	}
	var out []indexEntry
	for i, c := range cmds {
		for _, z := range c.Val() {
			if k, ok := z.Member.(string); ok {
				out = append(out, indexEntry{shard: s.shards[i], key: k, score: z.Score})
			}
		}
	}
	slices.SortFunc(out, func(a, b indexEntry) int { return cmp.Compare(a.score, b.score) })
	if len(out) > n {
		out = out[:n]
	}
	return out, nil
}

// collectPass collects the records of entries and fixes the index. It returns
// how many records it removed, and whether it changed anything at all.
func (s *Store) collectPass(ctx context.Context, entries []indexEntry, before time.Time, token string, o cache.GCOptions) (int, bool, error) {
	calls := make([]*call, len(entries))
	for i, e := range entries {
		args := make([]any, 0, 3+len(o.Fields))
		args = append(args, token, before.UnixMilli(), s.tombstoneTTL.Milliseconds())
		for _, f := range o.Fields {
			args = append(args, f)
		}
		calls[i] = scriptCall(s.sc.collect, []string{s.recordKey(e.key), s.graveKey(e.key)}, args...)
	}
	if _, err := s.run(ctx, calls, false); err != nil {
		return 0, false, s.fail(ctx, "collect garbage", err)
	}
	var (
		got      []cache.Record
		fixes    = map[string][]any{}    // shard -> (member, seen score, new score) triples
		untagged = map[string][]string{} // tag -> collected records
		firstErr error
	)
	for i, e := range entries {
		reply, err := calls[i].cmd.Slice()
		if err != nil {
			if firstErr == nil {
				firstErr = s.fail(ctx, "collect garbage "+e.key, err)
			}
			continue
		}
		seen := strconv.FormatFloat(e.score, 'f', -1, 64)
		code, _ := reply[0].(int64)
		switch code {
		case collectGone, collectNoExpiry:
			fixes[e.shard] = append(fixes[e.shard], e.key, seen, "")
		case collectNotDue:
			fixes[e.shard] = append(fixes[e.shard], e.key, seen, reply[1])
		case collectDone:
			r, err := collected(e.key, reply)
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("redisstore: collect garbage: %w", err)
				}
				continue
			}
			got = append(got, r)
			fixes[e.shard] = append(fixes[e.shard], e.key, seen, "")
			for _, t := range r.Tags {
				untagged[t] = append(untagged[t], e.key)
			}
		}
	}
	// The records are gone: report them before anything else can fail.
	if o.Removed != nil {
		for _, r := range got {
			o.Removed(r)
		}
	}
	if firstErr != nil {
		return len(got), true, firstErr
	}
	var upkeep []*call
	for shard, triples := range fixes {
		upkeep = append(upkeep, scriptCall(s.sc.indexFix, []string{shard}, triples...))
	}
	limit := time.Now().Add(-s.tagGrace)
	for tag, keys := range untagged {
		upkeep = append(upkeep, pruneCall(s.sc.tagPrune, s.tagKey(tag), keys, limit))
	}
	if len(upkeep) == 0 {
		return len(got), len(got) > 0, nil
	}
	if _, err := s.run(ctx, upkeep, false); err != nil {
		return len(got), true, s.fail(ctx, "collect garbage: index upkeep", err)
	}
	progress := len(got) > 0
	for _, c := range upkeep {
		n, err := c.cmd.Int()
		if err != nil {
			return len(got), true, s.fail(ctx, "collect garbage: index upkeep", err)
		}
		if n > 0 && c.script == s.sc.indexFix {
			progress = true
		}
	}
	return len(got), progress, nil
}

// collected turns a collect script's reply into the record removed.
func collected(key string, reply []any) (cache.Record, error) {
	r := cache.Record{Key: key}
	if len(reply) < 4 || len(reply)%2 != 0 {
		return r, fmt.Errorf("record %q: unexpected collect reply of %d items", key, len(reply))
	}
	vs, _ := reply[1].(string)
	es, _ := reply[2].(string)
	tags, _ := reply[3].(string)
	v, err := strconv.ParseUint(vs, 10, 64)
	if err != nil {
		return r, fmt.Errorf("record %q: corrupt version %q", key, vs)
	}
	ms, err := strconv.ParseInt(es, 10, 64)
	if err != nil {
		return r, fmt.Errorf("record %q: corrupt expiry %q", key, es)
	}
	r.Version, r.Expires = cache.Version(v), time.UnixMilli(ms)
	if tags != "" {
		r.Tags = strings.Split(tags, ",")
	}
	for i := 4; i+1 < len(reply); i += 2 {
		name, _ := reply[i].(string)
		stored, _ := reply[i+1].(string)
		f, err := decodeField(name, stored)
		if err != nil {
			return r, fmt.Errorf("record %q: %w", key, err)
		}
		r.Fields = append(r.Fields, f)
	}
	return r, nil
}

// sweepTags removes stale members from every tag set of the namespace, at most
// once per sweepEvery across all processes (a lock with that lifetime decides
// who sweeps). It checks the members older than tagGrace, a page at a time: the
// stale ones are removed (if still old), the valid ones rescored tagRecheck into
// the future so that the next sweeps skip them.
func (s *Store) sweepTags(ctx context.Context, token string) error {
	if s.sweepEvery > 0 {
		ok, err := s.client.SetNX(ctx, s.sweepKey(), token, s.sweepEvery).Result()
		if err != nil || !ok {
			return err
		}
	}
	prefix := s.prefix + "t:{"
	return s.scan(ctx, prefix+"*", "zset", func(node *redis.Client, keys []string) (bool, error) {
		now := time.Now()
		limit := now.Add(-s.tagGrace)
		p := node.Pipeline()
		olds := make([]*redis.StringSliceCmd, len(keys))
		for i, tk := range keys {
			olds[i] = p.ZRangeByScore(ctx, tk, &redis.ZRangeBy{
				Min: "-inf", Max: "(" + strconv.FormatInt(limit.UnixMilli(), 10), Count: int64(s.batch),
			})
		}
		if _, err := p.Exec(ctx); err != nil {
			return false, err
		}
		var (
			tkeys, members []string
		)
		for i, c := range olds {
			for _, m := range c.Val() {
				tkeys = append(tkeys, keys[i])
				members = append(members, m)
			}
		}
		for lo := 0; lo < len(members); lo += s.batch {
			hi := min(lo+s.batch, len(members))
			if err := s.sweepPage(ctx, prefix, tkeys[lo:hi], members[lo:hi], limit, now); err != nil {
				return false, err
			}
		}
		return true, nil
	})
}

// sweepPage checks the members of tag sets (tkeys[i] holds members[i]) against
// their records and fixes the sets, in two round trips.
func (s *Store) sweepPage(ctx context.Context, prefix string, tkeys, members []string, limit, now time.Time) error {
	rks := make([]string, len(members))
	for i, m := range members {
		rks[i] = s.recordKey(m)
	}
	cmds, err := liveness(ctx, s.client, rks)
	if err != nil {
		return err
	}
	stale := map[string][]string{}
	var calls []*call
	for i, m := range members {
		tag, ok := unwrap(tkeys[i], prefix)
		if !ok {
			continue
		}
		if tags, ok := alive(cmds[i], now.UnixMilli()); ok && hasTag(tags, tag) {
			calls = append(calls, plainCall(tkeys[i], "ZADD", tkeys[i], "XX", now.Add(s.tagRecheck).UnixMilli(), m))
			continue
		}
		stale[tkeys[i]] = append(stale[tkeys[i]], m)
	}
	for tk, ms := range stale {
		calls = append(calls, pruneCall(s.sc.tagPrune, tk, ms, limit))
	}
	if len(calls) == 0 {
		return nil
	}
	if _, err := s.run(ctx, calls, false); err != nil {
		return err
	}
	for _, c := range calls {
		if err := c.cmd.Err(); err != nil {
			return err
		}
	}
	return nil
}
