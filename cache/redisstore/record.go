package redisstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fxsession/fxsession/cache"
)

// Internal fields of a record's hash (see the package documentation).
const (
	fieldVersion = "#v"
	fieldExpires = "#e"
	fieldTags    = "#t"
)

// versionLen is the size of the version prefix of every field value.
const versionLen = 8

// readCmd queues (on a pipeline) or runs (on a client) the command that reads
// the record under the Redis key rk: HGETALL, or HMGET of the internal fields and
// the fields named.
func readCmd(ctx context.Context, c redis.Cmdable, rk string, fields []string) redis.Cmder {
	if len(fields) == 0 {
		return c.HGetAll(ctx, rk)
	}
	names := make([]string, 0, 3+len(fields))
	names = append(names, fieldVersion, fieldExpires, fieldTags)
	for _, f := range fields {
		if !slices.Contains(names[3:], f) {
			names = append(names, f)
		}
	}
	return c.HMGet(ctx, rk, names...)
}

// decodeRecord turns the reply of readCmd into a record; ok is false when the
// record is absent or expired at now.
func decodeRecord(key string, cmd redis.Cmder, now time.Time) (r cache.Record, ok bool, err error) {
	r.Key = key
	var version, expires, tags string
	switch cmd := cmd.(type) {
	case *redis.MapStringStringCmd:
		m, err := cmd.Result()
		if err != nil {
			return r, false, err
		}
		version, expires, tags = m[fieldVersion], m[fieldExpires], m[fieldTags]
		if version == "" {
			return cache.Record{Key: key}, false, nil
		}
		r.Fields = make([]cache.Field, 0, len(m))
		for name, v := range m {
			if strings.HasPrefix(name, "#") {
				continue
			}
			f, err := decodeField(name, v)
			if err != nil {
				return cache.Record{Key: key}, false, fmt.Errorf("record %q: %w", key, err)
			}
			r.Fields = append(r.Fields, f)
		}
		slices.SortFunc(r.Fields, func(a, b cache.Field) int { return strings.Compare(a.Name, b.Name) })
	case *redis.SliceCmd:
		vals, err := cmd.Result()
		if err != nil {
			return r, false, err
		}
		if len(vals) < 3 || vals[0] == nil {
			return cache.Record{Key: key}, false, nil
		}
		version, _ = vals[0].(string)
		expires, _ = vals[1].(string)
		tags, _ = vals[2].(string)
		names := cmd.Args()[5:] // hmget, key, #v, #e, #t, names...
		r.Fields = make([]cache.Field, 0, len(names))
		for i, v := range vals[3:] {
			s, present := v.(string)
			if !present {
				continue
			}
			f, err := decodeField(names[i].(string), s)
			if err != nil {
				return cache.Record{Key: key}, false, fmt.Errorf("record %q: %w", key, err)
			}
			r.Fields = append(r.Fields, f)
		}
	default:
		return r, false, fmt.Errorf("redisstore: unexpected read command %T", cmd)
	}
	v, err := strconv.ParseUint(version, 10, 64)
	if err != nil || v == 0 {
		return cache.Record{Key: key}, false, fmt.Errorf("record %q: corrupt version %q", key, version)
	}
	r.Version = cache.Version(v)
	if expires != "" {
		ms, err := strconv.ParseInt(expires, 10, 64)
		if err != nil {
			return cache.Record{Key: key}, false, fmt.Errorf("record %q: corrupt expiry %q", key, expires)
		}
		r.Expires = time.UnixMilli(ms)
		if cache.Expired(r.Expires, now) {
			return cache.Record{Key: key}, false, nil
		}
	}
	if tags != "" {
		r.Tags = strings.Split(tags, ",")
	}
	return r, true, nil
}

// decodeField splits a stored field value into its version and value.
func decodeField(name, stored string) (cache.Field, error) {
	if len(stored) < versionLen {
		return cache.Field{}, fmt.Errorf("field %q: corrupt value of %d bytes", name, len(stored))
	}
	return cache.Field{
		Name:    name,
		Version: cache.Version(binary.BigEndian.Uint64([]byte(stored[:versionLen]))),
		Value:   []byte(stored[versionLen:]),
	}, nil
}

// Read reads the record under key: one HGETALL, or one HMGET of the fields
// named.
func (s *Store) Read(ctx context.Context, key string, fields ...string) (cache.Record, error) {
	if err := cache.ValidateKeys(key, fields); err != nil {
		return cache.Record{}, fmt.Errorf("redisstore: read: %w", err)
	}
	if err := s.ready(ctx, "read"); err != nil {
		return cache.Record{}, err
	}
	cmd := readCmd(ctx, s.client, s.recordKey(key), fields)
	if err := cmd.Err(); err != nil {
		return cache.Record{}, s.fail(ctx, "read "+key, err)
	}
	r, ok, err := decodeRecord(key, cmd, time.Now())
	if err != nil {
		return cache.Record{}, fmt.Errorf("redisstore: read: %w", err)
	}
	if !ok {
		return cache.Record{}, fmt.Errorf("redisstore: read %q: %w", key, cache.ErrNotFound)
	}
	return r, nil
}

// ReadMany reads several records in one pipeline (on a cluster, sent to every
// node concerned at once).
func (s *Store) ReadMany(ctx context.Context, keys []string, fields ...string) ([]cache.Record, error) {
	for _, k := range keys {
		if err := cache.ValidateKeys(k, fields); err != nil {
			return nil, fmt.Errorf("redisstore: read: %w", err)
		}
	}
	if err := s.ready(ctx, "read"); err != nil {
		return nil, err
	}
	out := make([]cache.Record, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	p := s.client.Pipeline()
	cmds := make([]redis.Cmder, len(keys))
	for i, k := range keys {
		cmds[i] = readCmd(ctx, p, s.recordKey(k), fields)
	}
	if _, err := p.Exec(ctx); err != nil {
		return nil, s.fail(ctx, "read many", err)
	}
	now := time.Now()
	for i, k := range keys {
		r, ok, err := decodeRecord(k, cmds[i], now)
		if err != nil {
			return nil, fmt.Errorf("redisstore: read many: %w", err)
		}
		if !ok {
			r = cache.Record{Key: k}
		}
		out[i] = r
	}
	return out, nil
}

// newID returns a random identifier of a write or a collector's call (unique,
// not secret).
func newID() string {
	return strconv.FormatUint(rand.Uint64(), 36)
}

// expiryMillis is t in Unix milliseconds, kept within what the scripts' numbers
// hold exactly: a time before 1970 is 1970 (expired either way).
func expiryMillis(t time.Time) int64 {
	const maxMillis = 1 << 50 // year 37648
	return min(max(t.UnixMilli(), 1), maxMillis)
}

// Write applies w to the record under key: one script on the record's slot,
// pipelined with a ZADD to the tag index per tag added and one to the expiry
// index when the expiry moves (sent before the script, so that on one server the
// index never lacks an entry the record has). In the durability mode the round
// trip ends with WAIT.
//
// An error matching [cache.ErrUnavailable] leaves the write's fate open: it may
// have been applied (the reply was lost, an index update failed, or too few
// replicas acknowledged it).
func (s *Store) Write(ctx context.Context, key string, w cache.Write) (cache.Version, error) {
	if err := cache.ValidateWrite(key, w, s.maxValue); err != nil {
		return 0, fmt.Errorf("redisstore: write: %w", err)
	}
	if err := s.ready(ctx, "write"); err != nil {
		return 0, err
	}
	calls, script := s.writeCalls(key, w, time.Now(), newID())
	replicaErr, err := s.run(ctx, calls, true)
	if err != nil {
		return 0, s.fail(ctx, "write "+key, err)
	}
	reply, err := script.cmd.Slice()
	if err != nil {
		return 0, s.fail(ctx, "write "+key, err)
	}
	code, _ := reply[0].(int64)
	switch code {
	case writeOK:
	case writeExists:
		return 0, fmt.Errorf("redisstore: create %q: it exists: %w", key, cache.ErrConflict)
	case writeMissing:
		return 0, fmt.Errorf("redisstore: write %q: %w", key, cache.ErrNotFound)
	case writeConflict:
		return 0, fmt.Errorf("redisstore: write %q: field %q has version %v, not the one expected: %w", key, reply[1], reply[2], cache.ErrConflict)
	default:
		return 0, fmt.Errorf("redisstore: write %q: unexpected script reply %v", key, reply)
	}
	vs, _ := reply[1].(string)
	v, err := strconv.ParseUint(vs, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("redisstore: write %q: unexpected version %q", key, vs)
	}
	for _, c := range calls[:len(calls)-1] {
		if err := c.cmd.Err(); err != nil {
			return 0, s.fail(ctx, fmt.Sprintf("write %q: index %s (the record was written)", key, c.key), err)
		}
	}
	if replicaErr != nil {
		return 0, fmt.Errorf("redisstore: write %q: %w", key, replicaErr)
	}
	return cache.Version(v), nil
}

// writeCalls returns the calls of a Write: the index updates, then the script
// (also returned alone), which carries the write's identifier id.
func (s *Store) writeCalls(key string, w cache.Write, now time.Time, id string) (calls []*call, script *call) {
	for _, t := range w.AddTags {
		tk := s.tagKey(t)
		calls = append(calls, plainCall(tk, "ZADD", tk, now.UnixMilli(), key))
	}
	expires := ""
	switch {
	case w.Expires.IsZero():
	case w.Expires.Equal(cache.NoExpiry):
		expires = "none"
	default:
		ms := expiryMillis(w.Expires)
		expires = strconv.FormatInt(ms, 10)
		shard := s.expiryShard(key)
		calls = append(calls, plainCall(shard, "ZADD", shard, ms, key))
	}
	args := make([]any, 0, 8+5*len(w.Fields))
	args = append(args, id, now.UnixMilli(), boolArg(w.Create), expires, s.retention.Milliseconds(),
		strings.Join(w.AddTags, ","), strings.Join(w.RemoveTags, ","), len(w.Fields))
	for _, f := range w.Fields {
		op, value := "s", f.Value
		if f.Remove {
			op, value = "r", nil
		}
		if value == nil {
			value = []byte{}
		}
		args = append(args, op, boolArg(f.Check), uint64(f.Expect), f.Name, value)
	}
	script = scriptCall(s.sc.write, []string{s.recordKey(key)}, args...)
	return append(calls, script), script
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Delete removes the record under key: one script (in the durability mode,
// followed by WAIT). It leaves the record's tag-index and expiry-index entries,
// which Tagged and CollectGarbage remove when they meet them.
func (s *Store) Delete(ctx context.Context, key string) (bool, error) {
	if err := cache.ValidateKey(key); err != nil {
		return false, fmt.Errorf("redisstore: delete: %w", err)
	}
	if err := s.ready(ctx, "delete"); err != nil {
		return false, err
	}
	n, err := s.deleteBatch(ctx, []string{key})
	return n > 0, err
}

// DeleteMany removes several records, [Options.BatchSize] per round trip.
func (s *Store) DeleteMany(ctx context.Context, keys []string) (int, error) {
	for _, k := range keys {
		if err := cache.ValidateKey(k); err != nil {
			return 0, fmt.Errorf("redisstore: delete: %w", err)
		}
	}
	if err := s.ready(ctx, "delete"); err != nil {
		return 0, err
	}
	total := 0
	for batch := range slices.Chunk(keys, s.batch) {
		n, err := s.deleteBatch(ctx, batch)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// deleteBatch deletes keys in one round trip and counts the live records removed.
func (s *Store) deleteBatch(ctx context.Context, keys []string) (int, error) {
	now := time.Now().UnixMilli()
	calls := make([]*call, len(keys))
	for i, k := range keys {
		calls[i] = scriptCall(s.sc.del, []string{s.recordKey(k)}, now)
	}
	replicaErr, err := s.run(ctx, calls, true)
	if err != nil {
		return 0, s.fail(ctx, "delete", err)
	}
	n := 0
	for i, c := range calls {
		live, err := c.cmd.Int()
		if err != nil {
			return n, s.fail(ctx, "delete "+keys[i], err)
		}
		n += live
	}
	if replicaErr != nil && n > 0 {
		return n, fmt.Errorf("redisstore: delete: %w", replicaErr)
	}
	return n, nil
}
