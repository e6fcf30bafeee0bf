// JSON Web Tokens (RFC 7519) on top of JWS (jose.h): the signature, then the claims an access
// token is judged by. Refused: a header or payload that repeats a member (parsers disagree on
// which one wins: RFC 7519, 4); a payload that is not a JSON object; registered claims of the
// wrong type; a token expired (`exp`, required unless the rules say otherwise), not yet valid
// (`nbf`) or issued in the future (`iat`), each with `leeway`; another issuer; none of the
// expected audiences; a lifetime longer than `max_lifetime`.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "crypto/jose.h"

namespace citadel::crypto {

struct JwtRules {
  std::vector<JwsAlg> algorithms;   // required
  std::string issuer;               // empty: any
  std::vector<std::string> audiences;  // empty: any; else the token names at least one
  int64_t leeway_s = 60;
  bool require_exp = true;
  int64_t max_lifetime_s = 0;  // exp - iat (or exp - now without iat); 0: no limit
  size_t max_size = 16 * 1024;
};

struct JwtClaims {
  std::string iss, sub, jti;
  std::vector<std::string> aud;
  int64_t exp = 0, nbf = 0, iat = 0;  // 0: absent
  std::string kid;
  std::string payload;  // the whole claims set, JSON, for the other claims (roles, scope)
};

core::Result<JwtClaims> jwt_verify(std::string_view token, const std::vector<const Jwk*>& keys,
                                   const JwtRules& rules, int64_t now);

// Whether `json` is one JSON value in which no object repeats a member (exposed for tests and
// the fuzzer).
bool json_without_duplicate_members(std::string_view json);

}  // namespace citadel::crypto
