package redisstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fxsession/fxsession/cache"
)

// Defaults of [Options].
const (
	// DefaultNamespace is the namespace used when Options.Namespace is empty.
	DefaultNamespace = "default"
	// DefaultBatchSize is the batch size used when Options.BatchSize is 0.
	DefaultBatchSize = 1000
	// DefaultExpiredRetention is how long an expired record stays in Redis for
	// the collector when Options.ExpiredRetention is 0.
	DefaultExpiredRetention = time.Hour
	// DefaultReplicaTimeout is how long the durability mode waits for replicas
	// when Options.ReplicaTimeout is 0. It must stay below the client's
	// ReadTimeout ([DefaultReadTimeout] with [NewClient]).
	DefaultReplicaTimeout = 500 * time.Millisecond
)

// Timing of the store's upkeep (see the package documentation). They are fields
// of the store so that tests can shorten them.
const (
	// tagGrace: a tag-set member younger than this is never removed, so that a
	// removal cannot race a write adding the tag on another slot.
	tagGrace = time.Minute
	// tagRecheck: a member found valid by the sweep is not checked again for this
	// long.
	tagRecheck = time.Hour
	// sweepEvery: the sweep of every tag set runs at most this often per namespace.
	sweepEvery = 10 * time.Minute
	// tombstoneTTL: how long a collected record's tombstone stays.
	tombstoneTTL = time.Minute
	// expiryShards is the number of shards of the expiry index.
	expiryShards = 16
)

// Options configures a [Store]. The zero value works.
type Options struct {
	// Namespace of the store; empty means [DefaultNamespace]. Stores on one Redis
	// with different namespaces never see each other's records.
	Namespace string
	// MaxValueSize is the largest field value accepted; 0 means
	// [cache.DefaultMaxValueSize] (1 MiB).
	MaxValueSize int
	// BatchSize is the number of keys per SCAN page and per pipeline of the
	// namespace-wide operations (Keys, Tagged, Flush, DeleteMany and the garbage
	// collector's passes); 0 means [DefaultBatchSize]. Smaller batches block Redis
	// for shorter moments; larger ones need fewer round trips.
	BatchSize int
	// ExpiredRetention is how long an expired record stays in Redis (natively
	// expiring afterwards) so that CollectGarbage can still report it; 0 means
	// [DefaultExpiredRetention]. Run the collector more often than this, or
	// expired records vanish unreported.
	ExpiredRetention time.Duration
	// MinReplicas turns on the durability mode when above 0: every Write, Delete
	// and DeleteMany waits (WAIT, in the same round trip) until that many
	// replicas acknowledged it, and fails with an error matching
	// [cache.ErrUnavailable] when fewer did within ReplicaTimeout. Such a write
	// may still have been applied on the master and may be lost in a failover:
	// do not acknowledge it. See the package documentation.
	MinReplicas int
	// ReplicaTimeout is how long the durability mode waits for the replicas; 0
	// means [DefaultReplicaTimeout]. It must be shorter than the client's
	// ReadTimeout, which bounds the whole round trip.
	ReplicaTimeout time.Duration
	// Logger receives the store's debug messages; nil means slog.Default().
	Logger *slog.Logger
}

// Store is a [cache.Store] on Redis. Create it with [New]; it is safe for
// concurrent use.
type Store struct {
	*shared
	ns     string
	prefix string               // fxs:<ns>:
	shards [expiryShards]string // the expiry index's keys
	root   bool
}

var _ cache.Store = (*Store)(nil)

// shared is what a root store and its Subs have in common.
type shared struct {
	client    redis.UniversalClient
	cluster   *redis.ClusterClient // client, when it is a cluster client
	maxValue  int
	batch     int
	retention time.Duration
	replicas  int
	replicaTO time.Duration
	log       *slog.Logger
	sc        scripts
	closed    atomic.Bool

	// Upkeep timing (the constants above; shortened by tests).
	tagGrace, tagRecheck, sweepEvery, tombstoneTTL time.Duration
}

// New returns a store on client in opts.Namespace. client must be a
// [*redis.Client] (one server, or Sentinel through [redis.NewFailoverClient]) or
// a [*redis.ClusterClient], as [NewClient] returns. New does not contact the
// server (see [Module] for a ping at start-up), so it can be created while Redis
// is down.
//
// The store does not own client: [Store.Close] leaves it open for its creator to
// close. Its timeouts bound every operation (see the package documentation).
func New(client redis.UniversalClient, opts Options) (*Store, error) {
	sh := &shared{
		client:       client,
		maxValue:     orDefault(opts.MaxValueSize, cache.DefaultMaxValueSize),
		batch:        orDefault(opts.BatchSize, DefaultBatchSize),
		retention:    orDefault(opts.ExpiredRetention, DefaultExpiredRetention),
		replicas:     opts.MinReplicas,
		replicaTO:    orDefault(opts.ReplicaTimeout, DefaultReplicaTimeout),
		log:          opts.Logger,
		sc:           newScripts(),
		tagGrace:     tagGrace,
		tagRecheck:   tagRecheck,
		sweepEvery:   sweepEvery,
		tombstoneTTL: tombstoneTTL,
	}
	var readTimeout time.Duration
	switch c := client.(type) {
	case nil:
		return nil, errors.New("redisstore: nil client")
	case *redis.Client:
		readTimeout = c.Options().ReadTimeout
	case *redis.ClusterClient:
		sh.cluster = c
		readTimeout = c.Options().ReadTimeout
	default:
		return nil, fmt.Errorf("redisstore: unsupported client %T: want a *redis.Client or a *redis.ClusterClient", client)
	}
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if err := cache.ValidateKey(opts.Namespace); err != nil {
		return nil, fmt.Errorf("redisstore: namespace: %w", err)
	}
	switch {
	case opts.MaxValueSize < 0:
		return nil, fmt.Errorf("redisstore: negative MaxValueSize %d", opts.MaxValueSize)
	case opts.BatchSize < 0:
		return nil, fmt.Errorf("redisstore: negative BatchSize %d", opts.BatchSize)
	case opts.ExpiredRetention < 0:
		return nil, fmt.Errorf("redisstore: negative ExpiredRetention %v", opts.ExpiredRetention)
	case opts.MinReplicas < 0:
		return nil, fmt.Errorf("redisstore: negative MinReplicas %d", opts.MinReplicas)
	case opts.ReplicaTimeout < 0:
		return nil, fmt.Errorf("redisstore: negative ReplicaTimeout %v", opts.ReplicaTimeout)
	case sh.replicas > 0 && readTimeout > 0 && sh.replicaTO >= readTimeout:
		return nil, fmt.Errorf("redisstore: ReplicaTimeout %v is not below the client's ReadTimeout %v: the client would give up before WAIT answers", sh.replicaTO, readTimeout)
	}
	if sh.log == nil {
		sh.log = slog.Default()
	}
	s := &Store{shared: sh, root: true}
	s.setNamespace(opts.Namespace)
	return s, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func (s *Store) setNamespace(ns string) {
	s.ns = ns
	s.prefix = "fxs:" + ns + ":"
	for i := range s.shards {
		s.shards[i] = s.prefix + "x:{" + shardTag(ns, i) + "}"
	}
}

// shardTag is the hash tag of shard i of namespace ns's expiry index:
// "<ns>/<i>/<n>" with the first n that puts it in the i-th sixteenth of the hash
// slots, so that the shards spread evenly over the masters of a cluster whose
// masters serve ranges of slots (as redis-cli --cluster create assigns them).
func shardTag(ns string, i int) string {
	base := ns + "/" + strconv.Itoa(i) + "/"
	for n := 0; ; n++ {
		tag := base + strconv.Itoa(n)
		if int(crc16(tag)%clusterSlots)*expiryShards/clusterSlots == i {
			return tag
		}
	}
}

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// crc16 is the CRC-16/XMODEM of s, from which Redis Cluster derives a key's hash
// slot (the CRC modulo 16384).
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// Keys of the layout (see the package documentation).
func (s *Store) recordKey(key string) string { return s.prefix + "r:{" + key + "}" }
func (s *Store) tagKey(tag string) string    { return s.prefix + "t:{" + tag + "}" }
func (s *Store) lockKey(name string) string  { return s.prefix + "l:{" + name + "}" }
func (s *Store) graveKey(key string) string  { return s.prefix + "g:{" + key + "}" }

// sweepKey throttles the tag sweep: a lock no caller can name ('#').
func (s *Store) sweepKey() string { return s.prefix + "l:{#sweep}" }

// expiryShard is the shard of the expiry index that holds key.
func (s *Store) expiryShard(key string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return s.shards[h.Sum32()%expiryShards]
}

// unwrap returns the part of redisKey between prefix (which ends with the
// opening brace) and the closing brace: the record key or tag, or false.
func unwrap(redisKey, prefix string) (string, bool) {
	if len(redisKey) < len(prefix)+1 || redisKey[:len(prefix)] != prefix || redisKey[len(redisKey)-1] != '}' {
		return "", false
	}
	return redisKey[len(prefix) : len(redisKey)-1], true
}

// Namespace is the store's full namespace.
func (s *Store) Namespace() string { return s.ns }

// Sub returns the child namespace name, sharing this store's client: closing the
// root closes it too.
func (s *Store) Sub(name string) (cache.Store, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("redisstore: sub %q: %w", name, cache.ErrClosed)
	}
	full, err := cache.JoinNamespace(s.ns, name)
	if err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	sub := &Store{shared: s.shared}
	sub.setNamespace(full)
	return sub, nil
}

// Close marks the store and its Subs closed: later calls fail with
// [cache.ErrClosed]. It does not close the client (its creator does; [Module]
// does so on stop). Closing a Sub does nothing; closing twice returns nil.
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
		return cache.Unavailable("redisstore: "+op, err)
	}
	return nil
}

// fail classifies an error returned by go-redis during op: the store closed,
// the server refusing for good (an error of its own), or the store unavailable.
// On a cluster, a failure to reach a node makes the client read the slot map
// again, so that a promoted replica is found without waiting for the periodic
// reload.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, cache.ErrClosed) {
		return fmt.Errorf("redisstore: %s: %w", op, err)
	}
	if errors.Is(err, redis.ErrClosed) {
		return fmt.Errorf("redisstore: %s: %w: %w", op, cache.ErrClosed, err)
	}
	var reply redis.Error
	if errors.As(err, &reply) && !unavailableReply(err) {
		// The server answered with an error of its own (WRONGTYPE, a script
		// error, NOAUTH...): reachable, but refusing.
		return fmt.Errorf("redisstore: %s: %w", op, err)
	}
	if s.cluster != nil && !errors.Is(err, context.Canceled) {
		s.cluster.ReloadState(ctx)
	}
	return cache.Unavailable("redisstore: "+op, err)
}

// unavailableReply reports whether a server's error reply means "not now"
// (loading, failing over, refusing writes for want of replicas) rather than
// "never".
func unavailableReply(err error) bool {
	return redis.IsLoadingError(err) || redis.IsReadOnlyError(err) || redis.IsClusterDownError(err) ||
		redis.IsTryAgainError(err) || redis.IsMasterDownError(err) || redis.IsMaxClientsError(err) ||
		redis.IsOOMError(err) || redis.IsNoReplicasError(err) || redis.HasErrorPrefix(err, "BUSY") ||
		isRedirect(err)
}

// isRedirect reports a MOVED or ASK reply that reached the store (go-redis
// follows them itself, up to its MaxRedirects).
func isRedirect(err error) bool {
	if _, ok := redis.IsMovedError(err); ok {
		return true
	}
	_, ok := redis.IsAskError(err)
	return ok
}
