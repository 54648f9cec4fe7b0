// Package testserver starts real servers for tests: a redis-server
// ([StartRedis]), a Redis Sentinel setup of a master, a replica and three
// sentinels ([StartSentinel]), a Redis Cluster of three masters and three
// replicas ([StartCluster]) and a PostgreSQL server ([StartPostgres]), each
// process on a free loopback port with its files in a temporary folder, stopped
// in t.Cleanup.
//
// The servers are the real programs from the system's packages, never fakes, and
// a missing one fails the test with the command that installs it (`make deps`);
// no test is skipped for want of a server. [Redis] and [Postgres] offer Stop
// and Start (same port, same folder) for fault tests, and a *Main variant for
// TestMain when several tests of a package share one server. The Sentinel and
// Cluster setups hand out their processes as [Redis] values to kill or pause,
// and wait for the promotion that follows ([Sentinel.WaitForPromotion],
// [Cluster.WaitForPromotion]).
package testserver
