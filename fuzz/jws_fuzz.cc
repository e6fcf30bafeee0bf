// Fuzzes JWS verification (crypto/jose.h), the first thing an access token from any client
// meets: the compact form's split, strict base64url, the header's JSON, the algorithm and key
// checks; and the duplicate-member check JWT claims go through, on the raw input. Nothing may
// crash or leak, a token that verifies must carry an allowed algorithm and decode to what its
// parts say, and JSON without duplicates must be JSON.
#include <boost/json.hpp>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>

#include "core/base64.h"
#include "crypto/jose.h"
#include "crypto/jwt.h"

using citadel::crypto::Jwk;
using citadel::crypto::JwsAlg;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Jwk hs = std::move(
      Jwk::parse(R"({"kty":"oct","kid":"h","k":"hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg"})")
          .value());
  static const Jwk ed = std::move(
      Jwk::parse(R"({"kty":"OKP","crv":"Ed25519","kid":"e",)"
                 R"("x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})")
          .value());
  citadel::crypto::JwsVerifyOptions opts;
  opts.allowed = {JwsAlg::kHS256, JwsAlg::kEdDSA};
  std::string_view token(reinterpret_cast<const char*>(data), size);
  auto r = citadel::crypto::jws_verify(token, {&hs, &ed}, opts);
  if (r.ok()) {
    if (r.value().alg != JwsAlg::kHS256 && r.value().alg != JwsAlg::kEdDSA) std::abort();
    const size_t d1 = token.find('.');
    const size_t d2 = token.find('.', d1 + 1);
    auto payload = citadel::core::base64url_decode(token.substr(d1 + 1, d2 - d1 - 1));
    if (!payload || *payload != r.value().payload) std::abort();
  }
  if (citadel::crypto::json_without_duplicate_members(token)) {
    boost::json::error_code ec;
    boost::json::parse(token, ec);
    if (ec) std::abort();
  }
  return 0;
}
