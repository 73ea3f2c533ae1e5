-- wrk script for the ingest benchmark (tests/bench/loadgen.py writes its input file).
--
-- Every request is a validly signed dispatcher delivery with a notification id of its own:
-- `<run prefix>-<random hex>-<thread>-<counter>`, random like the dispatcher's uuids (so the
-- unique index sees random keys, not an ever-growing edge) and unique by its counter. The
-- signature covers only the body, so the notification id can be made here while bodies and
-- signatures are precomputed in Python. Each input line is
-- `<vh-job-id or empty>\t<signature>\t<body>`.
--
-- usage: wrk -s ingest.lua <url> -- <requests file> <run prefix> [<event id>]
-- (the event id: BACKGROUND_API_RESPONSE unless given, as for the routed-events load)

local threads = {}
local next_id = 1

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local heads, tails, count = {}, {}, 0
local prefix, suffix
local counter = 0

function init(args)
  local path, run = args[1], args[2]
  local event = args[3] or "BACKGROUND_API_RESPONSE"
  prefix = run .. "-"
  suffix = "-" .. thread_id .. "-"
  math.randomseed(os.time() * 100 + thread_id)
  local host = wrk.host .. ":" .. wrk.port
  for line in io.lines(path) do
    local job, sig, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    if body then
      count = count + 1
      local head = "POST " .. wrk.path .. " HTTP/1.1\r\n"
        .. "Host: " .. host .. "\r\n"
        .. "Content-Type: application/json\r\n"
        .. "Content-Length: " .. #body .. "\r\n"
        .. "x-vwd-signature-v1: " .. sig .. "\r\n"
        .. "x-vwd-event-id: " .. event .. "\r\n"
        .. "x-vwd-subscription-id: bench-subscription\r\n"
        .. "x-vwd-tenant-id: bench-tenant\r\n"
        .. "x-vwd-webhook-timestamp: 1772439307412\r\n"
      if job ~= "" then
        head = head .. "vh-job-id: " .. job .. "\r\n"
      end
      heads[count] = head .. "x-vwd-notification-id: "
      tails[count] = "\r\n\r\n" .. body
    end
  end
end

function request()
  counter = counter + 1
  local i = counter % count + 1
  local id = string.format("%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
  return heads[i] .. prefix .. id .. suffix .. counter .. tails[i]
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "status_errors": %d, '
      .. '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, errors.status, errors.connect, errors.read,
    errors.write, errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
