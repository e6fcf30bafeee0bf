#include "crypto/password.h"

#include <sodium.h>

#include <cstring>

namespace citadel::crypto {
namespace {

// libsodium must be initialised once before use; sodium_init() is itself safe to call from
// several threads and again (it returns 1 then).
bool sodium_ready() { return sodium_init() >= 0; }

}  // namespace

core::Result<std::string> password_hash(std::string_view password, const PasswordParams& p) {
  if (!sodium_ready()) return core::Status::error("password: libsodium cannot start");
  const size_t memlimit = static_cast<size_t>(p.memory_kib) * 1024;
  if (p.iterations < crypto_pwhash_argon2id_OPSLIMIT_MIN ||
      p.iterations > crypto_pwhash_argon2id_OPSLIMIT_MAX ||
      memlimit < crypto_pwhash_argon2id_MEMLIMIT_MIN ||
      memlimit > crypto_pwhash_argon2id_MEMLIMIT_MAX) {
    return core::Status::error("password: Argon2id parameters out of range");
  }
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), p.iterations, memlimit,
                            crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return core::Status::error("password: out of memory for Argon2id");
  }
  return std::string(out);
}

bool password_verify(std::string_view password, std::string_view stored) {
  if (!sodium_ready() || stored.empty() || stored.size() >= crypto_pwhash_STRBYTES ||
      stored.rfind("$argon2id$", 0) != 0) {
    return false;
  }
  char str[crypto_pwhash_STRBYTES] = {0};
  std::memcpy(str, stored.data(), stored.size());
  return crypto_pwhash_str_verify(str, password.data(), password.size()) == 0;
}

bool password_needs_rehash(std::string_view stored, const PasswordParams& p) {
  if (!sodium_ready() || stored.empty() || stored.size() >= crypto_pwhash_STRBYTES) return true;
  char str[crypto_pwhash_STRBYTES] = {0};
  std::memcpy(str, stored.data(), stored.size());
  // 0: made with exactly these parameters; 1: others; -1: not an Argon2id string at all.
  return crypto_pwhash_argon2id_str_needs_rehash(str, p.iterations,
                                                 static_cast<size_t>(p.memory_kib) * 1024) != 0;
}

}  // namespace citadel::crypto
