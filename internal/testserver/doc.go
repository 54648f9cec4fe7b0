// Package testserver starts real servers for tests: a redis-server
// ([StartRedis]) and a PostgreSQL server ([StartPostgres]), each on a free
// loopback port with its files in a temporary folder, stopped in t.Cleanup.
//
// The servers are the real programs from the system's packages, never fakes, and
// a missing one fails the test with the command that installs it (`make deps`);
// no test is skipped for want of a server. Both offer Stop and Start (same port,
// same folder) for fault tests, and a *Main variant for TestMain when several
// tests of a package share one server.
package testserver
