package redisstore

import "time"

// SetUpkeep shortens a store's upkeep timing for tests: the age below which a
// tag-set member is never removed, how long a member the sweep found valid is
// left alone, and how often the sweep may run (0: at every CollectGarbage). It
// changes the root store and its Subs; call it before using the store.
func SetUpkeep(s *Store, tagGrace, tagRecheck, sweepEvery time.Duration) {
	s.tagGrace, s.tagRecheck, s.sweepEvery = tagGrace, tagRecheck, sweepEvery
}

// ShardKeys returns the Redis keys of a store's expiry index shards.
func ShardKeys(s *Store) []string { return s.shards[:] }
