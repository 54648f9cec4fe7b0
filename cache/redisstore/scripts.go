package redisstore

import "github.com/redis/go-redis/v9"

// The Lua scripts run inside Redis, so that an entry and the tag sets that list
// it change together: no reader ever sees an entry missing from a tag set it
// carries. Every key a script touches shares the namespace's hash tag, so the
// scripts also run on Redis Cluster (the tag-set keys of an entry's old tags are
// derived inside the script from the namespace prefix; they live in the same
// slot as the keys passed in KEYS).
//
// Data layout, for namespace NS (see keyPrefix):
//
//	fxs:{NS}:e:<key>   hash: d = value, v = version (decimal), t = tags joined by ",",
//	                   x = expiry in Unix milliseconds ("0": never); native TTL
//	fxs:{NS}:t:<tag>   set of the keys carrying tag; its TTL is never shorter than
//	                   that of any entry in it (persistent if one never expires)
//	fxs:{NS}:l:<name>  string: the lock owner's token; native TTL
//
// Versions are chosen by the client (63 random bits) and passed in, which makes
// every write script safe to replay: go-redis retries a command whose reply was
// lost, and a replayed CompareAndSet recognises its own version instead of
// reporting a conflict.

// luaCommon holds the helpers the write scripts share.
const luaCommon = `
local function split(s)
  local out = {}
  for t in string.gmatch(s, '[^,]+') do out[#out + 1] = t end
  return out
end

local function carries(tags, tag)
  return string.find(',' .. tags .. ',', ',' .. tag .. ',', 1, true) ~= nil
end

-- write stores entry KEYS[1] and keeps its tag sets consistent.
-- KEYS[2..]: the tag sets of the new tags.
-- ARGV: 1 tag-set key prefix, 2 key (the sets' member), 3 value, 4 version,
--       5 lifetime in ms (0: none), 6 tags joined by ','.
local function write()
  local entry, tprefix, member, ttl = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[5])
  local old = redis.call('HGET', entry, 't')
  if old then
    local keep = {}
    for i = 2, #KEYS do keep[KEYS[i]] = true end
    for _, t in ipairs(split(old)) do
      local tk = tprefix .. t
      if not keep[tk] then redis.call('SREM', tk, member) end
    end
  end
  local expires = '0'
  if ttl > 0 then
    local now = redis.call('TIME')
    expires = string.format('%.0f', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + ttl)
  end
  redis.call('HSET', entry, 'd', ARGV[3], 'v', ARGV[4], 't', ARGV[6], 'x', expires)
  if ttl > 0 then
    redis.call('PEXPIRE', entry, ARGV[5])
  else
    redis.call('PERSIST', entry)
  end
  for i = 2, #KEYS do
    local tk = KEYS[i]
    local left = redis.call('PTTL', tk)
    redis.call('SADD', tk, member)
    if ttl == 0 then
      if left >= 0 then redis.call('PERSIST', tk) end
    elseif left == -2 or (left >= 0 and left < ttl) then
      redis.call('PEXPIRE', tk, ARGV[5])
    end
  end
  return ARGV[4]
end
`

// luaSet: write; returns the version.
const luaSet = luaCommon + `
return write()
`

// luaCompareAndSet: write when the stored version is ARGV[7] ("0": absent);
// returns the version, or nil on a conflict. A replay of a write that already
// happened (the stored version is ours, ARGV[4]) succeeds again.
const luaCompareAndSet = luaCommon + `
local cur = redis.call('HGET', KEYS[1], 'v')
if (cur == false and ARGV[7] == '0') or cur == ARGV[7] then
  return write()
end
if cur == ARGV[4] then
  return ARGV[4]
end
return false
`

// luaDelete: removes entry KEYS[1] and its tag-set memberships; returns 1 when
// it existed. ARGV: 1 tag-set key prefix, 2 key.
const luaDelete = luaCommon + `
local tags = redis.call('HGET', KEYS[1], 't')
if not tags then return 0 end
for _, t in ipairs(split(tags)) do redis.call('SREM', ARGV[1] .. t, ARGV[2]) end
return redis.call('DEL', KEYS[1])
`

// luaFlushTag: pops up to ARGV[4] members of tag set KEYS[1] and deletes those
// entries that still carry the tag, with their other memberships. Returns
// {deleted, members left}. ARGV: 1 entry key prefix, 2 tag-set key prefix, 3 tag,
// 4 batch size.
const luaFlushTag = luaCommon + `
local members = redis.call('SPOP', KEYS[1], ARGV[4])
local n = 0
for _, m in ipairs(members) do
  local entry = ARGV[1] .. m
  local tags = redis.call('HGET', entry, 't')
  if tags and carries(tags, ARGV[3]) then
    for _, t in ipairs(split(tags)) do
      if t ~= ARGV[3] then redis.call('SREM', ARGV[2] .. t, m) end
    end
    n = n + redis.call('DEL', entry)
  end
end
return {n, redis.call('SCARD', KEYS[1])}
`

// luaPrune: removes from tag set KEYS[1] the members ARGV[3..] whose entry is
// gone (expired) or no longer carries the tag; returns how many went.
// ARGV: 1 entry key prefix, 2 tag.
const luaPrune = luaCommon + `
local n = 0
for i = 3, #ARGV do
  local tags = redis.call('HGET', ARGV[1] .. ARGV[i], 't')
  if not tags or not carries(tags, ARGV[2]) then
    n = n + redis.call('SREM', KEYS[1], ARGV[i])
  end
end
return n
`

// luaUnlock: deletes lock KEYS[1] when it holds token ARGV[1]; returns 1 if so.
const luaUnlock = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`

// scripts are a Store's compiled scripts, shared with its Subs. redis.Script
// runs EVALSHA and falls back to EVAL when the server does not know the script
// (after a restart or SCRIPT FLUSH).
type scripts struct {
	set, cas, del, flushTag, prune, unlock *redis.Script
}

func newScripts() *scripts {
	return &scripts{
		set:      redis.NewScript(luaSet),
		cas:      redis.NewScript(luaCompareAndSet),
		del:      redis.NewScript(luaDelete),
		flushTag: redis.NewScript(luaFlushTag),
		prune:    redis.NewScript(luaPrune),
		unlock:   redis.NewScript(luaUnlock),
	}
}
