package redisstore

import "github.com/redis/go-redis/v9"

// scripts are the Lua scripts of a store (each touches keys of one slot only).
type scripts struct {
	write, del, collect, unlock, tagPrune, indexFix *redis.Script
}

func newScripts() scripts {
	return scripts{
		write:    redis.NewScript(luaHelpers + writeScript),
		del:      redis.NewScript(deleteScript),
		collect:  redis.NewScript(collectScript),
		unlock:   redis.NewScript(unlockScript),
		tagPrune: redis.NewScript(tagPruneScript),
		indexFix: redis.NewScript(indexFixScript),
	}
}

// Reply codes of the write script.
const (
	writeOK       = 1 // {1, version}
	writeExists   = 2 // {2}: Create found a live record
	writeMissing  = 3 // {3}: no live record to change
	writeConflict = 4 // {4, field, current version}
)

// luaHelpers encode and decode the 8-byte big-endian version that prefixes every
// field value (with Redis's struct library), and pass long lists to HMGET, HSET
// and HDEL in slices. Lua numbers are doubles: exact for integers below 2^53,
// and versions (microseconds since 1970) stay far below that.
const luaHelpers = `
local function be8(v) return struct.pack('>I8', v) end
local function version(s)
  if #s < 8 then return -1 end
  return (struct.unpack('>I8', s))
end
local function num(v) return string.format('%.0f', v) end
-- hmget and chunked pass long lists in slices: unpack has a limit (a few
-- thousand values) that a record with many fields would pass.
local function hmget(k, names)
  if #names <= 1000 then return redis.call('HMGET', k, unpack(names)) end
  local out = {}
  for s = 1, #names, 1000 do
    local r = redis.call('HMGET', k, unpack(names, s, math.min(s + 999, #names)))
    for i = 1, #r do out[#out + 1] = r[i] end
  end
  return out
end
local function chunked(cmd, k, list)
  for s = 1, #list, 1000 do
    redis.call(cmd, k, unpack(list, s, math.min(s + 999, #list)))
  end
end
`

// writeScript applies one cache.Write to the record hash KEYS[1], atomically:
// every condition is checked before anything changes. The common write (one
// field set, tags and expiry kept) takes a shorter path first: Lua's tables
// and loops cost a fifth of the script's time, and the two paths are compared
// case by case in TestWritePathsAgree.
//
// ARGV: 1 write id, 2 now (Unix ms, the caller's clock, which decides expiry),
// 3 create ("1"/"0"), 4 expiry ("" keep, "none" clear, else Unix ms), 5 retention
// (ms), 6 tags to add, 7 tags to remove (comma separated), 8 number of fields,
// then per field: op ("s" set, "r" remove), check ("1"/"0"), expected version,
// name, value.
const writeScript = `
-- The common write (one field set, tags and expiry kept) in fewer steps: the
-- same checks and effects as the general path below, without its tables.
if ARGV[8] == '1' and ARGV[9] == 's' and ARGV[4] == '' and ARGV[6] == '' and ARGV[7] == '' then
  local k, name, check = KEYS[1], ARGV[12], ARGV[10] == '1'
  local m
  if check then
    m = redis.call('HMGET', k, '#v', '#e', '#w', name)
  else
    m = redis.call('HMGET', k, '#v', '#e', '#w')
  end
  if m[1] and m[3] == ARGV[1] then
    return {1, m[1]}
  end
  local live = m[1] and (not m[2] or tonumber(m[2]) > tonumber(ARGV[2]))
  if ARGV[3] == '1' then
    if live then return {2} end
  elseif not live then
    return {3}
  end
  if check then
    local cur = 0
    if live and m[4] then cur = version(m[4]) end
    if cur ~= tonumber(ARGV[11]) then
      return {4, name, num(cur)}
    end
  end
  local last = tonumber(m[1]) or 0
  if m[1] and not live then
    redis.call('DEL', k)
  end
  local t = redis.call('TIME')
  local v = tonumber(t[1]) * 1000000 + tonumber(t[2])
  if v <= last then v = last + 1 end
  local vs = num(v)
  redis.call('HSET', k, name, be8(v) .. ARGV[13], '#v', vs, '#w', ARGV[1])
  return {1, vs}
end
local k = KEYS[1]
local n = tonumber(ARGV[8])
-- One HMGET reads the record's state and the fields whose version is checked.
local get = {'#v', '#e', '#w', '#t'}
for i = 0, n - 1 do
  local b = 9 + i * 5
  if ARGV[b + 1] == '1' then get[#get + 1] = ARGV[b + 3] end
end
local m = hmget(k, get)
if m[1] and m[3] == ARGV[1] then
  return {1, m[1]}
end
local now = tonumber(ARGV[2])
local live = m[1] and (not m[2] or tonumber(m[2]) > now)
if ARGV[3] == '1' then
  if live then return {2} end
elseif not live then
  return {3}
end
local j = 4
for i = 0, n - 1 do
  local b = 9 + i * 5
  if ARGV[b + 1] == '1' then
    j = j + 1
    local cur = 0
    if live and m[j] then cur = version(m[j]) end
    if cur ~= tonumber(ARGV[b + 2]) then
      return {4, ARGV[b + 3], num(cur)}
    end
  end
end
local last = tonumber(m[1]) or 0
local tags = {}
if live then
  if m[4] then
    for t in string.gmatch(m[4], '[^,]+') do tags[#tags + 1] = t end
  end
elseif m[1] then
  redis.call('DEL', k)
end
local t = redis.call('TIME')
local v = tonumber(t[1]) * 1000000 + tonumber(t[2])
if v <= last then v = last + 1 end
local pre = be8(v)
-- One HSET writes the fields set, the version, the write id and (below) the
-- tags and expiry when they change; one HDEL removes what goes.
local set, del = {}, {}
for i = 0, n - 1 do
  local b = 9 + i * 5
  if ARGV[b] == 'r' then
    del[#del + 1] = ARGV[b + 3]
  else
    set[#set + 1] = ARGV[b + 3]
    set[#set + 1] = pre .. ARGV[b + 4]
  end
end
if ARGV[6] ~= '' or ARGV[7] ~= '' then
  for a in string.gmatch(ARGV[6], '[^,]+') do
    local found = false
    for _, x in ipairs(tags) do
      if x == a then found = true break end
    end
    if not found then tags[#tags + 1] = a end
  end
  for r in string.gmatch(ARGV[7], '[^,]+') do
    for i, x in ipairs(tags) do
      if x == r then table.remove(tags, i) break end
    end
  end
  if #tags == 0 then
    del[#del + 1] = '#t'
  else
    set[#set + 1] = '#t'
    set[#set + 1] = table.concat(tags, ',')
  end
end
local vs = num(v)
set[#set + 1] = '#v'
set[#set + 1] = vs
set[#set + 1] = '#w'
set[#set + 1] = ARGV[1]
if ARGV[4] == 'none' then
  del[#del + 1] = '#e'
elseif ARGV[4] ~= '' then
  set[#set + 1] = '#e'
  set[#set + 1] = ARGV[4]
end
chunked('HDEL', k, del)
chunked('HSET', k, set)
if ARGV[4] == 'none' then
  redis.call('PERSIST', k)
elseif ARGV[4] ~= '' then
  redis.call('PEXPIREAT', k, num(tonumber(ARGV[4]) + tonumber(ARGV[5])))
end
return {1, vs}
`

// deleteScript removes the record KEYS[1] and returns 1 when it was live at
// ARGV[1] (Unix ms).
const deleteScript = `
local m = redis.call('HMGET', KEYS[1], '#v', '#e')
if not m[1] then return 0 end
redis.call('UNLINK', KEYS[1])
if m[2] and tonumber(m[2]) <= tonumber(ARGV[1]) then return 0 end
return 1
`

// Reply codes of the collect script.
const (
	collectGone     = 0 // {0}: no record
	collectNoExpiry = 1 // {1}: the record never expires
	collectNotDue   = 2 // {2, expiry}: it expires after the deadline
	collectDone     = 3 // {3, version, expiry, tags, name, value, ...}
)

// collectScript removes the record KEYS[1] if it expired by ARGV[2] (Unix ms) and
// returns what it held: version, expiry, tags and the fields named in ARGV[4...].
// It leaves a tombstone KEYS[2] holding the collector's token ARGV[1] and the
// reply for ARGV[3] ms, so that the same collector's call sent again (a lost
// reply) gets the same answer while any other collector finds the record gone.
const collectScript = `
local m = redis.call('HMGET', KEYS[1], '#v', '#e', '#t')
if not m[1] then
  local g = redis.call('GET', KEYS[2])
  if g and string.sub(g, 1, #ARGV[1]) == ARGV[1] then
    return cmsgpack.unpack(string.sub(g, #ARGV[1] + 1))
  end
  return {0}
end
if not m[2] then return {1} end
if tonumber(m[2]) > tonumber(ARGV[2]) then return {2, m[2]} end
local out = {3, m[1], m[2], m[3] or ''}
if #ARGV > 3 then
  local vals = redis.call('HMGET', KEYS[1], unpack(ARGV, 4))
  for i = 4, #ARGV do
    if vals[i - 3] then
      out[#out + 1] = ARGV[i]
      out[#out + 1] = vals[i - 3]
    end
  end
end
redis.call('UNLINK', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1] .. cmsgpack.pack(out), 'PX', ARGV[3])
return out
`

// unlockScript deletes the lock KEYS[1] if it holds the token ARGV[1].
const unlockScript = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`

// tagPruneScript removes from the tag set KEYS[1] the members ARGV[2...] whose
// score is below ARGV[1] (Unix ms): those no write has added since then.
const tagPruneScript = `
local limit = tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) < limit then
    n = n + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return n
`

// indexFixScript corrects entries of the expiry index shard KEYS[1]: ARGV holds
// triples (member, score seen, new score or "" to remove); an entry is changed
// only if its score is still the one seen, so that a write that moved it
// meanwhile wins.
const indexFixScript = `
local n = 0
for i = 1, #ARGV, 3 do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) == tonumber(ARGV[i + 1]) then
    if ARGV[i + 2] == '' then
      redis.call('ZREM', KEYS[1], ARGV[i])
    else
      redis.call('ZADD', KEYS[1], ARGV[i + 2], ARGV[i])
    end
    n = n + 1
  end
end
return n
`
