-- wrk script of the HTTP benchmark: POST /api/v1/command with the command mix
-- of the in-process benchmark. Run wrk with as many threads as connections.
-- Each thread then drives one keep-alive connection, and builds the next
-- request of that connection only after the reply to the previous one.
--   wrk -t32 -c32 -d10s -s wrk_commands.lua URL -- TOKEN LABOUR_ID
-- Thread 0 starts and ends a contraction on every even step and posts a
-- status update on every odd step; every other thread posts status updates.
-- A request that fails on a broken connection is sent again after wrk
-- reconnects, because the step moves on only when a reply arrives.
-- When the run ends, one line "wrk-result {json}" is written to stdout.

local next_thread_id = 0

function setup(thread)
  thread:set("thread_id", next_thread_id)
  next_thread_id = next_thread_id + 1
end

function init(args)
  labour_id = args[2]
  step = 0
  ending_contraction = false
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Bearer " .. args[1]
  wrk.headers["Content-Type"] = "application/json"
end

local function command_body(group, name, fields)
  return '{"type": "' .. group .. '", "payload": {"type": "' .. name
    .. '", "payload": {"labour_id": "' .. labour_id .. '"' .. fields .. '}}}'
end

-- Builds the request of the current step without changing any state: wrk
-- calls request() once more on thread 0 before the run, to check the request.
function request()
  local body
  if thread_id == 0 and step % 2 == 0 then
    -- Unique within the labour, because each run plans a new labour.
    local contraction_id = string.format("00000000-0000-7000-8000-%012x", step)
    if ending_contraction then
      body = command_body("Contraction", "EndContraction",
        ', "contraction_id": "' .. contraction_id .. '", "intensity": 5')
    else
      body = command_body("Contraction", "StartContraction",
        ', "contraction_id": "' .. contraction_id .. '"')
    end
  else
    body = command_body("LabourUpdate", "PostLabourUpdate",
      ', "labour_update_type": "STATUS_UPDATE", "message": "update '
      .. thread_id .. '-' .. step .. '"')
  end
  return wrk.format(nil, nil, nil, body)
end

-- Moves to the next command once the reply to the current one has arrived.
function response(status, headers, body)
  if thread_id == 0 and step % 2 == 0 and not ending_contraction then
    ending_contraction = true
  else
    ending_contraction = false
    step = step + 1
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'wrk-result {"requests": %d, "duration_us": %d, "status_errors": %d, '
      .. '"socket_errors": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
