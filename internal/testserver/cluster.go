package testserver

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisCliNotFound is the message given when redis-cli is not installed.
const redisCliNotFound = "redis-cli not found: run `make deps` (apt-get install redis-tools)"

// DefaultNodeTimeout is the cluster-node-timeout of [StartCluster]: how long a
// master must fail to answer before its replica takes over (the promotion
// follows within about a second more).
const DefaultNodeTimeout = 2 * time.Second

const (
	clusterMasters = 3
	clusterNodes   = 2 * clusterMasters // one replica per master
	clusterSlots   = 16384
)

// ClusterOption configures [StartCluster].
type ClusterOption func(*clusterConfig)

type clusterConfig struct {
	nodeTimeout time.Duration
	redisOpts   []RedisOption
}

// WithNodeTimeout sets the nodes' cluster-node-timeout (default
// [DefaultNodeTimeout]).
func WithNodeTimeout(d time.Duration) ClusterOption {
	return func(c *clusterConfig) { c.nodeTimeout = d }
}

// WithClusterRedisOptions configures every node, e.g. WithAppendOnly().
func WithClusterRedisOptions(opts ...RedisOption) ClusterOption {
	return func(c *clusterConfig) { c.redisOpts = append(c.redisOpts, opts...) }
}

// SlotRange is a range of hash slots, both ends included.
type SlotRange struct{ Start, End int }

func (r SlotRange) String() string {
	if r.Start == r.End {
		return strconv.Itoa(r.Start)
	}
	return fmt.Sprintf("%d-%d", r.Start, r.End)
}

// Shard is a master, the slots it serves and its replicas, as one node of the
// cluster sees them.
type Shard struct {
	Master   *Redis
	Replicas []*Redis // those not marked as failed
	Slots    []SlotRange
}

// Cluster is a Redis Cluster started by a test: three masters with one replica
// each, six real redis-server processes in cluster mode on free loopback ports,
// each with its own folder (and its nodes.conf there). Its nodes are [Redis]
// values: Kill, Pause, Stop and Start them to make faults; a node started again
// rejoins with its identity. Roles change with a failover, so the helpers that
// name masters ask the cluster. It is safe for concurrent use.
type Cluster struct {
	nodes  []*Redis
	ids    map[*Redis]string // cluster node IDs, kept across restarts
	admins map[*Redis]*redis.Client
	client *redis.ClusterClient

	mu    sync.Mutex
	slots map[string][]SlotRange // by node ID, at the last complete look
}

// StartCluster starts a Redis Cluster of three masters and three replicas for
// t with redis-cli --cluster create, waits until every node reports
// cluster_state:ok, agrees on who serves all 16384 slots and every replica is in
// sync, and stops every node in t.Cleanup, writing their logs to the test log
// when the test failed. It takes two to six seconds.
//
// Each node's cluster bus gets a port of its own (cluster-port), chosen free
// like the node's port, rather than the node's port + 10000, which may be
// taken or above 65535. Replicas take over whatever their data's age
// (cluster-replica-validity-factor 0), so a promotion never waits on it.
func StartCluster(t testing.TB, opts ...ClusterOption) *Cluster {
	t.Helper()
	cfg := clusterConfig{nodeTimeout: DefaultNodeTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("testserver: %s", redisCliNotFound)
	}
	c := &Cluster{ids: map[*Redis]string{}, admins: map[*Redis]*redis.Client{}, slots: map[string][]SlotRange{}}
	for range clusterNodes {
		r, err := startClusterNode(t, cfg)
		if err != nil {
			t.Fatalf("testserver: cluster: %v", err)
		}
		c.nodes = append(c.nodes, r)
		c.admins[r] = adminClient(r.Addr())
	}
	// Cleanups run last-in first-out: the clients close before the nodes stop.
	t.Cleanup(func() {
		for _, a := range c.admins {
			_ = a.Close()
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	for _, r := range c.nodes {
		id, err := query(ctx, func(ctx context.Context) (string, error) {
			return c.admins[r].Do(ctx, "CLUSTER", "MYID").Text()
		})
		if err != nil {
			t.Fatalf("testserver: cluster: %s: CLUSTER MYID: %v", r.Addr(), err)
		}
		c.ids[r] = id
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("testserver: cluster: redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatalf("%v\nredis-cli --cluster create said:\n%s", err, out)
	}
	c.client = redis.NewClusterClient(c.ClusterOptions())
	t.Cleanup(func() { _ = c.client.Close() })
	return c
}

// startClusterNode starts one node in cluster mode, on a fresh pair of free
// ports (the node's and its bus's), trying other ports when one was taken.
func startClusterNode(t testing.TB, cfg clusterConfig) (*Redis, error) {
	for attempt := 1; ; attempt++ {
		bus, err := redisFreePort()
		if err != nil {
			return nil, err
		}
		opts := append([]RedisOption{WithRedisArgs(
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(bus),
			"--cluster-node-timeout", strconv.FormatInt(cfg.nodeTimeout.Milliseconds(), 10),
			"--cluster-replica-validity-factor", "0",
			// A replica syncs at once, not after Redis 7's default 5 s.
			"--repl-diskless-sync-delay", "0",
		)}, cfg.redisOpts...)
		// A folder per attempt: a node that failed to bind may have written its
		// nodes.conf already.
		r, err := launchRedis(t.TempDir(), opts)
		if err == nil {
			r.closeOnCleanup(t)
			return r, nil
		}
		if !errors.Is(err, errRedisPortTaken) || attempt == redisPortAttempts {
			return nil, err
		}
	}
}

// Nodes are the six nodes, in the order they were started.
func (c *Cluster) Nodes() []*Redis { return append([]*Redis(nil), c.nodes...) }

// Addrs are the nodes' addresses, host:port, in the order of [Cluster.Nodes].
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, r := range c.nodes {
		addrs[i] = r.Addr()
	}
	return addrs
}

// Node is the node at addr, or nil.
func (c *Cluster) Node(addr string) *Redis {
	for _, r := range c.nodes {
		if r.Addr() == addr {
			return r
		}
	}
	return nil
}

// NodeID is r's cluster node ID (CLUSTER MYID), or "" when r is not a node of
// this cluster.
func (c *Cluster) NodeID(r *Redis) string { return c.ids[r] }

func (c *Cluster) byID(id string) *Redis {
	for r, rid := range c.ids {
		if rid == id {
			return r
		}
	}
	return nil
}

// clusterNode is a line of CLUSTER NODES.
type clusterNode struct {
	id, addr  string
	flags     []string
	masterID  string // "" for a master
	connected bool
	slots     []SlotRange
}

func (n clusterNode) has(flag string) bool { return slices.Contains(n.flags, flag) }

// failed: marked as failing (by this node alone, pfail, or by the cluster).
func (n clusterNode) failed() bool {
	return n.has("fail") || n.has("fail?") || n.has("handshake") || n.has("noaddr")
}

// parseClusterNodes parses a CLUSTER NODES reply.
func parseClusterNodes(reply string) ([]clusterNode, error) {
	var nodes []clusterNode
	for line := range strings.Lines(reply) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 8 {
			return nil, fmt.Errorf("CLUSTER NODES: short line %q", line)
		}
		addr, _, _ := strings.Cut(f[1], "@") // ip:port@cport[,hostname]
		n := clusterNode{id: f[0], addr: addr, flags: strings.Split(f[2], ","), connected: f[7] == "connected"}
		if f[3] != "-" {
			n.masterID = f[3]
		}
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") {
				continue // a slot being migrated or imported
			}
			lo, hi, isRange := strings.Cut(s, "-")
			if !isRange {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil || a > b {
				return nil, fmt.Errorf("CLUSTER NODES: bad slots %q in %q", s, line)
			}
			n.slots = append(n.slots, SlotRange{a, b})
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// view asks r for its CLUSTER NODES.
func (c *Cluster) view(ctx context.Context, r *Redis) ([]clusterNode, error) {
	s, err := query(ctx, func(ctx context.Context) (string, error) {
		return c.admins[r].ClusterNodes(ctx).Result()
	})
	if err != nil {
		return nil, fmt.Errorf("%s: CLUSTER NODES: %w", r.Addr(), err)
	}
	return parseClusterNodes(s)
}

// anyView is the view of the first node that answers.
func (c *Cluster) anyView(ctx context.Context) ([]clusterNode, *Redis, error) {
	var errs []error
	for _, r := range c.nodes {
		v, err := c.view(ctx, r)
		if err == nil {
			return v, r, nil
		}
		errs = append(errs, err)
	}
	return nil, nil, fmt.Errorf("testserver: cluster: no node answered: %w", errors.Join(errs...))
}

// owner is the ID of the master that serves slot in view ("" when none does).
func owner(view []clusterNode, slot int) string {
	for _, n := range view {
		for _, s := range n.slots {
			if s.Start <= slot && slot <= s.End {
				return n.id
			}
		}
	}
	return ""
}

// covered counts the slots served in view.
func covered(view []clusterNode) int {
	n := 0
	for _, node := range view {
		for _, s := range node.slots {
			n += s.End - s.Start + 1
		}
	}
	return n
}

// topology is view in a canonical form, for comparing the nodes' views.
func topology(view []clusterNode) string {
	lines := make([]string, 0, len(view))
	for _, n := range view {
		lines = append(lines, fmt.Sprintf("%s %s master=%s slots=%v", n.id, n.addr, n.masterID, n.slots))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// WaitHealthy waits until every node answers, reports cluster_state:ok with all
// 16384 slots served and all six nodes known, sees three masters serving every
// slot and three replicas of them with no node failing, agrees with the other
// nodes on all of it, and every replica is in sync with its master and online
// for it (counted by WAIT). Use it after bringing a failed node back. It gives
// up when ctx ends or after 60 s.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	err := waitFor(ctx, setupTimeout, "cluster: healthy", func(ctx context.Context) error {
		var first string
		var view []clusterNode
		for _, r := range c.nodes {
			a := c.admins[r]
			info, err := query(ctx, func(ctx context.Context) (string, error) { return a.ClusterInfo(ctx).Result() })
			if err != nil {
				return fmt.Errorf("%s: CLUSTER INFO: %w", r.Addr(), err)
			}
			for _, want := range []string{"cluster_state:ok", "cluster_slots_ok:16384", "cluster_known_nodes:6", "cluster_size:3"} {
				if !strings.Contains(info, want+"\r\n") {
					return fmt.Errorf("%s: CLUSTER INFO lacks %s:\n%s", r.Addr(), want, info)
				}
			}
			v, err := c.view(ctx, r)
			if err != nil {
				return err
			}
			if err := checkView(v); err != nil {
				return fmt.Errorf("%s: %w", r.Addr(), err)
			}
			top := topology(v)
			if first == "" {
				first, view = top, v
			} else if top != first {
				return fmt.Errorf("nodes disagree:\n%s\nand %s sees\n%s", first, r.Addr(), top)
			}
		}
		followers := map[string]int{}
		for _, n := range view {
			if n.masterID == "" {
				continue
			}
			followers[n.masterID]++
			r := c.byID(n.id)
			if r == nil {
				return fmt.Errorf("unknown node %s %s", n.id, n.addr)
			}
			if err := replicaInSync(ctx, c.admins[r]); err != nil {
				return fmt.Errorf("%s: %w", r.Addr(), err)
			}
		}
		for id, n := range followers {
			m := c.byID(id)
			if m == nil {
				return fmt.Errorf("unknown master %s", id)
			}
			if err := replicasOnline(ctx, c.admins[m], n); err != nil {
				return fmt.Errorf("%s: %w", m.Addr(), err)
			}
		}
		c.remember(view)
		return nil
	})
	if err != nil {
		return fmt.Errorf("testserver: %w", err)
	}
	return nil
}

// checkView reports what is missing from a healthy cluster in one node's view.
func checkView(view []clusterNode) error {
	var masters, replicas int
	for _, n := range view {
		switch {
		case n.failed() || !n.connected:
			return fmt.Errorf("node %s %s is %v, %v", n.id, n.addr, n.flags, n.connected)
		case n.has("master") && len(n.slots) > 0:
			masters++
		case n.has("slave"):
			if m := find(view, n.masterID); m == nil || len(m.slots) == 0 {
				return fmt.Errorf("replica %s follows %s, not a master with slots", n.addr, n.masterID)
			}
			replicas++
		default:
			return fmt.Errorf("node %s is a master without slots", n.addr)
		}
	}
	if masters != clusterMasters || replicas != clusterNodes-clusterMasters || covered(view) != clusterSlots {
		return fmt.Errorf("%d masters and %d replicas serving %d slots", masters, replicas, covered(view))
	}
	return nil
}

func find(view []clusterNode, id string) *clusterNode {
	for i := range view {
		if view[i].id == id {
			return &view[i]
		}
	}
	return nil
}

// remember records who serves which slots, for WaitForPromotion.
func (c *Cluster) remember(view []clusterNode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.slots)
	for _, n := range view {
		if len(n.slots) > 0 {
			c.slots[n.id] = n.slots
		}
	}
}

// Shards is the layout as the first node that answers sees it now: the masters
// serving slots, in slot order, with their slots and their replicas.
func (c *Cluster) Shards(ctx context.Context) ([]Shard, error) {
	view, _, err := c.anyView(ctx)
	if err != nil {
		return nil, err
	}
	var shards []Shard
	for _, n := range view {
		if len(n.slots) == 0 {
			continue
		}
		sh := Shard{Master: c.byID(n.id), Slots: n.slots}
		for _, m := range view {
			if m.masterID == n.id && !m.failed() {
				sh.Replicas = append(sh.Replicas, c.byID(m.id))
			}
		}
		shards = append(shards, sh)
	}
	slices.SortFunc(shards, func(a, b Shard) int { return a.Slots[0].Start - b.Slots[0].Start })
	return shards, nil
}

// Masters are the masters serving slots now, in slot order (see [Cluster.Shards]).
func (c *Cluster) Masters(ctx context.Context) ([]*Redis, error) {
	shards, err := c.Shards(ctx)
	if err != nil {
		return nil, err
	}
	ms := make([]*Redis, len(shards))
	for i, s := range shards {
		ms[i] = s.Master
	}
	return ms, nil
}

// KeySlot is key's hash slot (CLUSTER KEYSLOT, so hash tags count).
func (c *Cluster) KeySlot(ctx context.Context, key string) (int, error) {
	var errs []error
	for _, r := range c.nodes {
		a := c.admins[r]
		slot, err := query(ctx, func(ctx context.Context) (int64, error) { return a.ClusterKeySlot(ctx, key).Result() })
		if err == nil {
			return int(slot), nil
		}
		errs = append(errs, err)
	}
	return 0, fmt.Errorf("testserver: cluster: CLUSTER KEYSLOT: no node answered: %w", errors.Join(errs...))
}

// MasterForKey is the master serving key's slot now, as the first node that
// answers sees it.
func (c *Cluster) MasterForKey(ctx context.Context, key string) (*Redis, error) {
	slot, err := c.KeySlot(ctx, key)
	if err != nil {
		return nil, err
	}
	view, r, err := c.anyView(ctx)
	if err != nil {
		return nil, err
	}
	m := c.byID(owner(view, slot))
	if m == nil {
		return nil, fmt.Errorf("testserver: cluster: %s sees no master serving slot %d of %q", r.Addr(), slot, key)
	}
	return m, nil
}

// WaitForPromotion waits until the slots that old served (at the last
// complete look: start-up, WaitHealthy or an earlier promotion) are served by
// another master, typically old's former replica after the test killed or
// paused old: every other node that answers reports cluster_state:ok and names
// the same new master for all those slots and none for old, and the new master
// answers ROLE as a master. It polls every 50 ms and gives up when ctx ends or
// after 60 s, with an error saying what the nodes reported last.
func (c *Cluster) WaitForPromotion(ctx context.Context, old *Redis) (Promotion, error) {
	oldID := c.ids[old]
	c.mu.Lock()
	slots := c.slots[oldID]
	c.mu.Unlock()
	if oldID == "" || len(slots) == 0 {
		return Promotion{}, fmt.Errorf("testserver: cluster: %s served no slots at the last look", old.Addr())
	}
	var p Promotion
	err := waitFor(ctx, promotionTimeout, "cluster: promotion", func(ctx context.Context) error {
		newID, asked := "", 0
		var last []clusterNode
		for _, r := range c.nodes {
			if r == old {
				continue
			}
			a := c.admins[r]
			info, err := query(ctx, func(ctx context.Context) (string, error) { return a.ClusterInfo(ctx).Result() })
			if err != nil {
				continue // down or paused too: the others decide
			}
			if !strings.Contains(info, "cluster_state:ok\r\n") {
				return fmt.Errorf("%s: cluster_state is not ok", r.Addr())
			}
			view, err := c.view(ctx, r)
			if err != nil {
				continue
			}
			asked++
			for _, s := range slots {
				for _, slot := range []int{s.Start, s.End} {
					id := owner(view, slot)
					switch {
					case id == oldID || id == "":
						return fmt.Errorf("%s: slot %d served by %q", r.Addr(), slot, id)
					case newID == "":
						newID = id
					case id != newID:
						return fmt.Errorf("nodes disagree: slot %d served by %s and by %s", slot, newID, id)
					}
				}
			}
			if o := find(view, oldID); o != nil && len(o.slots) > 0 {
				return fmt.Errorf("%s: %s still serves %v", r.Addr(), old.Addr(), o.slots)
			}
			last = view
		}
		if asked == 0 {
			return errors.New("no other node answered")
		}
		n := c.byID(newID)
		if n == nil {
			return fmt.Errorf("slots served by unknown node %s", newID)
		}
		ro, err := role(ctx, c.admins[n])
		if err != nil {
			return fmt.Errorf("new master %s: %w", n.Addr(), err)
		}
		if ro != "master" {
			return fmt.Errorf("new master %s answers ROLE %s", n.Addr(), ro)
		}
		c.remember(last)
		p = Promotion{Old: old, New: n, Detected: time.Now()}
		return nil
	})
	if err != nil {
		return Promotion{}, fmt.Errorf("testserver: %w", err)
	}
	return p, nil
}

// ClusterOptions returns fresh go-redis options for a client of the cluster,
// with test-friendly timeouts (2 s to dial, read and write) and the slot map
// re-read every second (go-redis' default is every minute), so that a client
// finds a promoted replica soon whatever its traffic. For
// [redis.NewClusterClient].
func (c *Cluster) ClusterOptions() *redis.ClusterOptions {
	return &redis.ClusterOptions{
		Addrs:                      c.Addrs(),
		DialTimeout:                2 * time.Second,
		ReadTimeout:                2 * time.Second,
		WriteTimeout:               2 * time.Second,
		ClusterStateReloadInterval: time.Second,
	}
}

// UniversalOptions returns universal options for the cluster (every node's
// address), for [redis.NewUniversalClient] or code that takes universal options,
// such as redisstore.NewClient. Universal options cannot set the slot map's
// reload interval: such a client keeps go-redis' default.
func (c *Cluster) UniversalOptions() *redis.UniversalOptions {
	return &redis.UniversalOptions{
		Addrs:        c.Addrs(),
		DialTimeout:  2 * time.Second,
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
	}
}

// Client is a cluster client built from [Cluster.ClusterOptions], shared by
// every caller and closed in the cluster's cleanup.
func (c *Cluster) Client() *redis.ClusterClient { return c.client }
