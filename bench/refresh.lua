-- wrk script for bench/auth_bench.py's refresh scenario: each request spends one refresh token
-- and the response's new token goes back in the pool (one per connection in flight, plus
-- spares: wrk builds one request more than it sends when it starts).
local tokens = {}

init = function(args)
  for line in io.lines(args[1]) do table.insert(tokens, line) end
end

request = function()
  local t = table.remove(tokens) or "exhausted"
  return wrk.format("POST", nil, { ["Content-Type"] = "application/x-www-form-urlencoded" },
                    "grant_type=refresh_token&refresh_token=" .. t)
end

response = function(status, headers, body)
  local t = body:match('"refresh_token":"([^"]+)"')
  if t then table.insert(tokens, t) end
end
