// The `jwt` filter: a route's requests must carry a valid JWT access token, whatever serves the
// route (a cluster, a service, a fixed response).
//
//   filters:
//     - jwt:
//         issuer: https://example.com/auth
//         audiences: [https://api.example.com]
//         jwks: https://example.com/auth/jwks.json     # or jwks_file: keys.json
//         forward: { sub: X-User-Id, email: X-User-Email, roles: X-User-Roles }
//
// The token comes from `Authorization: Bearer` (or `query: NAME`). It is verified (signature
// over the allowed algorithms, issuer, audiences, exp / nbf / iat with `leeway`) and its
// claims named in `forward` are sent upstream as headers; those header names are removed from
// every incoming request first, so a client cannot forge them. A missing token is 401 with
// `WWW-Authenticate: Bearer realm=...`, a bad one 401 with `error="invalid_token"`.
//
// Keys: a JWKS file read with the config, or a JWKS URL fetched by each worker's HTTP client
// on its first request, refreshed every `jwks_cache` and on a `kid` it does not know (at most
// every 30 s); requests that arrive while a worker has no keys yet wait for the fetch
// (bounded), and get 503 when it fails. A token verified once is kept in a per-worker cache
// until it expires: a hot token costs a hash lookup, no public-key operation. The cache and the
// fetched keys survive reloads that keep the filter's options.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "http/pipeline/filter.h"

namespace citadel::filters {

class JwtFilterConfig final : public pipeline::FilterConfigParser {
 public:
  std::string_view name() const override { return "jwt"; }
  std::unique_ptr<pipeline::FilterFactory> parse(const core::ConfigNode& node,
                                                 pipeline::BuildContext& ctx) const override;
};

}  // namespace citadel::filters
