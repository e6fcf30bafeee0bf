// The identity service's signing keys: kept in its tables so that every instance on one
// database signs with the same key and publishes the same set. The newest active key signs;
// when it is older than `key_rotation` (or the configured algorithm changed) a new one is made
// and the old ones retire: still published, and still accepted, until the tokens they signed
// have expired (retired_at + access_token_ttl), then deleted.
//
// Loaded on the control thread when a config snapshot is built (blocking store calls), then
// immutable: workers read it without a lock.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "crypto/jose.h"
#include "platform/identity/options.h"
#include "store/sql.h"

namespace citadel::platform::identity {

class KeySet {
 public:
  // Reads, rotates when due, prunes, reads again. `now`: Unix seconds.
  static core::Result<std::shared_ptr<const KeySet>> load(store::SqlDatabase& db,
                                                          const IdentityOptions& options,
                                                          int64_t now);

  const crypto::Jwk& signer() const { return *keys_.front(); }
  crypto::JwsAlg algorithm() const { return alg_; }
  // Every key a token of ours may carry (the signer first).
  const std::vector<const crypto::Jwk*>& verifiers() const { return verifiers_; }
  // The algorithms of those keys (a changed `algorithm` leaves the old keys verifying).
  const std::vector<crypto::JwsAlg>& algorithms() const { return algorithms_; }
  // {"keys":[...]}: the public halves (none for HS256).
  const std::string& jwks() const { return jwks_; }

 private:
  crypto::JwsAlg alg_ = crypto::JwsAlg::kEdDSA;
  std::vector<std::unique_ptr<crypto::Jwk>> keys_;
  std::vector<const crypto::Jwk*> verifiers_;
  std::vector<crypto::JwsAlg> algorithms_;
  std::string jwks_;
};

}  // namespace citadel::platform::identity
