-- Settles an admitted request: gives back reserved tokens it did not use
-- (or charges those it used beyond its reservation),
-- ends its in-flight lease and adds its usage to the day's and the month's.
-- KEYS[1] tokens TAT  KEYS[2] in-flight ZSET  KEYS[3] today's usage  KEYS[4] this month's
-- ARGV: 1 tokens interval ms (0: no limit)  2 tokens to give back (negative:
--       to charge)  3 request id
--       4 cost USD  5 requests  6 input tokens  7 output tokens
--       8 day keys' ttl s  9 month keys' ttl s
--       10 requests served at an unknown price
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval, refund = tonumber(ARGV[1]), tonumber(ARGV[2])
if interval > 0 and refund ~= 0 then
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
  local new
  if refund > 0 then
    new = math.max(tat - refund * interval, now)
  else
    new = math.max(tat, now) - refund * interval
  end
  if new > now then
    redis.call('SET', KEYS[1], tostring(new), 'PX', math.ceil(new - now) + 1000)
  else
    redis.call('DEL', KEYS[1])
  end
end
redis.call('ZREM', KEYS[2], ARGV[3])
for i, key in ipairs({KEYS[3], KEYS[4]}) do
  redis.call('HINCRBYFLOAT', key, 'cost_usd', ARGV[4])
  redis.call('HINCRBY', key, 'requests', ARGV[5])
  redis.call('HINCRBY', key, 'input_tokens', ARGV[6])
  redis.call('HINCRBY', key, 'output_tokens', ARGV[7])
  if tonumber(ARGV[10]) > 0 then
    redis.call('HINCRBY', key, 'unpriced_requests', ARGV[10])
  end
  redis.call('EXPIRE', key, tonumber(ARGV[7 + i]))
end
return 1
