// Package redisstore is the Redis backend of [cache.Store], built on go-redis: one
// Redis server, Sentinel (a [redis.Client] from [redis.NewFailoverClient]) or Redis
// Cluster (a [redis.ClusterClient]). [NewClient] and [Module] build such a client
// with defaults that fail fast on a dead server and recover within seconds of a
// failover.
//
// # Layout
//
// Every key the store writes starts with fxs:, the namespace, and a one-letter
// kind, and ends with a Redis Cluster hash tag in braces:
//
//	fxs:<ns>:r:{<key>}          a record: one Redis hash
//	fxs:<ns>:t:{<tag>}          the tag index of one tag: a sorted set of record keys
//	fxs:<ns>:x:{<ns>/<i>/<n>}   shard i (0-15) of the expiry index: a sorted set of record keys
//	fxs:<ns>:l:{<name>}         a lock: a string holding the owner's token
//	fxs:<ns>:g:{<key>}          a collected record's tombstone, for one minute (see Versions)
//	fxs:<ns>:l:{#sweep}         the tag sweep's period marker (no lock name has a '#')
//
// A record's hash holds its fields under their own names, each value prefixed
// with the field's version as 8 bytes, big-endian, so that one HGETALL or HMGET
// returns values and versions together; and four internal fields whose names
// start with '#', a character no field name may have: #v the record's version,
// #e its expiry (Unix milliseconds; absent: never), #t its tags (comma
// separated) and #w the identifier of its last write.
//
// # Records spread over a cluster
//
// A record's key carries the record key itself as its hash tag, so a record lives
// in one hash slot (the write script touches only it: no CROSSSLOT, whatever the
// cluster), and the records of one namespace spread over all the slots, and so
// over every master of a Redis Cluster, as record keys (random session selectors
// in practice) hash. A cluster then adds capacity, and losing one master loses
// only the records on its slots. The tag sets and the 16 expiry index shards carry
// hash tags of their own and spread too.
//
// # Round trips
//
// [Store.Read] is one command (HGETALL, or HMGET of the fields named) and
// [Store.ReadMany] one pipeline, which a [redis.ClusterClient] sends to every node
// concerned at once: one client round trip either way. [Store.Write] is one Lua
// script on the record's slot, which checks every condition before it changes
// anything (one HMGET reads the record's state and every version it checks; one
// HSET writes the fields, the version and any tags or expiry), pipelined with
// the index updates it needs on other slots (a ZADD per tag added, one when the
// expiry moves): one round trip. [Store.Delete] is one
// script, [Store.Lock] one SET and [Store.Unlock] one script. Iterations
// ([Store.Keys], [Store.Tagged], [Store.Flush], [Store.DeleteMany]) cost one to
// three round trips per batch of [Options.BatchSize] keys, and a pass of
// [Store.CollectGarbage] three (read the due index entries, collect the records,
// fix the indexes).
//
// Namespace-wide work walks every master of a cluster (with SCAN MATCH and the
// namespace's prefix) one page at a time, so it costs in proportion to the
// masters' whole key space, not only the namespace's: cheap on a Redis dedicated to
// sessions, slower where the namespace is a small part of a big database.
//
// # Versions
//
// A write gives the record the version max(previous + 1, the server's clock in
// microseconds), computed by the script from Redis's TIME: versions grow within a
// record and a record deleted and created again starts above its earlier life
// (unless the master's clock went back by more than the time in between, as
// after a failover to a replica whose clock is behind).
//
// Each write carries a random identifier that the script stores (#w): when
// go-redis sends a write again because its reply was lost (a read timeout, a
// broken connection), the second run recognises its own write and returns its
// version instead of failing a condition the first run already changed. A
// collector's deletions are made safe to resend the same way (the tombstones).
//
// # Expiry and garbage collection
//
// [cache.Write.Expires] sets a record's logical expiry (#e). From then on every
// read and write treats the record as absent, but it stays in Redis: its native
// expiry (PEXPIREAT) is the logical one plus [Options.ExpiredRetention] (default
// one hour), so that [Store.CollectGarbage] can still find the expired record and
// report it (the session layer turns that into an Expired event), and Redis
// drops it on its own, without a report, when no collector ran during the
// retention.
//
// The expiry index has 16 shards (a record's shard is a hash of its key) with hash
// tags of their own, chosen (n) so that shard i lies in the i-th sixteenth of the
// hash slots: the index spreads evenly over the masters too. A write adds the record
// to it when it moves the expiry; CollectGarbage reads the shards for entries due
// by [cache.GCOptions.Before] and deletes each record with a script that checks
// again that it is expired and returns its tags and the fields asked for, so that
// exactly one collector reports each record, whatever the processes collecting
// at once. It then removes the index entries of records that were collected,
// deleted or no longer expire (only when no write has moved them meanwhile).
//
// # Tags
//
// A record's own tags (#t) are authoritative. The tag index is one sorted set
// per tag, written only by writes that add the tag (ZADD, scored with the write's
// time): never by other writes, and not by removals or deletions, which leave
// stale members behind. [Store.Tagged] checks every member against its record
// and yields only the live records that carry the tag; it and CollectGarbage
// remove the stale members they find, but only members older than a minute (the
// score), so that a removal never races a write that is adding the tag at the
// same moment on another slot: the index never misses a record that carries the
// tag, a guarantee a plain set cleaned up on removal cannot give across slots.
// CollectGarbage also walks every tag set of the namespace, at most once every 10
// minutes across all processes, to remove stale members Tagged never saw;
// members it finds valid are not checked again for an hour.
//
// # Replication and the durability mode
//
// Redis replicates asynchronously: a write is acknowledged by the master before
// any replica has it. When the master fails, the replica promoted in its place
// (Sentinel or Redis Cluster) may lack the last writes the master acknowledged:
// they are lost, and a version-checked write made afterwards succeeds against
// the older state the replica holds, so a lost update goes unnoticed. Without
// the durability mode, a failover can roll back acknowledged session writes.
//
// The durability mode ([Options.MinReplicas] > 0) sends WAIT numreplicas
// timeout after each [Store.Write], [Store.Delete] and [Store.DeleteMany], in the
// same pipeline and on the same connection to the node that took the write (on a
// cluster, to each node that took part of it, all at once): still one round
// trip. (WAIT cannot run inside a script, and inside MULTI it does not wait, so
// the store sends it beside the script; go-redis would send a keyless WAIT to any
// node of a cluster, so the store groups a write's commands by the master that
// serves them and sends each group on that master's connection.) When fewer
// than MinReplicas replicas acknowledge within [Options.ReplicaTimeout], the
// call fails with an error matching [cache.ErrUnavailable]. The write may
// nevertheless have been applied on the master, and a failover may then roll
// it back: the caller must not acknowledge it (the session layer answers 503).
// A master promoted after a failover has no replica until another one joins it
// (the old master, restarted, does): until then every durable write to its slots
// fails, which is the mode doing its job. The collector's deletions and the locks
// do not wait: a failover can bring back a collected record (it is then
// collected, and reported, again) or release a lock early.
// What the mode guarantees: a write the store reported as done was on MinReplicas
// replicas besides the master, so a failover that promotes one of them keeps it.
// Promotions do not always pick the most up-to-date replica, so the guarantee is
// complete when MinReplicas is the number of replicas of each master.
//
// The server's own min-replicas-to-write setting adds a refusal before the fact:
// a master that has not heard from enough replicas within min-replicas-max-lag
// refuses writes (NOREPLICAS, which the store reports as unavailable), so a master
// cut off from its replicas stops accepting writes that a failover on the other
// side would discard. It does not wait for the write itself to be replicated; the
// durability mode does. Use both for the strongest setting Redis offers.
//
// # Failures and failover
//
// A server that is down, paused or unreachable yields errors matching
// [cache.ErrUnavailable] (and wrapping the go-redis or network error), never a
// hang. How long an operation may take before it fails is set by the client's
// DialTimeout, ReadTimeout, WriteTimeout and retries, and by the context's
// deadline when ContextTimeoutEnabled is set; [NewClient] and [Module] set short
// defaults. After a Redis Cluster failover, go-redis keeps sending a slot's
// commands to the dead master until it reads the slot map again; the store asks
// for that at once when a command fails for want of a connection, and the clients
// [NewClient] builds also read it every second
// ([DefaultClusterStateReloadInterval]), so a store finds the promoted replica
// within about a second of the promotion, without a restart (measured: 0.2 s).
// A Sentinel client (MasterName) learns the new master from the sentinels.
// After a server was unreachable, go-redis probes it once a second before it
// dials again for commands, so a store recovers within about a second of the
// server's return.
//
// # Requirements
//
// Redis 7.0 or newer.
package redisstore
