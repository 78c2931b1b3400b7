-- wrk script: each request carries the bearer token of the next of BENCH_TOKENS's users,
-- cycling, so reads spread over all of them. BENCH_METHOD POST sends a chat message.
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do
  tokens[#tokens + 1] = line
end
local method = os.getenv("BENCH_METHOD") or "GET"
local counter = 0

request = function()
  counter = counter + 1
  local headers = { ["Authorization"] = "Bearer " .. tokens[(counter % #tokens) + 1] }
  if method == "POST" then
    headers["Content-Type"] = "application/json"
    return wrk.format("POST", nil, headers, '{"message":"привет, как дела? ' .. counter .. '"}')
  end
  return wrk.format("GET", nil, headers)
end
