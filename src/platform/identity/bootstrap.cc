#include "platform/identity/bootstrap.h"

#include "crypto/password.h"
#include "crypto/random.h"
#include "crypto/totp.h"
#include "platform/identity/schema.h"
#include "platform/identity/service.h"

namespace citadel::platform::identity {

core::Result<CreatedAdmin> create_admin(store::SqlDatabase& db, const IdentityOptions& o,
                                        const std::string& email_in,
                                        const std::string& password) {
  std::string email;
  if (!normalise_email(email_in, email)) return core::Status::error("not an email: " + email_in);
  if (core::Status s = db.migrate("identity", identity_migrations()); !s.ok()) return s;
  CreatedAdmin out;
  auto found = db.execute_blocking(
      {{"SELECT id FROM identity_users WHERE email = $1", {email}}}, true);
  if (!found.ok()) return core::Status::error(found.message);
  const int64_t now = now_s();
  std::vector<store::SqlStatement> st;
  if (!found.statements[0].rows.empty()) {
    out.user_id = store::sql_text(found.statements[0].rows[0], 0);
    out.existed = true;
  } else {
    if (password.size() < o.min_password_length || password.size() > o.max_password_length) {
      return core::Status::error("the password needs " + std::to_string(o.min_password_length) +
                                 " to " + std::to_string(o.max_password_length) + " bytes");
    }
    auto hash = crypto::password_hash(password, o.password);
    if (!hash.ok()) return hash.error();
    out.user_id = crypto::random_token(16);
    st.push_back({"INSERT INTO identity_users (id, email, password_hash, created_at, "
                  "email_verified) VALUES ($1, $2, $3, $4, 1)",
                  {out.user_id, email, hash.value(), now}});
  }
  st.push_back({"INSERT INTO identity_user_roles (user_id, role) VALUES ($1, 'admin') "
                "ON CONFLICT (user_id, role) DO NOTHING",
                {out.user_id}});
  std::string prefix = crypto::base32_encode(crypto::random_bytes(8)).substr(0, 12);
  for (char& c : prefix) c = c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
  out.api_key = std::string(kApiKeyMark) + prefix + "_" + crypto::random_token(32);
  st.push_back({"INSERT INTO identity_api_keys (id, prefix, digest, name, user_id, scopes, "
                "created_at) VALUES ($1, $2, $3, 'admin-bootstrap', $4, '*', $5)",
                {crypto::random_token(12), prefix, crypto::secret_digest(out.api_key),
                 out.user_id, now}});
  auto w = db.execute_blocking(std::move(st));
  if (!w.ok()) return core::Status::error(w.message);
  return out;
}

}  // namespace citadel::platform::identity
