-- POST the same body (BODY_FILE) to /v1/ingest with CONTENT_TYPE, counting statuses.
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.path = "/v1/ingest"
wrk.body = body
wrk.headers["Content-Type"] = os.getenv("CONTENT_TYPE") or "application/jose"

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  non202 = 0
end
function response(status, headers, body)
  if status ~= 202 then
    non202 = non202 + 1
  end
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do
    n = n + t:get("non202")
  end
  io.write(string.format("non-202 answers: %d\n", n))
end
