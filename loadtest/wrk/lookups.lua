-- wrk script: GET /v1/events/{id} for ids drawn at random from a file of ids (one per line,
-- already percent-encoded). Usage:
--   IDS=ids.txt wrk -t2 -c200 -d30s --latency -s loadtest/wrk/lookups.lua http://127.0.0.1:PORT
-- Every response must be 200: non-200 answers are counted and printed at the end.
--
-- With RATE=N the requests are paced to N per second in all (an open-loop load, the way a
-- fleet of clients asks, instead of each connection asking again the moment it is answered):
--   RATE=2000 IDS=ids.txt wrk -t2 -c200 -d30s --latency -s loadtest/wrk/lookups.lua URL
-- Each wrk thread keeps a schedule of N / THREADS requests per second and delays a
-- connection's next request until its slot; a slot missed because every connection was busy
-- is sent at once, so an overloaded server shows as a lower rate, not a hidden queue.
local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_nsec; } vt_timespec;
  int clock_gettime(int clk_id, vt_timespec *tp);
]]
local ts = ffi.new("vt_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local rate = tonumber(os.getenv("RATE") or "")
-- wrk starts each thread before it sets up the next, so a thread cannot count its siblings:
-- THREADS must match wrk's -t (default 2).
local wrk_threads = tonumber(os.getenv("THREADS") or "2")
local ids = {}
local file = os.getenv("IDS") or "ids.txt"
for line in io.lines(file) do
  if #line > 0 then ids[#ids + 1] = line end
end
if #ids == 0 then error("no ids in " .. file) end

local thread_count = 0
local threads = {}

function setup(thread)
  thread_count = thread_count + 1
  thread:set("seed", thread_count)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + seed * 7919)
  not_ok = 0
  if rate then
    interval_ms = 1000 / (rate / wrk_threads)
    next_at = now_ms()
  end
end

if rate then
  function delay()
    local now = now_ms()
    if next_at < now then next_at = now end
    local wait = next_at - now
    next_at = next_at + interval_ms
    return wait
  end
end

function request()
  return wrk.format("GET", "/v1/events/" .. ids[math.random(#ids)])
end

function response(status, headers, body)
  if status ~= 200 then not_ok = not_ok + 1 end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + (t:get("not_ok") or 0) end
  io.write(string.format("non-200 responses: %d\n", bad))
end
