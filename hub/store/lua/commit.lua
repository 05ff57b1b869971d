-- Commit one lifecycle outcome atomically (hub/store/redis.py, RedisStore._commit).
--
-- A compare-and-set on the whole state: the commit applies only if the session's state
-- is still the one the outcome was decided on, so two instances racing on a session get
-- one winner and the loser decides again (the guarantee of hub.store.Store.apply).
--
-- KEYS[1]  the session's state key (s:{sid})
-- ARGV[1]  the state the outcome was decided on, byte for byte; "" = the session must
--          not exist yet (create)
-- ARGV[2]  a payment idempotency key to check (pay:{scope}:{transaction}), or ""
-- ARGV[3]  the session id (the owner a payment key may already name)
-- ARGV[4…] the writes, each as: <argument count> <command> <arguments…>
--
-- Returns "ok", or without writing anything: "exists" (create of an existing
-- session), "stale" (the state changed or is gone: decide again), "paid" (the payment
-- key belongs to another session).
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
  if current then return 'exists' end
elseif current ~= ARGV[1] then
  return 'stale'
end
if ARGV[2] ~= '' then
  local owner = redis.call('GET', ARGV[2])
  if owner and owner ~= ARGV[3] then return 'paid' end
end
local i = 4
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 'ok'
