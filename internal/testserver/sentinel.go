package testserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultMasterName is the name the sentinels of [StartSentinel] monitor the
// master under, unless [WithMasterName] says otherwise.
const DefaultMasterName = "fxsession"

// Defaults of [StartSentinel]'s timing. With them a killed master is replaced
// about three seconds later: two to notice (down-after), a few hundred
// milliseconds to agree and promote. Two seconds rather than less, so that a
// master merely starved of CPU on a loaded machine is not failed over.
const (
	DefaultDownAfter       = 2 * time.Second
	DefaultFailoverTimeout = 3 * time.Second
)

const (
	sentinelCount  = 3
	sentinelQuorum = 2
)

// SentinelOption configures [StartSentinel].
type SentinelOption func(*sentinelConfig)

type sentinelConfig struct {
	masterName      string
	downAfter       time.Duration
	failoverTimeout time.Duration
	redisOpts       []RedisOption
}

// WithMasterName sets the name the sentinels monitor the master under
// (default [DefaultMasterName]).
func WithMasterName(name string) SentinelOption {
	return func(c *sentinelConfig) { c.masterName = name }
}

// WithDownAfter sets the sentinels' down-after-milliseconds: how long the master
// must fail to answer before a failover starts (default [DefaultDownAfter]).
func WithDownAfter(d time.Duration) SentinelOption {
	return func(c *sentinelConfig) { c.downAfter = d }
}

// WithFailoverTimeout sets the sentinels' failover-timeout (default
// [DefaultFailoverTimeout]); a failed attempt is retried after twice as long.
func WithFailoverTimeout(d time.Duration) SentinelOption {
	return func(c *sentinelConfig) { c.failoverTimeout = d }
}

// WithSentinelRedisOptions configures the master and the replica (not the
// sentinels), e.g. WithAppendOnly() or WithRedisArgs("--min-replicas-to-write", "1").
func WithSentinelRedisOptions(opts ...RedisOption) SentinelOption {
	return func(c *sentinelConfig) { c.redisOpts = append(c.redisOpts, opts...) }
}

// withConfigFile gives the server a configuration file with the given contents
// (see redisConfig.conf).
func withConfigFile(contents string) RedisOption {
	return func(c *redisConfig) { c.conf = contents }
}

// Sentinel is a Redis Sentinel setup started by a test: a master, one replica
// of it and three sentinels (quorum two) monitoring it under a master name, each
// a real process on a free loopback port with its own folder, and each sentinel
// with its own configuration file there (Sentinel rewrites it).
//
// The data servers and the sentinels are [Redis] values: Kill, Pause, Stop and
// Start them to make faults. Roles change with a failover: [Sentinel.Master] is
// the server started as the master, [Sentinel.CurrentMaster] asks the sentinels
// which one is the master now. It is safe for concurrent use.
type Sentinel struct {
	name      string
	master    *Redis
	replica   *Redis
	sentinels []*Redis
	admins    map[*Redis]*redis.Client         // helpers' clients of the data servers
	sadmins   map[*Redis]*redis.SentinelClient // and of the sentinels
	client    *redis.Client
}

// StartSentinel starts a master, a replica and three sentinels for t, waits
// until the replica is in sync and every sentinel knows the replica and the two
// other sentinels (so that a failover can happen), and stops everything in
// t.Cleanup, writing the servers' logs to the test log when the test failed.
// It takes about a second (up to a few on a loaded machine), most of it the
// sentinels discovering each other.
func StartSentinel(t testing.TB, opts ...SentinelOption) *Sentinel {
	t.Helper()
	cfg := sentinelConfig{
		masterName:      DefaultMasterName,
		downAfter:       DefaultDownAfter,
		failoverTimeout: DefaultFailoverTimeout,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.masterName == "" || strings.ContainsAny(cfg.masterName, " \t\r\n") {
		t.Fatalf("testserver: sentinel: invalid master name %q", cfg.masterName)
	}
	// Without a delay a replica syncs at once rather than after 5 s (Redis 7's
	// default for diskless sync).
	data := append([]RedisOption{WithRedisArgs("--repl-diskless-sync-delay", "0")}, cfg.redisOpts...)
	s := &Sentinel{
		name:    cfg.masterName,
		admins:  map[*Redis]*redis.Client{},
		sadmins: map[*Redis]*redis.SentinelClient{},
	}
	s.master = StartRedis(t, data...)
	masterPort, err := portOf(s.master.Addr())
	if err != nil {
		t.Fatalf("testserver: sentinel: %v", err)
	}
	s.replica = StartRedis(t, append([]RedisOption{
		WithRedisArgs("--replicaof", "127.0.0.1", strconv.Itoa(masterPort)),
	}, data...)...)
	replicaPort, err := portOf(s.replica.Addr())
	if err != nil {
		t.Fatalf("testserver: sentinel: %v", err)
	}
	for _, r := range []*Redis{s.master, s.replica} {
		s.admins[r] = adminClient(r.Addr())
	}
	// Cleanups run last-in first-out: the clients close before the servers stop.
	t.Cleanup(func() {
		for _, c := range s.admins {
			_ = c.Close()
		}
		for _, c := range s.sadmins {
			_ = c.Close()
		}
	})
	ctx := context.Background()
	if err := waitFor(ctx, setupTimeout, "sentinel: replica in sync", func(ctx context.Context) error {
		if err := replicaInSync(ctx, s.admins[s.replica]); err != nil {
			return err
		}
		return replicasOnline(ctx, s.admins[s.master], 1)
	}); err != nil {
		t.Fatalf("testserver: %v", err)
	}

	n := cfg.masterName
	conf := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d\n", n, masterPort, sentinelQuorum) +
		fmt.Sprintf("sentinel down-after-milliseconds %s %d\n", n, cfg.downAfter.Milliseconds()) +
		fmt.Sprintf("sentinel failover-timeout %s %d\n", n, cfg.failoverTimeout.Milliseconds()) +
		fmt.Sprintf("sentinel parallel-syncs %s 1\n", n) +
		// Known from the start: no waiting for the master's next INFO (10 s).
		fmt.Sprintf("sentinel known-replica %s 127.0.0.1 %d\n", n, replicaPort)
	for range sentinelCount {
		r := StartRedis(t, withConfigFile(conf), WithRedisArgs("--sentinel"))
		s.sentinels = append(s.sentinels, r)
		c := redis.NewSentinelClient(adminOptions(r.Addr()))
		s.sadmins[r] = c
		// Faster for tests (Redis 7's SENTINEL DEBUG, until the process ends): INFO
		// from every server each second rather than every ten (a restarted old
		// master is reconfigured as a replica that much sooner), hellos to the
		// other sentinels every 500 ms rather than 2 s (found sooner at start),
		// and out of TILT mode, which a stall of over 2 s on a loaded machine
		// can cause, after 5 s rather than 30.
		debug := redis.NewStatusCmd(ctx, "SENTINEL", "DEBUG", "info-period", 1000, "publish-period", 500, "tilt-period", 5000)
		if err := c.Process(ctx, debug); err != nil {
			t.Fatalf("testserver: sentinel %s: %v", r.Addr(), err)
		}
	}
	if err := waitFor(ctx, setupTimeout, "sentinel: sentinels ready", s.ready); err != nil {
		t.Fatalf("testserver: %v", err)
	}
	s.client = redis.NewFailoverClient(s.FailoverOptions())
	t.Cleanup(func() { _ = s.client.Close() })
	return s
}

// replicaInSync reports why the replica c is not yet in sync with its master.
func replicaInSync(ctx context.Context, c *redis.Client) error {
	info, err := query(ctx, func(ctx context.Context) (string, error) { return c.Info(ctx, "replication").Result() })
	if err != nil {
		return fmt.Errorf("INFO replication: %w", err)
	}
	if !strings.Contains(info, "master_link_status:up") {
		return fmt.Errorf("replica not in sync:\n%s", info)
	}
	return nil
}

// replicasOnline reports why the master c does not yet count n replicas online:
// a replica that finished its sync is online for the master only once its first
// acknowledgement arrived, and WAIT counts online replicas alone.
func replicasOnline(ctx context.Context, c *redis.Client, n int) error {
	info, err := query(ctx, func(ctx context.Context) (string, error) { return c.Info(ctx, "replication").Result() })
	if err != nil {
		return fmt.Errorf("INFO replication: %w", err)
	}
	if got := strings.Count(info, ",state=online,"); got < n {
		return fmt.Errorf("master counts %d of %d replicas online:\n%s", got, n, info)
	}
	return nil
}

// ready reports why the sentinels could not yet fail the master over: each must
// see the master up, the replica in sync and the two other sentinels.
func (s *Sentinel) ready(ctx context.Context) error {
	for _, r := range s.sentinels {
		c := s.sadmins[r]
		m, err := query(ctx, func(ctx context.Context) (map[string]string, error) { return c.Master(ctx, s.name).Result() })
		if err != nil {
			return fmt.Errorf("sentinel %s: SENTINEL MASTER: %w", r.Addr(), err)
		}
		if m["flags"] != "master" || m["num-slaves"] != "1" || m["num-other-sentinels"] != strconv.Itoa(sentinelCount-1) {
			return fmt.Errorf("sentinel %s sees flags=%s num-slaves=%s num-other-sentinels=%s", r.Addr(), m["flags"], m["num-slaves"], m["num-other-sentinels"])
		}
		reps, err := query(ctx, func(ctx context.Context) ([]map[string]string, error) { return c.Replicas(ctx, s.name).Result() })
		if err != nil {
			return fmt.Errorf("sentinel %s: SENTINEL REPLICAS: %w", r.Addr(), err)
		}
		if len(reps) != 1 || reps[0]["flags"] != "slave" || reps[0]["master-link-status"] != "ok" {
			return fmt.Errorf("sentinel %s sees replicas %v", r.Addr(), reps)
		}
	}
	return nil
}

// MasterName is the name the sentinels monitor the master under.
func (s *Sentinel) MasterName() string { return s.name }

// SentinelAddrs are the sentinels' addresses, host:port.
func (s *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(s.sentinels))
	for i, r := range s.sentinels {
		addrs[i] = r.Addr()
	}
	return addrs
}

// Sentinels are the three sentinel processes.
func (s *Sentinel) Sentinels() []*Redis { return append([]*Redis(nil), s.sentinels...) }

// Master is the server started as the master. After a failover it may be dead,
// or a replica once it is back; [Sentinel.CurrentMaster] says which server is
// the master now.
func (s *Sentinel) Master() *Redis { return s.master }

// Replica is the server started as the replica (see [Sentinel.Master]).
func (s *Sentinel) Replica() *Redis { return s.replica }

// Servers are the master and the replica, in that order (as started).
func (s *Sentinel) Servers() []*Redis { return []*Redis{s.master, s.replica} }

// MasterAddr asks the sentinels (the first that answers) for the master's
// address, SENTINEL GET-MASTER-ADDR-BY-NAME.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	var errs []error
	for _, r := range s.sentinels {
		addr, err := s.askMaster(ctx, r)
		if err == nil {
			return addr, nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("testserver: sentinel: no sentinel answered: %w", errors.Join(errs...))
}

func (s *Sentinel) askMaster(ctx context.Context, sentinel *Redis) (string, error) {
	c := s.sadmins[sentinel]
	hp, err := query(ctx, func(ctx context.Context) ([]string, error) { return c.GetMasterAddrByName(ctx, s.name).Result() })
	if err != nil {
		return "", fmt.Errorf("sentinel %s: GET-MASTER-ADDR-BY-NAME: %w", sentinel.Addr(), err)
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("sentinel %s: GET-MASTER-ADDR-BY-NAME answered %q", sentinel.Addr(), hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// CurrentMaster is the data server the sentinels name as the master now.
func (s *Sentinel) CurrentMaster(ctx context.Context) (*Redis, error) {
	addr, err := s.MasterAddr(ctx)
	if err != nil {
		return nil, err
	}
	r := s.server(addr)
	if r == nil {
		return nil, fmt.Errorf("testserver: sentinel: the sentinels name %s, which is none of the servers", addr)
	}
	return r, nil
}

func (s *Sentinel) server(addr string) *Redis {
	for _, r := range s.Servers() {
		if r.Addr() == addr {
			return r
		}
	}
	return nil
}

// WaitForPromotion waits until every sentinel names a master other than old
// (typically a server the test just killed or paused) and that server answers
// ROLE as a master: the failover is complete and a client asking any sentinel
// finds the new master. It polls every 50 ms and gives up when ctx ends or after
// 60 s, with an error describing what the sentinels said last.
func (s *Sentinel) WaitForPromotion(ctx context.Context, old *Redis) (Promotion, error) {
	var p Promotion
	err := waitFor(ctx, promotionTimeout, "sentinel: promotion", func(ctx context.Context) error {
		var named string
		for _, r := range s.sentinels {
			addr, err := s.askMaster(ctx, r)
			if err != nil {
				return err
			}
			if addr == old.Addr() {
				return fmt.Errorf("sentinel %s still names %s", r.Addr(), addr)
			}
			if named != "" && addr != named {
				return fmt.Errorf("sentinels disagree: %s and %s", named, addr)
			}
			named = addr
		}
		n := s.server(named)
		if n == nil {
			return fmt.Errorf("the sentinels name %s, which is none of the servers", named)
		}
		ro, err := role(ctx, s.admins[n])
		if err != nil {
			return fmt.Errorf("new master %s: %w", named, err)
		}
		if ro != "master" {
			return fmt.Errorf("new master %s answers ROLE %s", named, ro)
		}
		p = Promotion{Old: old, New: n, Detected: time.Now()}
		return nil
	})
	if err != nil {
		return Promotion{}, fmt.Errorf("testserver: %w", err)
	}
	return p, nil
}

// WaitForReplica waits until r answers ROLE as a replica in sync with the
// current master, e.g. after a failed master was started again and the
// sentinels reconfigured it. It gives up when ctx ends or after 60 s.
func (s *Sentinel) WaitForReplica(ctx context.Context, r *Redis) error {
	c := s.admins[r]
	if c == nil {
		return fmt.Errorf("testserver: sentinel: %s is not a data server of this setup", r.Addr())
	}
	err := waitFor(ctx, setupTimeout, "sentinel: "+r.Addr()+" as a replica", func(ctx context.Context) error {
		ro, err := role(ctx, c)
		if err != nil {
			return err
		}
		if ro != "slave" {
			return fmt.Errorf("ROLE %s", ro)
		}
		master, err := s.MasterAddr(ctx)
		if err != nil {
			return err
		}
		info, err := query(ctx, func(ctx context.Context) (string, error) { return c.Info(ctx, "replication").Result() })
		if err != nil {
			return fmt.Errorf("INFO replication: %w", err)
		}
		port, err := portOf(master)
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_port:"+strconv.Itoa(port)+"\r\n") || !strings.Contains(info, "master_link_status:up") {
			return fmt.Errorf("not in sync with %s:\n%s", master, info)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("testserver: %w", err)
	}
	return nil
}

// FailoverOptions returns fresh go-redis options for a client that finds the
// master through the sentinels, with test-friendly timeouts (2 s to dial, read
// and write), for [redis.NewFailoverClient].
func (s *Sentinel) FailoverOptions() *redis.FailoverOptions {
	return &redis.FailoverOptions{
		MasterName:    s.name,
		SentinelAddrs: s.SentinelAddrs(),
		DialTimeout:   2 * time.Second,
		ReadTimeout:   2 * time.Second,
		WriteTimeout:  2 * time.Second,
	}
}

// UniversalOptions returns the same settings as [Sentinel.FailoverOptions] as
// universal options (MasterName and the sentinels' addresses), for
// [redis.NewUniversalClient] or code that takes universal options, such as
// redisstore.NewClient.
func (s *Sentinel) UniversalOptions() *redis.UniversalOptions {
	return &redis.UniversalOptions{
		MasterName:   s.name,
		Addrs:        s.SentinelAddrs(),
		DialTimeout:  2 * time.Second,
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
	}
}

// Client is a failover client built from [Sentinel.FailoverOptions], shared by
// every caller and closed in the setup's cleanup. It follows failovers: after a
// promotion it reaches the new master without being recreated.
func (s *Sentinel) Client() *redis.Client { return s.client }
