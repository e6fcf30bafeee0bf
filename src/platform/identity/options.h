// The identity service's options: `services: { identity: { ... } }` (docs/identity.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config_reader.h"
#include "crypto/jose.h"
#include "crypto/password.h"

namespace citadel::platform::identity {

enum class Signup : uint8_t { kOpen, kInviteOnly, kClosed };

struct IdentityOptions {
  // The public URL the service answers at (the `iss` of its tokens and the base of every
  // endpoint URL in its discovery document), e.g. https://example.com/auth.
  std::string issuer;
  // The path the routes mount it under; endpoints are {prefix}/token and so on. Default: the
  // issuer's path.
  std::string prefix;
  std::vector<std::string> audiences;  // the `aud` of access tokens; default: the issuer
  Signup signup = Signup::kOpen;
  int64_t access_ttl_s = 15 * 60;
  int64_t refresh_ttl_s = 30 * 24 * 3600;  // a session idle this long ends
  int64_t session_ttl_s = 90 * 24 * 3600;  // and any session ends this long after login
  crypto::JwsAlg algorithm = crypto::JwsAlg::kEdDSA;
  int64_t key_rotation_s = 30 * 24 * 3600;
  crypto::PasswordParams password;
  size_t min_password_length = 8;
  size_t max_password_length = 1024;  // Argon2id reads all of it: bounded
  // TOTP: the name authenticator apps show beside the account; roles whose users must use a
  // second factor (those not enrolled get an enrolment challenge instead of tokens); codes
  // accepted this many steps either side of now (clock drift); a challenge's lifetime and tries.
  std::string mfa_label = "Citadel";
  std::vector<std::string> mfa_required_roles;
  int mfa_window = 1;
  int64_t mfa_challenge_ttl_s = 300;
  int mfa_max_attempts = 5;
};

// Reads `node` (may be absent: then every default, and `issuer` is missing, an error).
IdentityOptions parse_identity_options(const core::ConfigNode& node);

}  // namespace citadel::platform::identity
