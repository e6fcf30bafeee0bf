#include "platform/identity/key_set.h"

#include "crypto/random.h"

namespace citadel::platform::identity {

using store::SqlStatement;

core::Result<std::shared_ptr<const KeySet>> KeySet::load(store::SqlDatabase& db,
                                                         const IdentityOptions& o, int64_t now) {
  const std::string alg(crypto::jws_alg_name(o.algorithm));
  auto newest = db.execute_blocking(
      {{"SELECT alg, created_at FROM identity_keys WHERE retired_at IS NULL "
        "ORDER BY created_at DESC, kid LIMIT 1", {}}},
      true);
  if (!newest.ok()) return core::Status::error("identity keys: " + newest.message);
  const auto& rows = newest.statements[0].rows;
  const bool due = rows.empty() || store::sql_text(rows[0], 0) != alg ||
                   store::sql_int(rows[0], 1) + o.key_rotation_s <= now;
  if (due) {
    const std::string kid = crypto::random_token(12);
    auto jwk = crypto::generate_jwk(o.algorithm, kid);
    if (!jwk.ok()) return core::Status::error("identity keys: " + jwk.error().message());
    // Retire the others and add the new one in one transaction: every instance sees one signer.
    auto w = db.execute_blocking(
        {{"UPDATE identity_keys SET retired_at = $1 WHERE retired_at IS NULL", {now}},
         {"INSERT INTO identity_keys (kid, alg, jwk, created_at) VALUES ($1, $2, $3, $4)",
          {kid, alg, jwk.value(), now}}});
    if (!w.ok()) return core::Status::error("identity keys: " + w.message);
  }
  // A retired key verifies the tokens it signed until they expire (plus the clock leeway).
  auto pruned = db.execute_blocking(
      {{"DELETE FROM identity_keys WHERE retired_at IS NOT NULL AND retired_at < $1",
        {now - o.access_ttl_s - 120}}});
  if (!pruned.ok()) return core::Status::error("identity keys: " + pruned.message);
  auto all = db.execute_blocking(
      {{"SELECT jwk, alg FROM identity_keys "
        "ORDER BY retired_at IS NOT NULL, created_at DESC, kid", {}}},
      true);
  if (!all.ok()) return core::Status::error("identity keys: " + all.message);
  auto set = std::make_shared<KeySet>();
  set->alg_ = o.algorithm;
  std::string jwks = "{\"keys\":[";
  bool first = true;
  for (const auto& row : all.statements[0].rows) {
    auto k = crypto::Jwk::parse(store::sql_text(row, 0));
    if (!k.ok()) return core::Status::error("identity keys: a stored key: " + k.error().message());
    crypto::JwsAlg key_alg;
    if (!crypto::jws_alg_from_name(store::sql_text(row, 1), key_alg)) continue;
    set->keys_.push_back(std::make_unique<crypto::Jwk>(std::move(k.value())));
    bool known = false;
    for (crypto::JwsAlg a : set->algorithms_) known = known || a == key_alg;
    if (!known) set->algorithms_.push_back(key_alg);
    if (!set->keys_.back()->public_json().empty()) {
      jwks += (first ? "" : ",") + set->keys_.back()->public_json();
      first = false;
    }
  }
  jwks += "]}";
  if (set->keys_.empty() || set->keys_.front()->alg() != alg) {
    return core::Status::error("identity keys: no active " + alg + " key after rotation");
  }
  for (const auto& k : set->keys_) set->verifiers_.push_back(k.get());
  set->jwks_ = std::move(jwks);
  return std::shared_ptr<const KeySet>(std::move(set));
}

}  // namespace citadel::platform::identity
