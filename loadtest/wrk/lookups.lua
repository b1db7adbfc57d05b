-- wrk script: GET /v1/events/{id} for ids drawn at random from a file of ids (one per line,
-- already percent-encoded). Usage:
--   IDS=ids.txt wrk -t2 -c200 -d30s --latency -s loadtest/wrk/lookups.lua http://127.0.0.1:PORT
-- Every response must be 200: non-200 answers are counted and printed at the end.
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
