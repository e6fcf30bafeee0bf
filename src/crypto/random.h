// Unguessable identifiers and secrets from the system's CSPRNG, and the one-way digest secrets
// are stored under (a refresh token, an API key, a recovery code: the database holds only the
// digest, so a stolen copy of it logs nobody in).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace citadel::crypto {

// `bytes` random bytes, raw.
std::string random_bytes(size_t bytes);

// `bytes` random bytes, base64url without padding (16 bytes: 22 characters, 128 bits).
std::string random_token(size_t bytes);

// SHA-256 of `data`, base64url without padding: the stored form of a high-entropy secret (no
// salt or slow hash is needed: the secret itself has 256 bits).
std::string secret_digest(std::string_view data);

}  // namespace citadel::crypto
