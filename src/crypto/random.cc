#include "crypto/random.h"

#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstdlib>

#include "core/base64.h"

namespace citadel::crypto {

std::string random_bytes(size_t bytes) {
  std::string raw(bytes, '\0');
  // Without randomness no secret may be handed out: stopping is the only safe answer.
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) != 1) {
    std::abort();
  }
  return raw;
}

std::string random_token(size_t bytes) { return core::base64url_encode(random_bytes(bytes)); }

std::string secret_digest(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return core::base64url_encode(std::string_view(reinterpret_cast<char*>(md), sizeof md));
}

}  // namespace citadel::crypto
