"""The Redis processor state's Lua scripts (`redis_processor_state`): each runs atomically
inside Redis, next to the data it reads and writes."""

# KEYS[1]: landmark, KEYS[2]: set of segment names, KEYS[3]: volume, KEYS[4...]: the
# batch's hits zsets. ARGV: half-life, rescale-after (s), hits key prefix, the KEYS index
# of the global segment's zset (0: none), then (key index, item, weight, ts) per hit.
# The landmark is read and moved inside the script, so every processor adds weights
# against the same landmark. A hit in the global segment also adds its weight, undecayed,
# to the item's volume. A rescale walks every segment's zset, including segments this
# batch does not touch (named from KEYS[2]): standalone Redis only.
HITS_LUA = """
local half_life = tonumber(ARGV[1])
local rescale_after = tonumber(ARGV[2])
local prefix = ARGV[3]
local ln2 = math.log(2)
local landmark = tonumber(redis.call('GET', KEYS[1]) or '')
local function rescale(new_landmark, raw)
  local factor = math.exp(ln2 * (landmark - new_landmark) / half_life)
  for _, segment in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    local key = prefix .. segment
    local total = redis.call('ZCARD', key)
    for start = 0, total - 1, 500 do
      local flat = redis.call('ZRANGE', key, start, start + 499, 'WITHSCORES')
      local args = {}
      for i = 1, #flat, 2 do
        args[#args + 1] = tonumber(flat[i + 1]) * factor
        args[#args + 1] = flat[i]
      end
      if #args > 0 then redis.call('ZADD', key, unpack(args)) end
    end
  end
  landmark = new_landmark
  redis.call('SET', KEYS[1], raw)
end
local global = ARGV[4]
for i = 5, #ARGV, 4 do
  local ts = tonumber(ARGV[i + 3])
  if landmark == nil then
    landmark = ts
    redis.call('SET', KEYS[1], ARGV[i + 3])
  end
  if ts - landmark > rescale_after then rescale(ts, ARGV[i + 3]) end
  local weight = tonumber(ARGV[i + 2]) * math.exp(ln2 * (ts - landmark) / half_life)
  redis.call('ZINCRBY', KEYS[tonumber(ARGV[i])], weight, ARGV[i + 1])
  if ARGV[i] == global then redis.call('ZINCRBY', KEYS[3], ARGV[i + 2], ARGV[i + 1]) end
end
return 0
"""

# KEYS: co-occurrence rows touched by the batch; ARGV[1]: the cap, then (row index, other
# item, count) per increment. Returns each increment's new total (as Redis formats it).
# One call rather than an increment command each: a transaction holds dozens. A row is
# then trimmed back to its `cap` largest counts once it holds twice as many, so new pairs
# get room to grow.
CO_OCCURRENCE_LUA = """
local cap = tonumber(ARGV[1])
local totals = {}
for i = 2, #ARGV, 3 do
  totals[#totals + 1] = redis.call('ZINCRBY', KEYS[tonumber(ARGV[i])], ARGV[i + 2], ARGV[i + 1])
end
for _, key in ipairs(KEYS) do
  local card = redis.call('ZCARD', key)
  if card > 2 * cap then redis.call('ZREMRANGEBYRANK', key, 0, card - cap - 1) end
end
return totals
"""

# KEYS[1]: the item's co-occurrence row, KEYS[2]: the volume zset; ARGV[1]: the item.
# Returns {row as member, count pairs, volumes of the item then of each row member}.
NEIGHBOURS_LUA = """
local row = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local volumes = redis.call('ZMSCORE', KEYS[2], ARGV[1])
for start = 1, #row, 2000 do
  local ids = {}
  for i = start, math.min(start + 1999, #row), 2 do ids[#ids + 1] = row[i] end
  for _, v in ipairs(redis.call('ZMSCORE', KEYS[2], unpack(ids))) do
    volumes[#volumes + 1] = v
  end
end
return {row, volumes}
"""

# KEYS[1]: the unlisted zset (item -> when last seen, as a number from KEYS[2]), KEYS[2]:
# its counter, KEYS[3]: volume, KEYS[4]: the set of segment names. ARGV: the cap, the
# hits, co-occurrence and item key prefixes, then the items the catalog does not list
# that a transaction counted, in the order seen. Past the cap, the items seen least
# recently are dropped with their counts: hits, volume, their co-occurrence row and their
# place in the rows of the items in it (unless the catalog lists them by now: then only
# from the zset). Returns the items whose co-occurrence rows changed.
UNLISTED_LUA = """
local cap = tonumber(ARGV[1])
for i = 5, #ARGV do
  redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[2]), ARGV[i])
end
local excess = redis.call('ZCARD', KEYS[1]) - cap
local changed = {}
if excess <= 0 then return changed end
local gone = redis.call('ZPOPMIN', KEYS[1], excess)
local segments = redis.call('SMEMBERS', KEYS[4])
for j = 1, #gone, 2 do
  local item = gone[j]
  if redis.call('EXISTS', ARGV[4] .. item) == 0 then
    redis.call('ZREM', KEYS[3], item)
    for _, segment in ipairs(segments) do redis.call('ZREM', ARGV[2] .. segment, item) end
    local row = ARGV[3] .. item
    changed[#changed + 1] = item
    for _, other in ipairs(redis.call('ZRANGE', row, 0, -1)) do
      redis.call('ZREM', ARGV[3] .. other, item)
      changed[#changed + 1] = other
    end
    redis.call('DEL', row)
  end
end
return changed
"""
