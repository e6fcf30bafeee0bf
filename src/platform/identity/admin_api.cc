#include "platform/identity/admin_api.h"

#include <openssl/crypto.h>

#include <boost/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "crypto/password.h"
#include "crypto/random.h"
#include "crypto/totp.h"
#include "http/pipeline/filter.h"
#include "platform/json_handler.h"

namespace citadel::platform::identity {
namespace {

namespace json = boost::json;
using store::SqlError;
using store::SqlResult;
using store::SqlStatement;
using store::SqlValue;

constexpr std::string_view kAdminPermission = "identity:admin";
constexpr int64_t kMaxKeyLifetimeS = 5LL * 365 * 86400;

enum class Op : uint8_t {
  kUsers,         // GET list, POST create
  kUser,          // GET, PATCH, DELETE /users/{id}
  kUserSessions,  // GET, DELETE /users/{id}/sessions
  kRoles,         // GET
  kRole,          // PUT, DELETE /roles/{name}
  kKeys,          // GET list, POST create
  kKey,           // DELETE /api-keys/{id}
  kKeyRotate,     // POST /api-keys/{id}/rotate
  kInvites,       // POST
};

std::vector<std::string> split_scopes(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t sp = s.find(' ', i);
    if (sp == std::string::npos) sp = s.size();
    if (sp > i) out.push_back(s.substr(i, sp - i));
    i = sp + 1;
  }
  return out;
}

// A JSON array of strings, each passing `valid`; false when the value is something else.
bool string_list(const json::value* v, std::vector<std::string>& out,
                 bool (*valid)(std::string_view)) {
  if (v == nullptr || !v->is_array() || v->as_array().size() > 100) return false;
  for (const auto& e : v->as_array()) {
    if (!e.is_string() || !valid(e.as_string())) return false;
    out.emplace_back(e.as_string());
  }
  return true;
}

// Seconds from a JSON number within [min, max]; `fallback` when absent; -1 when malformed.
int64_t seconds(const json::object& in, std::string_view key, int64_t fallback, int64_t min,
                int64_t max) {
  const json::value* v = in.if_contains(key);
  if (v == nullptr) return fallback;
  if (!v->is_int64() || v->as_int64() < min || v->as_int64() > max) return -1;
  return v->as_int64();
}

class AdminHandler final : public JsonHandler {
 public:
  explicit AdminHandler(std::shared_ptr<const Service> svc) : svc_(std::move(svc)) {}

  void on_request_headers(pipeline::HandlerContext& ctx, bool end_stream) override {
    ctx_ = &ctx;
    std::string_view path = ctx.route_path();
    path.remove_prefix(svc_->o.prefix.size() + 6);  // "{prefix}/admin"
    std::vector<std::string_view> seg;
    while (!path.empty()) {
      if (path.front() != '/') return not_found();
      path.remove_prefix(1);
      const size_t slash = path.find('/');
      seg.push_back(path.substr(0, slash));
      path = slash == std::string_view::npos ? std::string_view() : path.substr(slash);
    }
    for (auto s : seg) {
      if (s.empty() || s.size() > 64) return not_found();
    }
    std::string_view allow;
    auto is = [&](std::initializer_list<std::string_view> want) {
      if (seg.size() != want.size()) return false;
      size_t i = 0;
      for (auto w : want) {
        if (w != "{}" && seg[i] != w) return false;
        ++i;
      }
      return true;
    };
    if (is({"users"})) {
      op_ = Op::kUsers, allow = "GET, POST";
    } else if (is({"users", "{}"})) {
      op_ = Op::kUser, allow = "GET, PATCH, DELETE", id_ = seg[1];
    } else if (is({"users", "{}", "sessions"})) {
      op_ = Op::kUserSessions, allow = "GET, DELETE", id_ = seg[1];
    } else if (is({"roles"})) {
      op_ = Op::kRoles, allow = "GET";
    } else if (is({"roles", "{}"})) {
      op_ = Op::kRole, allow = "PUT, DELETE", id_ = seg[1];
    } else if (is({"api-keys"})) {
      op_ = Op::kKeys, allow = "GET, POST";
    } else if (is({"api-keys", "{}"})) {
      op_ = Op::kKey, allow = "DELETE", id_ = seg[1];
    } else if (is({"api-keys", "{}", "rotate"})) {
      op_ = Op::kKeyRotate, allow = "POST", id_ = seg[1];
    } else if (is({"invites"})) {
      op_ = Op::kInvites, allow = "POST";
    } else {
      return not_found();
    }
    begin(ctx, end_stream, allow);
  }

 private:
  void not_found() { error(404, "not_found", "no such admin endpoint"); }

  void unavailable(const SqlResult& r) {
    store_unavailable(r, svc_->m.store_errors, "identity admin");
  }

  template <class F>
  void sql(std::vector<SqlStatement> statements, bool read_only, F then) {
    JsonHandler::sql(*svc_->db, svc_, std::move(statements), read_only, std::move(then));
  }

  std::string_view method() const { return ctx_->request().method; }

  // ---- who is asking ---------------------------------------------------------------------

  void dispatch() override {
    std::string_view token = bearer_token(ctx_->request());
    if (token.empty()) {
      return error(401, "invalid_request", "credentials are needed (Authorization: Bearer)");
    }
    const int64_t now = now_s();
    std::string prefix;
    if (split_api_key(token, prefix)) {
      const std::string digest = crypto::secret_digest(token);
      return sql(
          {{"SELECT k.digest, k.scopes, k.expires_at, k.revoked_at, k.user_id, u.disabled, "
            "k.last_used_at, k.id FROM identity_api_keys k JOIN identity_users u "
            "ON u.id = k.user_id WHERE k.prefix = $1",
            {prefix}},
           {"SELECT p.permission FROM identity_role_permissions p JOIN identity_user_roles r "
            "ON r.role = p.role JOIN identity_api_keys k ON k.user_id = r.user_id "
            "WHERE k.prefix = $1",
            {prefix}}},
          true, [this, digest, now](SqlResult& r) {
            if (!r.ok()) return unavailable(r);
            const auto& rows = r.statements[0].rows;
            if (rows.empty()) return denied(401, "the API key is unknown");
            const std::string stored = store::sql_text(rows[0], 0);
            if (stored.size() != digest.size() ||
                CRYPTO_memcmp(stored.data(), digest.data(), digest.size()) != 0) {
              return denied(401, "the API key is unknown");
            }
            if (!std::holds_alternative<std::monostate>(rows[0][3])) {
              return denied(401, "the API key is revoked");
            }
            if (!std::holds_alternative<std::monostate>(rows[0][2]) &&
                store::sql_int(rows[0], 2) <= now) {
              return denied(401, "the API key has expired");
            }
            if (store::sql_int(rows[0], 5) != 0) return denied(401, "the key's owner is disabled");
            std::vector<std::string> owner;
            for (const auto& p : r.statements[1].rows) owner.push_back(store::sql_text(p, 0));
            caller_ = store::sql_text(rows[0], 4);
            // Last use, at most once a minute per key: not a write on every call.
            if (now - store::sql_int(rows[0], 6) >= 60) {
              svc_->db->execute(ctx_->loop(),
                                {{"UPDATE identity_api_keys SET last_used_at = $1 WHERE id = $2",
                                  {now, store::sql_text(rows[0], 7)}}},
                                [keep = svc_](SqlResult&) {});
            }
            authorized(any_grants(split_scopes(store::sql_text(rows[0], 1)), kAdminPermission) &&
                       any_grants(owner, kAdminPermission));
          });
    }
    auto at = verify_access_token(*svc_, token);
    if (!at.ok()) return denied(401, at.error().message());
    caller_ = at.value().sub;
    sql({{"SELECT 1 FROM identity_sessions s JOIN identity_users u ON u.id = s.user_id "
          "WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL AND s.expires_at > $3 "
          "AND u.disabled = 0",
          {at.value().sid, caller_, now}},
         {"SELECT p.permission FROM identity_role_permissions p JOIN identity_user_roles r "
          "ON r.role = p.role WHERE r.user_id = $1",
          {caller_}}},
        true, [this](SqlResult& r) {
          if (!r.ok()) return unavailable(r);
          if (r.statements[0].rows.empty()) return denied(401, "the session has ended");
          std::vector<std::string> perms;
          for (const auto& p : r.statements[1].rows) perms.push_back(store::sql_text(p, 0));
          authorized(any_grants(perms, kAdminPermission));
        });
  }

  void denied(int status, std::string_view why) {
    svc_->m.admin_denied->add(ctx_->worker().index());
    error(status, "invalid_token", why);
  }

  void authorized(bool allowed) {
    if (!allowed) {
      svc_->m.admin_denied->add(ctx_->worker().index());
      // RFC 6750, 3.1: known caller, not enough permission.
      ctx_->response_head().headers.add(
          "WWW-Authenticate", "Bearer error=\"insufficient_scope\", scope=\"identity:admin\"");
      return error(403, "insufficient_scope", "this needs the identity:admin permission");
    }
    svc_->m.admin_calls->add(ctx_->worker().index());
    switch (op_) {
      case Op::kUsers: return method() == "GET" ? list_users() : create_user();
      case Op::kUser:
        return method() == "GET" ? get_user() : method() == "PATCH" ? patch_user() : delete_user();
      case Op::kUserSessions: return user_sessions();
      case Op::kRoles: return list_roles();
      case Op::kRole: return method() == "PUT" ? put_role() : delete_role();
      case Op::kKeys: return method() == "GET" ? list_keys() : create_key();
      case Op::kKey: return revoke_key();
      case Op::kKeyRotate: return rotate_key();
      case Op::kInvites: return create_invite();
    }
  }

  // ---- users -----------------------------------------------------------------------------

  static json::object user_json(const std::vector<SqlValue>& row) {
    return json::object{{"id", store::sql_text(row, 0)},
                        {"email", store::sql_text(row, 1)},
                        {"created_at", store::sql_int(row, 2)},
                        {"disabled", store::sql_int(row, 3) != 0},
                        {"mfa_required", store::sql_int(row, 4) != 0},
                        {"email_verified", store::sql_int(row, 5) != 0},
                        {"mfa_enrolled", !std::holds_alternative<std::monostate>(row[6])},
                        {"roles", json::array()}};
  }

  static constexpr const char* kUserColumns =
      "SELECT u.id, u.email, u.created_at, u.disabled, u.mfa_required, u.email_verified, "
      "t.confirmed_at FROM identity_users u LEFT JOIN identity_totp t ON t.user_id = u.id ";

  // Adds each (user_id, role) row's role to that user's object.
  static void attach_roles(json::array& users, const std::vector<std::vector<SqlValue>>& rows) {
    for (auto& u : users) {
      auto& obj = u.as_object();
      for (const auto& r : rows) {
        if (store::sql_text(r, 0) == obj["id"].as_string()) {
          obj["roles"].as_array().emplace_back(store::sql_text(r, 1));
        }
      }
    }
  }

  void list_users() {
    // ?after=ID&limit=N: pages in id order.
    std::string after;
    int64_t limit = 100;
    std::string_view q = ctx_->request().query;
    while (!q.empty()) {
      size_t amp = q.find('&');
      std::string_view kv = q.substr(0, amp);
      q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
      if (kv.substr(0, 6) == "after=") after = std::string(kv.substr(6));
      if (kv.substr(0, 6) == "limit=") {
        limit = std::clamp<int64_t>(std::atoll(std::string(kv.substr(6)).c_str()), 1, 1000);
      }
    }
    sql({{std::string(kUserColumns) + "WHERE u.id > $1 ORDER BY u.id LIMIT $2", {after, limit}},
         {"SELECT user_id, role FROM identity_user_roles WHERE user_id IN "
          "(SELECT id FROM identity_users WHERE id > $1 ORDER BY id LIMIT $2) ORDER BY role",
          {after, limit}}},
        true, [this, limit](SqlResult& r) {
          if (!r.ok()) return unavailable(r);
          json::array users;
          for (const auto& row : r.statements[0].rows) users.emplace_back(user_json(row));
          attach_roles(users, r.statements[1].rows);
          json::object out{{"users", std::move(users)}};
          const auto& rows = r.statements[0].rows;
          if (static_cast<int64_t>(rows.size()) == limit) {
            out["next_after"] = store::sql_text(rows.back(), 0);
          }
          reply(200, json::serialize(out));
        });
  }

  void get_user() {
    sql({{std::string(kUserColumns) + "WHERE u.id = $1", {id_}},
         {"SELECT user_id, role FROM identity_user_roles WHERE user_id = $1 ORDER BY role",
          {id_}}},
        true, [this](SqlResult& r) {
          if (!r.ok()) return unavailable(r);
          if (r.statements[0].rows.empty()) return error(404, "not_found", "no such user");
          json::array users{user_json(r.statements[0].rows[0])};
          attach_roles(users, r.statements[1].rows);
          reply(200, json::serialize(users[0]));
        });
  }

  // The statements that give `user` exactly `roles` (each must exist: kConflict otherwise).
  static void set_roles(std::vector<SqlStatement>& st, const std::string& user,
                        const std::vector<std::string>& roles) {
    st.push_back({"DELETE FROM identity_user_roles WHERE user_id = $1", {user}});
    for (const auto& role : roles) {
      st.push_back({"INSERT INTO identity_user_roles (user_id, role) "
                    "SELECT $1, name FROM identity_roles WHERE name = $2",
                    {user, role}, 1});
    }
  }

  void create_user() {
    json::object in;
    if (!read_json(in)) return;
    if (!normalise_email(member(in, "email"), email_)) {
      return error(400, "invalid_email", "expected \"email\"");
    }
    std::string password = member(in, "password");
    if (password.size() < svc_->o.min_password_length ||
        password.size() > svc_->o.max_password_length) {
      return error(400, "invalid_password", "the password is too short or too long");
    }
    if (in.contains("roles") && !string_list(in.if_contains("roles"), roles_, valid_name)) {
      return error(400, "invalid_request", "\"roles\" is a list of role names");
    }
    crypto::PasswordParams params = svc_->o.password;
    blocking(
        [pw = std::move(password), params, gate = svc_->gate]() {
          return gate->run([&] { return crypto::password_hash(pw, params); });
        },
        [this](core::Result<std::string> hash) {
          if (!hash.ok()) return error(500, "server_error", "cannot hash the password");
          id_ = crypto::random_token(16);
          std::vector<SqlStatement> st = {
              {"INSERT INTO identity_users (id, email, password_hash, created_at, "
               "email_verified) VALUES ($1, $2, $3, $4, 1)",
               {id_, email_, hash.value(), now_s()}}};
          set_roles(st, id_, roles_);
          sql(std::move(st), false, [this](SqlResult& r) {
            if (r.error == SqlError::kConflict && r.failed_statement == 0) {
              return error(409, "email_taken", "an account with this email exists");
            }
            if (r.error == SqlError::kConflict) return error(400, "unknown_role", "no such role");
            if (!r.ok()) return unavailable(r);
            get_user_created();
          });
        });
  }

  void get_user_created() {
    sql({{std::string(kUserColumns) + "WHERE u.id = $1", {id_}},
         {"SELECT user_id, role FROM identity_user_roles WHERE user_id = $1 ORDER BY role",
          {id_}}},
        true, [this](SqlResult& r) {
          if (!r.ok() || r.statements[0].rows.empty()) return unavailable(r);
          json::array users{user_json(r.statements[0].rows[0])};
          attach_roles(users, r.statements[1].rows);
          reply(201, json::serialize(users[0]));
        });
  }

  void patch_user() {
    json::object in;
    if (!read_json(in)) return;
    const int64_t now = now_s();
    // The first statement finds the user (404 otherwise) and changes nothing.
    std::vector<SqlStatement> st = {
        {"UPDATE identity_users SET id = id WHERE id = $1", {id_}, 1}};
    for (const char* flag : {"disabled", "mfa_required"}) {
      const json::value* v = in.if_contains(flag);
      if (v == nullptr) continue;
      if (!v->is_bool()) return error(400, "invalid_request", std::string(flag) + " is a boolean");
      st.push_back({std::string("UPDATE identity_users SET ") + flag + " = $1 WHERE id = $2",
                    {int64_t{v->as_bool() ? 1 : 0}, id_}});
      if (std::string_view(flag) == "disabled" && v->as_bool()) {
        // A disabled account's sessions end now.
        st.push_back({"UPDATE identity_sessions SET revoked_at = $1 WHERE user_id = $2 AND "
                      "revoked_at IS NULL",
                      {now, id_}});
      }
    }
    if (in.contains("roles")) {
      if (!string_list(in.if_contains("roles"), roles_, valid_name)) {
        return error(400, "invalid_request", "\"roles\" is a list of role names");
      }
      set_roles(st, id_, roles_);
    }
    sql(std::move(st), false, [this](SqlResult& r) {
      if (r.error == SqlError::kConflict && r.failed_statement == 0) {
        return error(404, "not_found", "no such user");
      }
      if (r.error == SqlError::kConflict) return error(400, "unknown_role", "no such role");
      if (!r.ok()) return unavailable(r);
      get_user();
    });
  }

  void delete_user() {
    sql({{"DELETE FROM identity_users WHERE id = $1", {id_}, 1}}, false, [this](SqlResult& r) {
      if (r.error == SqlError::kConflict) return error(404, "not_found", "no such user");
      if (!r.ok()) return unavailable(r);
      reply(200, "{\"deleted\":true}");
    });
  }

  void user_sessions() {
    const int64_t now = now_s();
    if (method() == "DELETE") {
      return sql({{"UPDATE identity_sessions SET revoked_at = $1 WHERE user_id = $2 AND "
                   "revoked_at IS NULL",
                   {now, id_}}},
                 false, [this](SqlResult& r) {
                   if (!r.ok()) return unavailable(r);
                   reply(200, json::serialize(json::object{{"revoked", r.statements[0].changes}}));
                 });
    }
    sql({{"SELECT id, created_at, last_used_at, expires_at, client_address, user_agent, amr "
          "FROM identity_sessions WHERE user_id = $1 AND revoked_at IS NULL AND "
          "expires_at > $2 ORDER BY created_at, id",
          {id_, now}}},
        true, [this](SqlResult& r) {
          if (!r.ok()) return unavailable(r);
          json::array list;
          for (const auto& row : r.statements[0].rows) {
            list.emplace_back(json::object{{"id", store::sql_text(row, 0)},
                                           {"created_at", store::sql_int(row, 1)},
                                           {"last_used_at", store::sql_int(row, 2)},
                                           {"expires_at", store::sql_int(row, 3)},
                                           {"client_address", store::sql_text(row, 4)},
                                           {"user_agent", store::sql_text(row, 5)},
                                           {"amr", store::sql_text(row, 6)}});
          }
          reply(200, json::serialize(json::object{{"sessions", std::move(list)}}));
        });
  }

  // ---- roles -----------------------------------------------------------------------------

  void list_roles() {
    sql({{"SELECT name, description FROM identity_roles ORDER BY name", {}},
         {"SELECT role, permission FROM identity_role_permissions ORDER BY role, permission",
          {}}},
        true, [this](SqlResult& r) {
          if (!r.ok()) return unavailable(r);
          json::array roles;
          for (const auto& row : r.statements[0].rows) {
            json::array perms;
            for (const auto& p : r.statements[1].rows) {
              if (store::sql_text(p, 0) == store::sql_text(row, 0)) {
                perms.emplace_back(store::sql_text(p, 1));
              }
            }
            roles.emplace_back(json::object{{"name", store::sql_text(row, 0)},
                                            {"description", store::sql_text(row, 1)},
                                            {"permissions", std::move(perms)}});
          }
          reply(200, json::serialize(json::object{{"roles", std::move(roles)}}));
        });
  }

  void put_role() {
    if (!valid_name(id_)) {
      return error(400, "invalid_request", "a role name is 1-64 of [A-Za-z0-9._-]");
    }
    if (id_ == "admin") return error(409, "builtin_role", "the admin role cannot be changed");
    json::object in;
    if (!read_json(in)) return;
    std::vector<std::string> perms;
    if (!string_list(in.if_contains("permissions"), perms, valid_permission)) {
      return error(400, "invalid_request",
                   "\"permissions\" is a list of \"resource:action\" (\"*\" for a whole part)");
    }
    std::vector<SqlStatement> st = {
        {"INSERT INTO identity_roles (name, description, created_at) VALUES ($1, $2, $3) "
         "ON CONFLICT (name) DO UPDATE SET description = excluded.description",
         {id_, printable(member(in, "description"), 200), now_s()}},
        {"DELETE FROM identity_role_permissions WHERE role = $1", {id_}}};
    for (const auto& p : perms) {
      st.push_back({"INSERT INTO identity_role_permissions (role, permission) VALUES ($1, $2) "
                    "ON CONFLICT (role, permission) DO NOTHING",
                    {id_, p}});
    }
    sql(std::move(st), false, [this](SqlResult& r) {
      if (!r.ok()) return unavailable(r);
      list_roles();
    });
  }

  void delete_role() {
    if (id_ == "admin") return error(409, "builtin_role", "the admin role cannot be deleted");
    sql({{"DELETE FROM identity_user_roles WHERE role = $1", {id_}},
         {"DELETE FROM identity_roles WHERE name = $1", {id_}, 1}},
        false, [this](SqlResult& r) {
          if (r.error == SqlError::kConflict) return error(404, "not_found", "no such role");
          if (!r.ok()) return unavailable(r);
          reply(200, "{\"deleted\":true}");
        });
  }

  // ---- API keys --------------------------------------------------------------------------

  static std::string new_prefix() {
    std::string p = crypto::base32_encode(crypto::random_bytes(8)).substr(0, 12);
    for (char& c : p) c = c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
    return p;
  }

  // A new key's row; the key itself is returned once (key_ holds it until the answer).
  SqlStatement key_insert(const std::string& name, const std::string& user,
                          const std::string& scopes, const SqlValue& expires,
                          const SqlValue& rotated_from) {
    key_id_ = crypto::random_token(12);
    key_prefix_ = new_prefix();
    key_ = std::string(kApiKeyMark) + key_prefix_ + "_" + crypto::random_token(32);
    return {"INSERT INTO identity_api_keys (id, prefix, digest, name, user_id, scopes, "
            "created_at, expires_at, rotated_from) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            {key_id_, key_prefix_, crypto::secret_digest(key_), name, user, scopes, now_s(),
             expires, rotated_from}};
  }

  void create_key() {
    json::object in;
    if (!read_json(in)) return;
    const std::string name = member(in, "name");
    if (!valid_name(name)) return error(400, "invalid_request", "\"name\": 1-64 of [A-Za-z0-9._-]");
    std::vector<std::string> scopes;
    if (!string_list(in.if_contains("scopes"), scopes, valid_permission) || scopes.empty()) {
      return error(400, "invalid_request",
                   "\"scopes\": a non-empty list of \"resource:action\" permissions");
    }
    const int64_t ttl = seconds(in, "expires_in", 0, 60, kMaxKeyLifetimeS);
    if (ttl < 0) return error(400, "invalid_request", "\"expires_in\": seconds, 60 to 5 years");
    std::string user = member(in, "user_id");
    if (user.empty()) user = caller_;
    std::string joined;
    for (const auto& s : scopes) joined += (joined.empty() ? "" : " ") + s;
    const SqlValue expires = ttl == 0 ? SqlValue{} : SqlValue{now_s() + ttl};
    sql({{"UPDATE identity_users SET id = id WHERE id = $1", {user}, 1},
         key_insert(name, user, joined, expires, SqlValue{})},
        false, [this, name, scopes, expires](SqlResult& r) {
          if (r.error == SqlError::kConflict && r.failed_statement == 0) {
            return error(400, "unknown_user", "no such user_id");
          }
          if (!r.ok()) return unavailable(r);
          json::array sc;
          for (const auto& s : scopes) sc.emplace_back(s);
          json::object out{{"id", key_id_}, {"key", key_}, {"prefix", key_prefix_},
                           {"name", name}, {"scopes", std::move(sc)}};
          out["expires_at"] = std::holds_alternative<int64_t>(expires)
                                  ? json::value(std::get<int64_t>(expires))
                                  : json::value(nullptr);
          reply(201, json::serialize(out));
        });
  }

  void list_keys() {
    sql({{"SELECT id, prefix, name, user_id, scopes, created_at, expires_at, revoked_at, "
          "last_used_at, rotated_from FROM identity_api_keys ORDER BY created_at, id",
          {}}},
        true, [this](SqlResult& r) {
          if (!r.ok()) return unavailable(r);
          auto opt = [](const std::vector<SqlValue>& row, size_t i) {
            return std::holds_alternative<std::monostate>(row[i])
                       ? json::value(nullptr)
                       : json::value(store::sql_int(row, i));
          };
          json::array keys;
          for (const auto& row : r.statements[0].rows) {
            json::array sc;
            for (const auto& s : split_scopes(store::sql_text(row, 4))) sc.emplace_back(s);
            keys.emplace_back(json::object{
                {"id", store::sql_text(row, 0)}, {"prefix", store::sql_text(row, 1)},
                {"name", store::sql_text(row, 2)}, {"user_id", store::sql_text(row, 3)},
                {"scopes", std::move(sc)}, {"created_at", store::sql_int(row, 5)},
                {"expires_at", opt(row, 6)}, {"revoked_at", opt(row, 7)},
                {"last_used_at", opt(row, 8)},
                {"rotated_from", store::sql_text(row, 9).empty()
                                     ? json::value(nullptr)
                                     : json::value(store::sql_text(row, 9))}});
          }
          reply(200, json::serialize(json::object{{"api_keys", std::move(keys)}}));
        });
  }

  // A new secret for the same name, owner and scopes; the old key keeps working for `overlap`
  // seconds (default a day) so that the deployments using it can move over.
  void rotate_key() {
    json::object in;
    if (!body_.empty() && !read_json(in)) return;
    overlap_ = seconds(in, "overlap", 86400, 0, 30 * 86400);
    if (overlap_ < 0) return error(400, "invalid_request", "\"overlap\": seconds, 0 to 30 days");
    sql({{"SELECT name, user_id, scopes, expires_at FROM identity_api_keys WHERE id = $1 AND "
          "revoked_at IS NULL",
          {id_}}},
        true, [this](SqlResult& r) {
          if (!r.ok()) return unavailable(r);
          const auto& rows = r.statements[0].rows;
          if (rows.empty()) return error(404, "not_found", "no such key (or it is revoked)");
          const int64_t now = now_s();
          const SqlValue expires = rows[0][3];
          if (std::holds_alternative<int64_t>(expires) && std::get<int64_t>(expires) <= now) {
            return error(409, "expired", "the key has expired: create a new one");
          }
          const std::string name = store::sql_text(rows[0], 0);
          std::vector<SqlStatement> st = {
              {"UPDATE identity_api_keys SET expires_at = CASE WHEN expires_at IS NULL OR "
               "expires_at > $1 THEN $1 ELSE expires_at END WHERE id = $2 AND revoked_at IS NULL",
               {now + overlap_, id_}, 1},
              key_insert(name, store::sql_text(rows[0], 1), store::sql_text(rows[0], 2), expires,
                         SqlValue{id_})};
          sql(std::move(st), false, [this, name, now](SqlResult& w) {
            if (w.error == SqlError::kConflict) return error(404, "not_found", "no such key");
            if (!w.ok()) return unavailable(w);
            json::object out{{"id", key_id_}, {"key", key_}, {"prefix", key_prefix_},
                             {"name", name}, {"rotated_from", id_},
                             {"old_key_expires_at", now + overlap_}};
            reply(201, json::serialize(out));
          });
        });
  }

  void revoke_key() {
    sql({{"UPDATE identity_api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
          {now_s(), id_}, 1}},
        false, [this](SqlResult& r) {
          if (r.error == SqlError::kConflict) return error(404, "not_found", "no such key");
          if (!r.ok()) return unavailable(r);
          reply(200, "{\"revoked\":true}");
        });
  }

  // ---- invitations -------------------------------------------------------------------------

  void create_invite() {
    json::object in;
    if (!body_.empty() && !read_json(in)) return;
    std::string email;
    if (in.contains("email") && !normalise_email(member(in, "email"), email)) {
      return error(400, "invalid_email", "\"email\" is not an address");
    }
    const int64_t ttl = seconds(in, "expires_in", 7 * 86400, 60, 90 * 86400);
    if (ttl < 0) return error(400, "invalid_request", "\"expires_in\": seconds, 60 to 90 days");
    key_ = crypto::random_token(24);
    const int64_t expires = now_s() + ttl;
    sql({{"INSERT INTO identity_invites (digest, email, expires_at) VALUES ($1, $2, $3)",
          {crypto::secret_digest(key_), email.empty() ? SqlValue{} : SqlValue{email}, expires}}},
        false, [this, expires](SqlResult& r) {
          if (!r.ok()) return unavailable(r);
          reply(201, json::serialize(json::object{{"invite", key_}, {"expires_at", expires}}));
        });
  }

  std::shared_ptr<const Service> svc_;
  Op op_ = Op::kUsers;
  std::string id_;       // the user, role or key the path names
  std::string caller_;   // the user behind the credentials
  std::string email_;
  std::vector<std::string> roles_;
  std::string key_, key_id_, key_prefix_;
  int64_t overlap_ = 0;
};

}  // namespace

pipeline::Handler* new_admin_handler(core::Arena& arena, std::shared_ptr<const Service> svc) {
  return pipeline::arena_new<AdminHandler>(arena, std::move(svc));
}

}  // namespace citadel::platform::identity
