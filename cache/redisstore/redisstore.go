// Package redisstore is the Redis backend of [cache.Backend], built on go-redis'
// [redis.UniversalClient]: one Redis server, Sentinel (failover) or Redis Cluster.
//
// # Layout
//
// An entry is a Redis hash with the store's native TTL; a tag is a Redis set of
// the keys carrying it, changed together with the entries inside Lua scripts, so
// a tag set never misses an entry that carries its tag; a lock is a string
// written with SET NX PX and a random owner token. GetMany and SetMany are
// pipelined: one round trip whatever the number of keys.
//
// Every key of a namespace carries the hash tag {namespace}, e.g.
// fxs:{shop}:e:basket-42, so that the multi-key scripts run on Redis Cluster. The
// trade-off: one namespace lives in one hash slot, on one node (and its
// replicas); spread load over a cluster with several namespaces (Sub), not with
// one big one.
//
// # Versions
//
// A version is 63 random bits chosen by the writer, never 0. A deleted and
// re-created entry gets a new random version, so the chance of a version coming
// back is about n²/2⁶⁴ over n writes of one key: nil for any real workload.
// Because the writer picks the version, a write replayed by go-redis after a
// lost reply is recognised as its own (see [Store.CompareAndSet]).
//
// # Expiry and garbage collection
//
// Redis expires entries and locks itself, so [Store.CollectGarbage] always
// returns 0. It still has work to do: a tag set keeps the keys of entries that
// expired until the set itself expires (a set lives as long as its longest-lived
// entry). [Store.Tagged] and [Store.FlushByTag] skip such stale members;
// CollectGarbage removes them, walking every tag set of the namespace in batches.
//
// # Failures and timeouts
//
// A server that is down, paused or unreachable yields errors matching
// [cache.ErrUnavailable] (and the underlying go-redis or network error), never a
// hang and never a panic. How long an operation may take before it fails is the
// client's business: DialTimeout, ReadTimeout, WriteTimeout, MaxRetries and
// DialerRetries of the go-redis options bound the wait for a dead server, and,
// when ContextTimeoutEnabled is set, the context's deadline does too. [Module] and
// [ModuleWith] build a client with short defaults (1 s each, one retry, context
// deadlines honoured); with a client of your own, set them yourself.
//
// # Requirements
//
// Redis 7.0 or newer (SET NX with GET). Iteration ([Store.All], [Store.Flush],
// [Store.CollectGarbage]) uses SCAN over the node holding the namespace's slot,
// which walks that node's whole keyspace a page at a time: cheap for a Redis
// dedicated to sessions, slower when the namespace is a small part of a big
// database.
package redisstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fxsession/fxsession/cache"
)

// DefaultNamespace is the namespace used when Options.Namespace is empty.
const DefaultNamespace = "default"

// DefaultBatchSize is the batch size used when Options.BatchSize is 0.
const DefaultBatchSize = 1000

// keyPrefix starts every key the store writes; the namespace follows in braces
// (the Redis Cluster hash tag).
const keyPrefix = "fxs:{"

// Options configures a [Store].
type Options struct {
	// Namespace of the store; empty means [DefaultNamespace]. Two stores on one
	// Redis with different namespaces never see each other's entries.
	Namespace string
	// MaxValueSize is the largest value accepted; 0 means
	// [cache.DefaultMaxValueSize] (1 MiB).
	MaxValueSize int
	// BatchSize is the number of keys handled per SCAN page, per UNLINK and per
	// FlushByTag script run; 0 means [DefaultBatchSize]. Smaller batches block
	// Redis for shorter moments; larger ones need fewer round trips.
	BatchSize int
	// Logger receives the store's debug messages; nil means slog.Default().
	Logger *slog.Logger
}

// Store is a [cache.Backend] on Redis. Create it with [New]; it is safe for
// concurrent use.
type Store struct {
	client   redis.UniversalClient
	ns       string
	prefix   string // fxs:{ns}:
	maxValue int
	batch    int
	log      *slog.Logger
	sc       *scripts
	closed   *atomic.Bool // shared by the root and its Subs
	root     bool
}

var _ cache.Backend = (*Store)(nil)

// New returns a store on client in opts.Namespace. It does not contact the server
// (see [Module] for a ping at start-up), so it can be created while Redis is down.
//
// The store does not own client: [Store.Close] leaves it open for its creator to
// close. Its timeouts bound every operation (see the package documentation); set
// ContextTimeoutEnabled in the client's options so that context deadlines bound
// socket reads too.
func New(client redis.UniversalClient, opts Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: nil client")
	}
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if err := cache.ValidateKey(opts.Namespace); err != nil {
		return nil, fmt.Errorf("redisstore: namespace: %w", err)
	}
	if opts.MaxValueSize < 0 {
		return nil, fmt.Errorf("redisstore: negative MaxValueSize %d", opts.MaxValueSize)
	}
	if opts.MaxValueSize == 0 {
		opts.MaxValueSize = cache.DefaultMaxValueSize
	}
	if opts.BatchSize < 0 {
		return nil, fmt.Errorf("redisstore: negative BatchSize %d", opts.BatchSize)
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Store{
		client:   client,
		maxValue: opts.MaxValueSize,
		batch:    opts.BatchSize,
		log:      opts.Logger,
		sc:       newScripts(),
		closed:   new(atomic.Bool),
		root:     true,
	}
	s.setNamespace(opts.Namespace)
	return s, nil
}

func (s *Store) setNamespace(ns string) {
	s.ns = ns
	s.prefix = keyPrefix + ns + "}:"
}

func (s *Store) entryKey(key string) string { return s.prefix + "e:" + key }
func (s *Store) tagKey(tag string) string   { return s.prefix + "t:" + tag }
func (s *Store) lockKey(name string) string { return s.prefix + "l:" + name }

// Namespace is the store's full namespace.
func (s *Store) Namespace() string { return s.ns }

// Sub returns the child namespace name, sharing this store's client and state:
// closing the root closes it too.
func (s *Store) Sub(name string) (cache.Backend, error) {
	full, err := cache.JoinNamespace(s.ns, name)
	if err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	sub := *s
	sub.root = false
	sub.setNamespace(full)
	return &sub, nil
}

// Close marks the store and its Subs closed: later calls fail with
// [cache.ErrClosed]. It does not close the client (the caller that created it
// does; [Module] does so on stop). Closing a Sub does nothing; closing twice
// returns nil.
func (s *Store) Close() error {
	if s.root {
		s.closed.Store(true)
	}
	return nil
}

// ready reports why the store cannot be used now: closed, or ctx already done.
func (s *Store) ready(ctx context.Context, op string) error {
	if s.closed.Load() {
		return fmt.Errorf("redisstore: %s: %w", op, cache.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		// Ended before the store was touched: the caller's doing.
		return fmt.Errorf("redisstore: %s: %w", op, err)
	}
	return nil
}

// fail classifies an error returned by go-redis during op.
func (s *Store) fail(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, redis.ErrClosed) {
		return fmt.Errorf("redisstore: %s: %w: %w", op, cache.ErrClosed, err)
	}
	var reply redis.Error
	if errors.As(err, &reply) && !unavailableReply(err) {
		// The server answered, with an error of its own (WRONGTYPE, a script
		// error, NOAUTH...): reachable, but refusing.
		return fmt.Errorf("redisstore: %s: %w", op, err)
	}
	return cache.Unavailable("redisstore: "+op, err)
}

// unavailableReply reports whether a server's error reply means "not now"
// (loading, failing over, full) rather than "never".
func unavailableReply(err error) bool {
	return redis.IsLoadingError(err) || redis.IsReadOnlyError(err) || redis.IsClusterDownError(err) ||
		redis.IsTryAgainError(err) || redis.IsMasterDownError(err) || redis.IsMaxClientsError(err) ||
		redis.IsOOMError(err) || redis.IsNoReplicasError(err) || redis.HasErrorPrefix(err, "BUSY")
}

// hashFields are the fields of an entry's hash, in the order decodeEntry expects.
var hashFields = [...]string{"d", "v", "t", "x"}

// decodeEntry turns an HMGET reply into an entry; ok is false when it is absent.
func decodeEntry(key string, vals []any) (e cache.Entry, ok bool, err error) {
	if len(vals) != len(hashFields) || vals[1] == nil {
		return cache.Entry{Key: key}, false, nil
	}
	d, _ := vals[0].(string)
	vs, _ := vals[1].(string)
	ts, _ := vals[2].(string)
	xs, _ := vals[3].(string)
	ver, err := strconv.ParseUint(vs, 10, 64)
	if err != nil || ver == 0 {
		return cache.Entry{Key: key}, false, fmt.Errorf("redisstore: entry %q holds version %q, not a version this store writes", key, vs)
	}
	e = cache.Entry{Key: key, Value: []byte(d), Version: cache.Version(ver)}
	if ts != "" {
		e.Tags = strings.Split(ts, ",")
	}
	if xs != "" && xs != "0" {
		ms, err := strconv.ParseInt(xs, 10, 64)
		if err != nil {
			return cache.Entry{Key: key}, false, fmt.Errorf("redisstore: entry %q holds expiry %q", key, xs)
		}
		e.Expires = time.UnixMilli(ms)
	}
	return e, true, nil
}

// Get reads one entry; a missing or expired one is [cache.ErrNotFound].
func (s *Store) Get(ctx context.Context, key string) (cache.Entry, error) {
	if err := cache.ValidateKey(key); err != nil {
		return cache.Entry{}, err
	}
	if err := s.ready(ctx, "get"); err != nil {
		return cache.Entry{}, err
	}
	vals, err := s.client.HMGet(ctx, s.entryKey(key), hashFields[:]...).Result()
	if err != nil {
		return cache.Entry{}, s.fail("get "+key, err)
	}
	e, ok, err := decodeEntry(key, vals)
	if err != nil {
		return cache.Entry{}, err
	}
	if !ok {
		return cache.Entry{}, fmt.Errorf("redisstore: get %q: %w", key, cache.ErrNotFound)
	}
	return e, nil
}

// GetMany reads many entries with one pipelined round trip.
func (s *Store) GetMany(ctx context.Context, keys []string) ([]cache.Entry, error) {
	for _, k := range keys {
		if err := cache.ValidateKey(k); err != nil {
			return nil, err
		}
	}
	if err := s.ready(ctx, "get many"); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return []cache.Entry{}, nil
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = s.entryKey(k)
	}
	return s.fetch(ctx, "get many", keys, full)
}

// fetch reads the entries stored under full (Redis keys) with one pipeline and
// returns them named by keys; absent ones have only Key set.
func (s *Store) fetch(ctx context.Context, op string, keys, full []string) ([]cache.Entry, error) {
	cmds := make([]*redis.SliceCmd, len(full))
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range full {
			cmds[i] = p.HMGet(ctx, k, hashFields[:]...)
		}
		return nil
	})
	if err != nil {
		return nil, s.fail(op, err)
	}
	out := make([]cache.Entry, len(keys))
	for i, c := range cmds {
		e, _, err := decodeEntry(keys[i], c.Val())
		if err != nil {
			return nil, err
		}
		out[i] = e
	}
	return out, nil
}

// newVersion returns 63 random bits, never 0.
func newVersion() cache.Version {
	if v := mrand.Uint64() >> 1; v != 0 {
		return cache.Version(v)
	}
	return 1
}

// ttlMillis is the lifetime in whole milliseconds, rounded up (a positive
// lifetime must not become 0, "never").
func ttlMillis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// writeCall builds the KEYS and ARGV of the write scripts for it at version ver.
func (s *Store) writeCall(it cache.Item, ver cache.Version) (keys []string, args []any) {
	keys = make([]string, 1, 1+len(it.Tags))
	keys[0] = s.entryKey(it.Key)
	tags := it.Tags
	if len(tags) > 1 {
		tags = make([]string, 0, len(it.Tags))
		for _, t := range it.Tags {
			dup := false
			for _, u := range tags {
				if u == t {
					dup = true
					break
				}
			}
			if !dup {
				tags = append(tags, t)
			}
		}
	}
	for _, t := range tags {
		keys = append(keys, s.tagKey(t))
	}
	value := it.Value
	if value == nil {
		value = []byte{}
	}
	args = []any{
		s.prefix + "t:",
		it.Key,
		value,
		strconv.FormatUint(uint64(ver), 10),
		strconv.FormatInt(ttlMillis(it.TTL), 10),
		strings.Join(tags, ","),
	}
	return keys, args
}

// Set writes an entry, replacing the old one with its tags and lifetime, and
// returns its new version.
func (s *Store) Set(ctx context.Context, it cache.Item) (cache.Version, error) {
	if err := cache.ValidateItem(it, s.maxValue); err != nil {
		return 0, err
	}
	if err := s.ready(ctx, "set"); err != nil {
		return 0, err
	}
	ver := newVersion()
	keys, args := s.writeCall(it, ver)
	if err := s.sc.set.Run(ctx, s.client, keys, args...).Err(); err != nil {
		return 0, s.fail("set "+it.Key, err)
	}
	return ver, nil
}

// SetMany writes many entries with one pipelined round trip (two when the
// server has to be taught the script first). Each entry is written atomically
// with its tags; the batch as a whole is not atomic.
func (s *Store) SetMany(ctx context.Context, items []cache.Item) error {
	for _, it := range items {
		if err := cache.ValidateItem(it, s.maxValue); err != nil {
			return err
		}
	}
	if err := s.ready(ctx, "set many"); err != nil {
		return err
	}
	if len(items) == 0 {
		return nil
	}
	calls := make([]scriptCall, len(items))
	for i, it := range items {
		calls[i].keys, calls[i].args = s.writeCall(it, newVersion())
	}
	cmds, err := s.runPipelined(ctx, s.sc.set, calls)
	if err != nil {
		return s.fail("set many", err)
	}
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			return s.fail("set many: "+items[i].Key, err)
		}
	}
	return nil
}

type scriptCall struct {
	keys []string
	args []any
}

// runPipelined runs script once per call in one pipeline with EVALSHA, and again
// with EVAL for the calls the server answered NOSCRIPT. The error is the
// pipeline's; the commands carry their own.
func (s *Store) runPipelined(ctx context.Context, script *redis.Script, calls []scriptCall) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(calls))
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range calls {
			cmds[i] = script.EvalSha(ctx, p, c.keys, c.args...)
		}
		return nil
	})
	var missing []int
	for i, c := range cmds {
		if isNoScript(c.Err()) {
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 {
		if err != nil && !isReplyErr(err) {
			return nil, err // the connection failed, not a command
		}
		return cmds, nil
	}
	_, err = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, i := range missing {
			cmds[i] = script.Eval(ctx, p, calls[i].keys, calls[i].args...)
		}
		return nil
	})
	if err != nil && !isReplyErr(err) {
		return nil, err
	}
	return cmds, nil
}

func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}

// isReplyErr reports whether err is an answer of the server (including "nil")
// rather than a failure to get one.
func isReplyErr(err error) bool {
	if errors.Is(err, redis.Nil) {
		return true
	}
	var reply redis.Error
	return errors.As(err, &reply)
}

// CompareAndSet writes it only when the stored version equals expected (0: only
// when the key is absent or expired) and returns the new version, or an error
// wrapping [cache.ErrConflict]. It runs as one Lua script. When go-redis replays
// the script after a lost reply, the replay finds its own version stored and
// succeeds instead of reporting a conflict.
func (s *Store) CompareAndSet(ctx context.Context, it cache.Item, expected cache.Version) (cache.Version, error) {
	if err := cache.ValidateItem(it, s.maxValue); err != nil {
		return 0, err
	}
	if err := s.ready(ctx, "compare-and-set"); err != nil {
		return 0, err
	}
	ver := newVersion()
	keys, args := s.writeCall(it, ver)
	args = append(args, strconv.FormatUint(uint64(expected), 10))
	err := s.sc.cas.Run(ctx, s.client, keys, args...).Err()
	if errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("redisstore: compare-and-set %q at version %d: %w", it.Key, expected, cache.ErrConflict)
	}
	if err != nil {
		return 0, s.fail("compare-and-set "+it.Key, err)
	}
	return ver, nil
}

// Delete removes an entry and its tag-set memberships and reports whether it
// existed.
func (s *Store) Delete(ctx context.Context, key string) (bool, error) {
	if err := cache.ValidateKey(key); err != nil {
		return false, err
	}
	if err := s.ready(ctx, "delete"); err != nil {
		return false, err
	}
	n, err := s.sc.del.Run(ctx, s.client, []string{s.entryKey(key)}, s.prefix+"t:", key).Int64()
	if err != nil {
		return false, s.fail("delete "+key, err)
	}
	return n > 0, nil
}

// Has reports whether an unexpired entry exists.
func (s *Store) Has(ctx context.Context, key string) (bool, error) {
	if err := cache.ValidateKey(key); err != nil {
		return false, err
	}
	if err := s.ready(ctx, "has"); err != nil {
		return false, err
	}
	n, err := s.client.Exists(ctx, s.entryKey(key)).Result()
	if err != nil {
		return false, s.fail("has "+key, err)
	}
	return n > 0, nil
}

// scanner returns the client to SCAN the namespace with: on Redis Cluster (and
// Ring) the node that holds the namespace's hash slot, else the client itself.
func (s *Store) scanner(ctx context.Context) (redis.Cmdable, error) {
	switch c := s.client.(type) {
	case *redis.ClusterClient:
		return c.MasterForKey(ctx, s.prefix)
	case *redis.Ring:
		return c.GetShardClientForKey(s.prefix)
	default:
		return s.client, nil
	}
}

// scan calls page with every page of the keys matching pattern (of the given
// Redis type, "" for any) until the keyspace is walked or page returns false.
func (s *Store) scan(ctx context.Context, op, pattern, typ string, page func([]string) (bool, error)) error {
	sc, err := s.scanner(ctx)
	if err != nil {
		return s.fail(op, err)
	}
	var cursor uint64
	for {
		var keys []string
		if typ == "" {
			keys, cursor, err = sc.Scan(ctx, cursor, pattern, int64(s.batch)).Result()
		} else {
			keys, cursor, err = sc.ScanType(ctx, cursor, pattern, int64(s.batch), typ).Result()
		}
		if err != nil {
			return s.fail(op, err)
		}
		if len(keys) > 0 {
			more, err := page(keys)
			if err != nil || !more {
				return err
			}
		}
		if cursor == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("redisstore: %s: %w", op, err)
		}
	}
}

// Flush removes every entry and tag set of the namespace (not its locks, nor its
// Subs), walking the keyspace with SCAN and deleting a page at a time with
// UNLINK. Tag sets go first, so an entry written meanwhile keeps its tags.
func (s *Store) Flush(ctx context.Context) error {
	if err := s.ready(ctx, "flush"); err != nil {
		return err
	}
	for _, kind := range []string{"t:*", "e:*"} {
		err := s.scan(ctx, "flush", s.prefix+kind, "", func(keys []string) (bool, error) {
			if err := s.client.Unlink(ctx, keys...).Err(); err != nil {
				return false, s.fail("flush", err)
			}
			return true, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// FlushByTag removes every entry carrying tag, with their other tag-set
// memberships and the tag's set, in batches of BatchSize per script run, and
// returns how many entries went.
func (s *Store) FlushByTag(ctx context.Context, tag string) (int, error) {
	if err := cache.ValidateKey(tag); err != nil {
		return 0, err
	}
	if err := s.ready(ctx, "flush by tag"); err != nil {
		return 0, err
	}
	keys := []string{s.tagKey(tag)}
	total := 0
	for {
		res, err := s.sc.flushTag.Run(ctx, s.client, keys, s.prefix+"e:", s.prefix+"t:", tag, s.batch).Int64Slice()
		if err != nil {
			return total, s.fail("flush by tag "+tag, err)
		}
		if len(res) != 2 {
			return total, fmt.Errorf("redisstore: flush by tag %q: unexpected reply %v", tag, res)
		}
		total += int(res[0])
		if res[1] == 0 {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("redisstore: flush by tag %q: %w", tag, err)
		}
	}
}

// Tagged streams the keys of the unexpired entries carrying tag, reading the
// tag's set with SSCAN a batch at a time and checking each batch's entries with
// one pipelined round trip. Stale members (expired entries) are skipped.
func (s *Store) Tagged(ctx context.Context, tag string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if err := cache.ValidateKey(tag); err != nil {
			yield("", err)
			return
		}
		if err := s.ready(ctx, "tagged"); err != nil {
			yield("", err)
			return
		}
		op := "tagged " + tag
		setKey := s.tagKey(tag)
		seen := make(map[string]struct{}) // SSCAN may repeat a member
		var cursor uint64
		for {
			members, next, err := s.client.SScan(ctx, setKey, cursor, "", int64(s.batch)).Result()
			if err != nil {
				yield("", s.fail(op, err))
				return
			}
			if len(members) > 0 {
				cmds := make([]*redis.StringCmd, len(members))
				_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
					for i, m := range members {
						cmds[i] = p.HGet(ctx, s.entryKey(m), "t")
					}
					return nil
				})
				if err != nil && !errors.Is(err, redis.Nil) {
					yield("", s.fail(op, err))
					return
				}
				for i, m := range members {
					tags, err := cmds[i].Result()
					if err != nil || !carries(tags, tag) {
						continue // gone, expired or retagged
					}
					if _, dup := seen[m]; dup {
						continue
					}
					seen[m] = struct{}{}
					if err := ctx.Err(); err != nil {
						yield("", fmt.Errorf("redisstore: %s: %w", op, err))
						return
					}
					if !yield(m, nil) {
						return
					}
				}
			}
			if next == 0 {
				return
			}
			cursor = next
			if err := ctx.Err(); err != nil {
				yield("", fmt.Errorf("redisstore: %s: %w", op, err))
				return
			}
		}
	}
}

// carries reports whether the comma-joined tags hold tag.
func carries(tags, tag string) bool {
	for len(tags) > 0 {
		t := tags
		if i := strings.IndexByte(tags, ','); i >= 0 {
			t, tags = tags[:i], tags[i+1:]
		} else {
			tags = ""
		}
		if t == tag {
			return true
		}
	}
	return false
}

// All streams the namespace's unexpired entries: SCAN over its entry keys (not
// tag sets, not locks), a page at a time, each page read with one pipelined round
// trip. SCAN may report a key twice when Redis shrinks its table meanwhile, so
// All remembers the keys it has yielded (keys only, never values) and yields
// each entry once.
func (s *Store) All(ctx context.Context) iter.Seq2[cache.Entry, error] {
	return func(yield func(cache.Entry, error) bool) {
		if err := s.ready(ctx, "all"); err != nil {
			yield(cache.Entry{}, err)
			return
		}
		seen := make(map[string]struct{})
		skip := len(s.prefix) + len("e:")
		stopped := false
		err := s.scan(ctx, "all", s.prefix+"e:*", "hash", func(full []string) (bool, error) {
			keys := make([]string, len(full))
			for i, k := range full {
				keys[i] = k[skip:]
			}
			es, err := s.fetch(ctx, "all", keys, full)
			if err != nil {
				return false, err
			}
			for _, e := range es {
				if !e.Exists() {
					continue // deleted or expired since the SCAN
				}
				if _, dup := seen[e.Key]; dup {
					continue
				}
				seen[e.Key] = struct{}{}
				if err := ctx.Err(); err != nil {
					return false, fmt.Errorf("redisstore: all: %w", err)
				}
				if !yield(e, nil) {
					stopped = true
					return false, nil
				}
			}
			return true, nil
		})
		if err != nil && !stopped {
			yield(cache.Entry{}, err)
		}
	}
}

// CollectGarbage returns 0: Redis expires entries itself. It removes, from every
// tag set of the namespace, the members whose entries expired (see the package
// documentation), a batch per script run.
func (s *Store) CollectGarbage(ctx context.Context) (int, error) {
	if err := s.ready(ctx, "collect garbage"); err != nil {
		return 0, err
	}
	skip := len(s.prefix) + len("t:")
	eprefix := s.prefix + "e:"
	pruned := 0
	err := s.scan(ctx, "collect garbage", s.prefix+"t:*", "set", func(sets []string) (bool, error) {
		for _, set := range sets {
			tag := set[skip:]
			var cursor uint64
			for {
				members, next, err := s.client.SScan(ctx, set, cursor, "", int64(s.batch)).Result()
				if err != nil {
					return false, s.fail("collect garbage", err)
				}
				if len(members) > 0 {
					args := make([]any, 0, 2+len(members))
					args = append(args, eprefix, tag)
					for _, m := range members {
						args = append(args, m)
					}
					n, err := s.sc.prune.Run(ctx, s.client, []string{set}, args...).Int64()
					if err != nil {
						return false, s.fail("collect garbage", err)
					}
					pruned += int(n)
				}
				if next == 0 {
					break
				}
				cursor = next
			}
		}
		return true, nil
	})
	if err != nil {
		return 0, err
	}
	if pruned > 0 {
		s.log.DebugContext(ctx, "redisstore: removed stale tag-set members", "namespace", s.ns, "members", pruned)
	}
	return 0, nil
}

// Lock takes the lock called name for ttl with SET NX PX and a random token, and
// returns the token, or an error wrapping [cache.ErrLocked]. (SET ... GET lets a
// replayed Lock recognise its own token; this needs Redis 7.0.)
func (s *Store) Lock(ctx context.Context, name string, ttl time.Duration) (string, error) {
	if err := cache.ValidateKey(name); err != nil {
		return "", err
	}
	if ttl <= 0 {
		return "", fmt.Errorf("redisstore: lock %q: lifetime %v must be positive", name, ttl)
	}
	if err := s.ready(ctx, "lock"); err != nil {
		return "", err
	}
	token := rand.Text()
	prev, err := s.client.SetArgs(ctx, s.lockKey(name), token, redis.SetArgs{
		Mode: "NX",
		TTL:  time.Duration(ttlMillis(ttl)) * time.Millisecond,
		Get:  true,
	}).Result()
	switch {
	case errors.Is(err, redis.Nil) || (err == nil && prev == token):
		return token, nil
	case err != nil:
		return "", s.fail("lock "+name, err)
	default:
		return "", fmt.Errorf("redisstore: lock %q: %w", name, cache.ErrLocked)
	}
}

// Unlock releases the lock if token still owns it (a Lua script compares and
// deletes) and reports whether it did.
func (s *Store) Unlock(ctx context.Context, name, token string) (bool, error) {
	if err := cache.ValidateKey(name); err != nil {
		return false, err
	}
	if err := s.ready(ctx, "unlock"); err != nil {
		return false, err
	}
	if token == "" {
		return false, nil
	}
	n, err := s.sc.unlock.Run(ctx, s.client, []string{s.lockKey(name)}, token).Int64()
	if err != nil {
		return false, s.fail("unlock "+name, err)
	}
	return n > 0, nil
}
