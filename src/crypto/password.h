// Password hashes: Argon2id (RFC 9106) through libsodium, stored in the PHC string form
// ("$argon2id$v=19$m=19456,t=2,p=1$salt$hash") that carries its own parameters, so a hash made
// under older parameters still verifies and can be recognised for a rehash at the next login.
// Slow by design (tens of milliseconds, tens of MiB): call these on the blocking pool, never on a
// worker's loop.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace citadel::crypto {

struct PasswordParams {
  // OWASP's Argon2id minimum: 19 MiB, 2 passes, 1 lane (libsodium uses one lane).
  uint64_t memory_kib = 19 * 1024;
  uint64_t iterations = 2;
};

// The PHC string for `password` with a fresh random salt. Fails when the parameters are outside
// Argon2id's limits or the memory cannot be had.
core::Result<std::string> password_hash(std::string_view password, const PasswordParams& params);

// Whether `password` matches `stored` (constant time in the hash). A malformed `stored` is a
// mismatch, never an error the caller could mistake for success.
bool password_verify(std::string_view password, std::string_view stored);

// Whether `stored` was made with other parameters (or another algorithm): rehash it once the
// password has verified.
bool password_needs_rehash(std::string_view stored, const PasswordParams& params);

}  // namespace citadel::crypto
