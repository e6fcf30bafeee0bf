// JSON Web Signatures (RFC 7515) in compact form, with keys as JSON Web Keys (RFC 7517): what
// access tokens are made of (RFC 7519 claims are read by their users). Algorithms (RFC 7518,
// RFC 8037): HS256/384/512, RS256/384/512, PS256/384/512, ES256/384/512, EdDSA (Ed25519).
//
// Verification refuses what token attacks rely on: `none` and any algorithm the caller did not
// allow; an algorithm that does not fit the key (HS256 "signed" with an RSA or EC public key, ES
// with the wrong curve); a header `alg` other than the key's own when the key names one; a
// signature of the wrong size; non-canonical base64url; headers that are not a JSON object, or
// that repeat a member; `crit` members it does not understand (all of them); tokens over
// `max_size`.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

using EVP_PKEY = struct evp_pkey_st;

namespace citadel::crypto {

enum class JwsAlg : uint8_t {
  kHS256, kHS384, kHS512,
  kRS256, kRS384, kRS512,
  kPS256, kPS384, kPS512,
  kES256, kES384, kES512,
  kEdDSA,
};
std::string_view jws_alg_name(JwsAlg alg);
// nullopt-like: false for an unknown name ("none" included).
bool jws_alg_from_name(std::string_view name, JwsAlg& out);

class Jwk {
 public:
  // A JWK as JSON (kty oct, RSA, EC P-256/384/521, OKP Ed25519; private members when present).
  static core::Result<Jwk> parse(std::string_view json);
  Jwk(Jwk&&) noexcept;
  Jwk& operator=(Jwk&&) noexcept;
  ~Jwk();

  const std::string& kid() const { return kid_; }
  // The key's own `alg`, empty when it names none.
  const std::string& alg() const { return alg_; }
  bool has_private() const { return private_; }
  // Whether this key can sign or verify `alg` at all.
  bool fits(JwsAlg alg) const;
  // The public half as a JWK (kty, crv, x, y, n, e, kid, alg, "use": "sig"), for a JWKS
  // document; empty for a symmetric (oct) key, which is never published.
  const std::string& public_json() const { return public_json_; }

 private:
  Jwk();
  static core::Result<Jwk> parse_key(std::string_view json);
  friend core::Result<std::string> jws_sign(const Jwk&, JwsAlg, std::string_view,
                                            std::string_view);
  friend struct JwsVerifier;
  std::string kty_;
  std::string crv_;
  std::string kid_;
  std::string alg_;
  std::string secret_;  // oct
  std::string public_json_;
  EVP_PKEY* pkey_ = nullptr;
  bool private_ = false;
};

// A new private key for `alg` as a JWK (with `kid`, `alg` and "use": "sig"), from the system's
// CSPRNG: EdDSA (Ed25519), ES256 (P-256) or HS256 (256 random bits); other algorithms are
// refused.
core::Result<std::string> generate_jwk(JwsAlg alg, std::string_view kid);

// Signs `payload` under `protected_header` (a JSON object without `alg`: it is added first)
// into compact serialization. The key must be private (or oct).
core::Result<std::string> jws_sign(const Jwk& key, JwsAlg alg, std::string_view header_members,
                                   std::string_view payload);

struct JwsVerified {
  JwsAlg alg;
  std::string kid;
  std::string header;   // the protected header, JSON
  std::string payload;  // decoded
};

struct JwsVerifyOptions {
  std::vector<JwsAlg> allowed;  // required: no default list
  size_t max_size = 16 * 1024;
};

// Verifies a compact JWS against `keys` (the one whose kid matches the header's, or, when the
// header names none, each key that fits the algorithm). The error says why it was refused.
core::Result<JwsVerified> jws_verify(std::string_view compact, const std::vector<const Jwk*>& keys,
                                     const JwsVerifyOptions& options);

}  // namespace citadel::crypto
