-- Meridian tenant admission, atomic on one Redis node (every key of a
-- tenant shares the hash tag {t:NAME}, so Redis Cluster keeps them together).
-- Same arithmetic as meridian-gateway's gcra.rs, on the server's clock.
--
-- KEYS[1] requests TAT   KEYS[2] tokens TAT   KEYS[3] in-flight ZSET
-- KEYS[4] today's usage (hash)  KEYS[5] this month's usage (hash)
-- ARGV: 1 req interval ms (0: no limit)  2 req burst ms
--       3 tok interval ms (0: no limit)  4 tok burst ms  5 tokens
--       6 max concurrent (0: none)  7 request id  8 in-flight lease ms
--       9 day budget (<0: none)  10 month budget (<0: none)
-- Returns {admitted(1/0), refused_by, retry_after_ms, req_remaining,
--          req_reset_ms, tok_remaining, tok_reset_ms, spent_day, spent_month}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function gcra(key, interval, burst, cost)
  if interval <= 0 then return 1, 0, -1, 0, nil end
  local tat = tonumber(redis.call('GET', key) or '0') or 0
  local start = math.max(tat, now)
  local ahead = start - now
  if ahead > burst then return 0, ahead - burst, 0, ahead, nil end
  local new = start + cost * interval
  local left = 0
  if new - now <= burst then left = math.floor((burst - (new - now)) / interval) + 1 end
  return 1, 0, left, new - now, new
end

local spent_day = tonumber(redis.call('HGET', KEYS[4], 'cost_usd') or '0') or 0
local spent_month = tonumber(redis.call('HGET', KEYS[5], 'cost_usd') or '0') or 0
local day_budget, month_budget = tonumber(ARGV[9]), tonumber(ARGV[10])
if day_budget >= 0 and spent_day >= day_budget then
  return {0, 'budget_day', 0, 0, 0, 0, 0, tostring(spent_day), tostring(spent_month)}
end
if month_budget >= 0 and spent_month >= month_budget then
  return {0, 'budget_month', 0, 0, 0, 0, 0, tostring(spent_day), tostring(spent_month)}
end

local max_conc = tonumber(ARGV[6])
if max_conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= max_conc then
    return {0, 'concurrency', 0, 0, 0, 0, 0, tostring(spent_day), tostring(spent_month)}
  end
end

local r_ok, r_retry, r_left, r_reset, r_new = gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), 1)
if r_ok == 0 then
  return {0, 'requests', math.ceil(r_retry), 0, math.ceil(r_reset), 0, 0, tostring(spent_day), tostring(spent_month)}
end
local k_ok, k_retry, k_left, k_reset, k_new = gcra(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
if k_ok == 0 then
  return {0, 'tokens', math.ceil(k_retry), r_left, math.ceil(r_reset), 0, math.ceil(k_reset), tostring(spent_day), tostring(spent_month)}
end

if r_new then redis.call('SET', KEYS[1], tostring(r_new), 'PX', math.ceil(r_new - now) + 1000) end
if k_new then redis.call('SET', KEYS[2], tostring(k_new), 'PX', math.ceil(k_new - now) + 1000) end
if max_conc > 0 then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[8]), ARGV[7])
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[8]) + 1000)
end
return {1, '', 0, r_left, math.ceil(r_reset), k_left, math.ceil(k_reset), tostring(spent_day), tostring(spent_month)}
