package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/fxsession/fxsession/cache"
)

// call is one command of a round trip: a script run or a plain command.
type call struct {
	key    string        // the key that routes it on a cluster: its first key
	script *redis.Script // nil for a plain command
	keys   []string      // the script's KEYS
	args   []any         // the script's ARGV, or the whole plain command
	cmd    *redis.Cmd    // the reply, once sent
}

func scriptCall(sc *redis.Script, keys []string, args ...any) *call {
	return &call{key: keys[0], script: sc, keys: keys, args: args}
}

func plainCall(key string, args ...any) *call {
	return &call{key: key, args: args}
}

// sender is a pipeline, which queues commands, or a client, which sends them.
type sender interface {
	redis.Scripter
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// add queues c on p (or sends it, on a client), with EVALSHA, or with EVAL
// when eval is set.
func (c *call) add(ctx context.Context, p sender, eval bool) {
	switch {
	case c.script == nil:
		c.cmd = p.Do(ctx, c.args...)
	case eval:
		c.cmd = c.script.Eval(ctx, p, c.keys, c.args...)
	default:
		c.cmd = c.script.EvalSha(ctx, p, c.keys, c.args...)
	}
}

// errTooFewReplicas is wrapped by the error of a write fewer replicas than
// Options.MinReplicas acknowledged in time.
var errTooFewReplicas = errors.New("too few replicas acknowledged the write in time; it may still have been applied on the master, and a failover may roll it back")

// run sends calls in one round trip: one command, or one pipeline, which a
// cluster client sends to every node concerned at once. With durable set and the durability mode on,
// each node's share ends with WAIT; replicaErr then says whether too few replicas
// acknowledged. err is a failure of the round trip itself (the connection, the
// context); each call's own reply, error replies included, is in its cmd.
// Scripts the server does not know (after a restart or SCRIPT FLUSH) are sent
// again with EVAL, in a second round trip.
func (s *Store) run(ctx context.Context, calls []*call, durable bool) (replicaErr, err error) {
	durable = durable && s.replicas > 0
	replicaErr, err = s.send(ctx, calls, durable, false)
	if err != nil {
		return nil, err
	}
	var again []*call
	for _, c := range calls {
		if c.script != nil && redis.HasErrorPrefix(c.cmd.Err(), "NOSCRIPT") {
			again = append(again, c)
		}
	}
	if len(again) == 0 {
		return replicaErr, nil
	}
	rErr, err := s.send(ctx, again, durable, true)
	if err != nil {
		return nil, err
	}
	if replicaErr == nil {
		replicaErr = rErr
	}
	return replicaErr, nil
}

// send is one attempt of run.
func (s *Store) send(ctx context.Context, calls []*call, durable, eval bool) (replicaErr, err error) {
	if !durable {
		if len(calls) == 1 {
			// One command needs no pipeline (an update's script alone).
			c := calls[0]
			c.add(ctx, s.client, eval)
			return nil, transportErr(c.cmd.Err(), calls)
		}
		p := s.client.Pipeline()
		for _, c := range calls {
			c.add(ctx, p, eval)
		}
		_, err := p.Exec(ctx)
		return nil, transportErr(err, calls)
	}
	if s.cluster == nil {
		return s.sendWait(ctx, s.client, calls, eval)
	}
	return s.sendClusterWait(ctx, calls, eval)
}

// sendWait sends calls on one connection of client (a node), followed by WAIT.
func (s *Store) sendWait(ctx context.Context, client redis.Cmdable, calls []*call, eval bool) (replicaErr, err error) {
	p := client.Pipeline()
	for _, c := range calls {
		c.add(ctx, p, eval)
	}
	wait := p.Do(ctx, "WAIT", s.replicas, s.replicaTO.Milliseconds())
	_, err = p.Exec(ctx)
	if err = transportErr(err, calls); err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(calls, executed) {
		// Nothing ran here (the node answered MOVED, READONLY...: it is no
		// longer the master, and refuses WAIT too): what WAIT says is moot.
		return nil, nil
	}
	acked, err := wait.Int()
	if err != nil {
		return fmt.Errorf("%w: WAIT: %w", cache.ErrUnavailable, err), nil
	}
	if acked < s.replicas {
		return fmt.Errorf("%w: %w: %d of %d within %v", cache.ErrUnavailable, errTooFewReplicas, acked, s.replicas, s.replicaTO), nil
	}
	return nil, nil
}

// executed reports whether the server ran c: it answered it, and not with a
// redirection or a refusal to take writes now.
func executed(c *call) bool {
	err := c.cmd.Err()
	return err == nil || !unavailableReply(err) && !redis.HasErrorPrefix(err, "NOSCRIPT")
}

// maxMoves bounds the rounds of sendClusterWait that follow MOVED replies.
const maxMoves = 3

// sendClusterWait sends calls in the durability mode on a cluster. WAIT has no
// key, and go-redis would send it to any node (and refuses it in a cluster
// pipeline), so the store groups the calls by the master serving their slots and
// sends each group and its WAIT on one connection to that node, all groups at
// once. Calls answered MOVED (a stale slot map) did not run: the store reads
// the slot map again and sends them to the right node.
func (s *Store) sendClusterWait(ctx context.Context, calls []*call, eval bool) (replicaErr, err error) {
	for round := 0; ; round++ {
		groups := map[*redis.Client][]*call{}
		for _, c := range calls {
			node, err := s.cluster.MasterForKey(ctx, c.key)
			if err != nil {
				return nil, err
			}
			groups[node] = append(groups[node], c)
		}
		var (
			mu   sync.Mutex
			wg   sync.WaitGroup
			errs []error
		)
		for node, group := range groups {
			wg.Go(func() {
				rErr, err := s.sendWait(ctx, node, group, eval)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				} else if rErr != nil && replicaErr == nil {
					replicaErr = rErr
				}
			})
		}
		wg.Wait()
		if len(errs) > 0 {
			return nil, errs[0]
		}
		var moved []*call
		for _, c := range calls {
			if isRedirect(c.cmd.Err()) {
				moved = append(moved, c)
			}
		}
		if len(moved) == 0 || round == maxMoves {
			return replicaErr, nil
		}
		// ForEachMaster reads the slot map again before it returns.
		if err := s.cluster.ForEachMaster(ctx, func(context.Context, *redis.Client) error { return nil }); err != nil {
			return nil, err
		}
		calls = moved
	}
}

// transportErr returns the error of a pipeline's Exec when the round trip
// failed (the connection, the context), and nil when the server answered every
// command, some of them with error replies (those are in the calls' cmds).
func transportErr(err error, calls []*call) error {
	if err == nil {
		return nil
	}
	var reply redis.Error
	for _, c := range calls {
		if e := c.cmd.Err(); e != nil && !errors.As(e, &reply) {
			return e
		}
	}
	if errors.As(err, &reply) {
		return nil
	}
	return err
}
