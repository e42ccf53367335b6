-- wrk script of `linkpulse bench`: requests spread over many short codes, Zipf-like by default.
--
-- Configured by environment variables (wrk gives scripts no arguments of their own):
--   LINKPULSE_BENCH_CODES   file with one code per line, most popular first (the bench shuffles them)
--   LINKPULSE_BENCH_ZIPF    exponent s of the rank-popularity law (1/rank^s); 0 is uniform
--   LINKPULSE_BENCH_ORDER   "zipf" (random draws) or "cycle" (every code in turn: the warm-up)
--   LINKPULSE_BENCH_METHOD  GET (default) or HEAD (redirects without a click: the warm-up)
--   LINKPULSE_BENCH_PREFIX  path before the code ("/" for redirects, "/api/v1/links/" for stats)
--   LINKPULSE_BENCH_SUFFIX  path after the code ("" or "/stats?interval=day")
--   LINKPULSE_BENCH_AUTH    Authorization header value, if any
--   LINKPULSE_BENCH_LIMIT   per-thread request count after which the thread stops (0: run for -d)
-- done() prints one line "LINKPULSE_BENCH_JSON {...}" that the bench parses.

local codes = {}
local cdf = {}
local n = 0
local order = os.getenv("LINKPULSE_BENCH_ORDER") or "zipf"
local method = os.getenv("LINKPULSE_BENCH_METHOD") or "GET"
local prefix = os.getenv("LINKPULSE_BENCH_PREFIX") or "/"
local suffix = os.getenv("LINKPULSE_BENCH_SUFFIX") or ""
local auth = os.getenv("LINKPULSE_BENCH_AUTH") or ""
local limit = tonumber(os.getenv("LINKPULSE_BENCH_LIMIT") or "0")
local s = tonumber(os.getenv("LINKPULSE_BENCH_ZIPF") or "1")
local cursor = 0
local answered = 0
local threads = {}
local thread_count = 0

local function load_codes()
  local path = os.getenv("LINKPULSE_BENCH_CODES")
  for line in io.lines(path) do
    if #line > 0 then
      n = n + 1
      codes[n] = line
    end
  end
  -- Cumulative weights, normalised: a draw is a binary search over them (log2 n steps).
  local total = 0
  for i = 1, n do
    total = total + 1 / (i ^ s)
    cdf[i] = total
  end
  for i = 1, n do
    cdf[i] = cdf[i] / total
  end
end

local function draw()
  local u = math.random()
  local lo, hi = 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return codes[lo]
end

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_id", thread_count)
  table.insert(threads, thread)
end

function init(args)
  load_codes()
  math.randomseed(os.time() * 1000 + (thread_id or 0))
  -- Cycling threads start at different places so that together they cover the codes sooner.
  cursor = ((thread_id or 1) - 1) * math.floor(n / 4)
  wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) linkpulse-bench/1.0"
  if auth ~= "" then wrk.headers["Authorization"] = auth end
end

function request()
  local code
  if order == "cycle" then
    cursor = cursor % n + 1
    code = codes[cursor]
  else
    code = draw()
  end
  return wrk.format(method, prefix .. code .. suffix)
end

if limit > 0 then
  -- Only when a limit is asked: a response() callback makes wrk hand every response to Lua.
  function response(status, headers, body)
    answered = answered + 1
    if answered == limit then
      -- The bench stops wrk when every thread has said so: wrk itself would wait out its -d.
      io.write("LINKPULSE_BENCH_THREAD_DONE\n")
      io.stdout:flush()
      wrk.thread:stop()
    end
  end
end

function done(summary, latency, requests)
  local p = {}
  for _, q in ipairs({50, 90, 95, 99, 99.9}) do
    p[tostring(q)] = latency:percentile(q)
  end
  local e = summary.errors
  io.write(string.format(
    'LINKPULSE_BENCH_JSON {"duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p95": %d, "p99": %d, "p99.9": %d, "max": %d, "mean": %.1f}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    p["50"], p["90"], p["95"], p["99"], p["99.9"], latency.max, latency.mean))
end
