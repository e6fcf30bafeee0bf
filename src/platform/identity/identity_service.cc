#include "platform/identity/identity_service.h"

#include <sched.h>

#include <algorithm>
#include <ctime>
#include <semaphore>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <boost/json.hpp>

#include "core/ascii.h"
#include "crypto/jwt.h"
#include "crypto/password.h"
#include "crypto/random.h"
#include "crypto/totp.h"
#include "http/pipeline/blocking.h"
#include "http/pipeline/filter.h"
#include "platform/form.h"
#include "platform/json_handler.h"
#include "platform/qr_svg.h"
#include "platform/identity/admin_api.h"
#include "platform/identity/key_set.h"
#include "platform/identity/options.h"
#include "platform/identity/schema.h"
#include "platform/identity/service.h"

namespace citadel::platform::identity {
namespace {

namespace json = boost::json;
using store::SqlError;
using store::SqlResult;
using store::SqlStatement;


// Throttling of failed logins and second-factor codes (docs/identity.md): after `threshold`
// failures on a key, each further one blocks the key for `step` seconds more, up to `cap`. The
// pair (account, address) is strict: one address guessing one account. The account alone is
// looser, so that guesses spread over many addresses slow down too, yet capped low enough that
// nobody can keep a user locked out for long. The address alone catches one address trying many
// accounts. A success clears the pair and the account; a quiet day clears any key.
struct ThrottleRule {
  const char* prefix;
  int64_t threshold, step_s, cap_s;
};
constexpr ThrottleRule kThrottle[] = {
    {"pair:", 5, 30, 900},
    {"acct:", 20, 60, 900},
    {"addr:", 100, 60, 3600},
};
constexpr int64_t kThrottleMemoryS = 86400;
// The grant that answers an MFA challenge at the token endpoint (an extension grant, RFC 6749
// section 4.5, named as Auth0's mfa-otp grant is).
constexpr const char* kMfaOtpGrant = "urn:citadel:params:oauth:grant-type:mfa-otp";

enum class Endpoint : uint8_t {
  kNone,
  kSignup,
  kToken,
  kLogin,
  kLoginMfa,  // the second step of a login that needs a TOTP or recovery code
  kTotp,      // POST: enrol (a new secret); DELETE: remove the second factor
  kTotpConfirm,
  kRevoke,
  kSessions,
  kSession,  // /sessions/{id}
  kUserinfo,
  kJwks,
  kDiscovery,
};

class IdentityHandler final : public JsonHandler {
 public:
  explicit IdentityHandler(std::shared_ptr<const Service> svc) : svc_(std::move(svc)) {}
  ~IdentityHandler() override {
    if (admin_ != nullptr) admin_->~Handler();  // in the arena: destroyed, never freed
  }

  void on_request_headers(pipeline::HandlerContext& ctx, bool end_stream) override {
    ctx_ = &ctx;
    std::string_view path = ctx.route_path();
    const std::string& prefix = svc_->o.prefix;
    if (path.substr(0, prefix.size()) != prefix) return not_found();
    path.remove_prefix(prefix.size());
    if (path.substr(0, 7) == "/admin/" || path == "/admin") {
      // The admin API: a handler of its own, which this one forwards to.
      admin_ = new_admin_handler(ctx.arena(), svc_);
      return admin_->on_request_headers(ctx, end_stream);
    }
    std::string_view allow;
    if (path == "/signup") {
      ep_ = Endpoint::kSignup, allow = "POST";
    } else if (path == "/token") {
      ep_ = Endpoint::kToken, allow = "POST";
      bearer_challenge_ = false;  // clients authenticate to it otherwise (RFC 6749, 5.2)
    } else if (path == "/login") {
      ep_ = Endpoint::kLogin, allow = "POST";
    } else if (path == "/login/mfa") {
      ep_ = Endpoint::kLoginMfa, allow = "POST";
    } else if (path == "/mfa/totp") {
      ep_ = Endpoint::kTotp, allow = "POST, DELETE";
    } else if (path == "/mfa/totp/confirm") {
      ep_ = Endpoint::kTotpConfirm, allow = "POST";
    } else if (path == "/revoke" || path == "/logout") {
      ep_ = Endpoint::kRevoke, allow = "POST";
    } else if (path == "/sessions") {
      ep_ = Endpoint::kSessions, allow = "GET, DELETE";
    } else if (path.substr(0, 10) == "/sessions/" && path.size() > 10 &&
               path.find('/', 10) == std::string_view::npos) {
      ep_ = Endpoint::kSession, allow = "DELETE";
      target_ = std::string(path.substr(10));
    } else if (path == "/userinfo") {
      ep_ = Endpoint::kUserinfo, allow = "GET";
    } else if (path == "/jwks.json") {
      ep_ = Endpoint::kJwks, allow = "GET, HEAD";
    } else if (path == "/.well-known/openid-configuration") {
      ep_ = Endpoint::kDiscovery, allow = "GET, HEAD";
    } else {
      return not_found();
    }
    begin(ctx, end_stream, allow);
  }

 private:
  void on_request_data(pipeline::HandlerContext& ctx, std::string_view data, bool end) override {
    if (admin_ != nullptr) return admin_->on_request_data(ctx, data, end);
    JsonHandler::on_request_data(ctx, data, end);
  }
  void on_reset() override {
    if (admin_ != nullptr) admin_->on_reset();
    JsonHandler::on_reset();
  }

  void not_found() {
    ep_ = Endpoint::kNone;
    error(404, "not_found", "no such endpoint");
  }

  void unavailable(const SqlResult& r) {
    store_unavailable(r, svc_->m.store_errors, "identity");
  }

  template <class F>
  void sql(std::vector<SqlStatement> statements, bool read_only, F then) {
    JsonHandler::sql(*svc_->db, svc_, std::move(statements), read_only, std::move(then));
  }

  // ---- the endpoints -----------------------------------------------------------------------

  void dispatch() override {
    switch (ep_) {
      case Endpoint::kSignup: return signup();
      case Endpoint::kToken: return token();
      case Endpoint::kLogin: return login_json();
      case Endpoint::kLoginMfa: return login_mfa_json();
      case Endpoint::kTotp:
      case Endpoint::kTotpConfirm: return totp_authenticate();
      case Endpoint::kRevoke: return revoke();
      case Endpoint::kSessions:
      case Endpoint::kSession:
      case Endpoint::kUserinfo: return with_bearer();
      case Endpoint::kJwks: return reply(200, svc_->keys->jwks(), false);
      case Endpoint::kDiscovery: return reply(200, svc_->discovery, false);
      case Endpoint::kNone: return not_found();
    }
  }

  bool password_acceptable(const std::string& password) {
    if (password.size() < svc_->o.min_password_length) {
      error(400, "invalid_password",
            "the password needs at least " + std::to_string(svc_->o.min_password_length) +
                " characters");
      return false;
    }
    if (password.size() > svc_->o.max_password_length) {
      error(400, "invalid_password", "the password is over 1024 bytes");
      return false;
    }
    return true;
  }

  void signup() {
    json::object in;
    if (!read_json(in)) return;
    const size_t w = ctx_->worker().index();
    if (svc_->o.signup == Signup::kClosed) {
      svc_->m.signups_refused->add(w);
      return error(403, "signup_closed", "sign-up is closed: an administrator creates accounts");
    }
    if (!normalise_email(member(in, "email"), email_)) {
      return error(400, "invalid_email", "expected \"email\": an address such as a@example.com");
    }
    password_ = member(in, "password");
    if (!password_acceptable(password_)) return;
    invite_ = member(in, "invite");
    if (svc_->o.signup == Signup::kInviteOnly && invite_.empty()) {
      svc_->m.signups_refused->add(w);
      return error(403, "invite_required", "sign-up needs an invitation (\"invite\")");
    }
    crypto::PasswordParams params = svc_->o.password;
    blocking([pw = std::move(password_), params, gate = svc_->gate]() {
               return gate->run([&] { return crypto::password_hash(pw, params); });
             },
             [this](core::Result<std::string> hash) {
               if (!hash.ok()) {
                 return error(500, "server_error", "cannot hash the password");
               }
               create_user(hash.value());
             });
  }

  void create_user(const std::string& hash) {
    const int64_t now = now_s();
    user_id_ = crypto::random_token(16);
    std::vector<SqlStatement> st;
    const bool invited = svc_->o.signup == Signup::kInviteOnly;
    if (invited) {
      st.push_back({"UPDATE identity_invites SET used_at = $1 WHERE digest = $2 AND "
                    "used_at IS NULL AND expires_at > $1 AND (email IS NULL OR email = $3)",
                    {now, crypto::secret_digest(invite_), email_},
                    1});
    }
    st.push_back({"INSERT INTO identity_users (id, email, password_hash, created_at) "
                  "VALUES ($1, $2, $3, $4)",
                  {user_id_, email_, hash, now}});
    sql(std::move(st), false, [this, invited](SqlResult& r) {
      const size_t w = ctx_->worker().index();
      if (r.error == SqlError::kConflict) {
        svc_->m.signups_refused->add(w);
        if (invited && r.failed_statement == 0) {
          return error(403, "invalid_invite", "the invitation is unknown, used or expired");
        }
        return error(409, "email_taken", "an account with this email exists");
      }
      if (!r.ok()) return unavailable(r);
      svc_->m.signups->add(w);
      json::object out{{"id", user_id_}, {"email", email_}};
      reply(201, json::serialize(out));
    });
  }

  // POST {prefix}/login with JSON {email, password}: the password grant for first-party
  // clients that speak JSON; the same answer as the token endpoint's.
  void login_json() {
    json::object in;
    if (!read_json(in)) return;
    std::string scope = member(in, "scope");
    password_login(member(in, "email"), member(in, "password"), scope.empty() ? "openid" : scope);
  }

  void token() {
    if (!has_media_type(ctx_->request(), "application/x-www-form-urlencoded")) {
      return error(400, "invalid_request",
                   "expected Content-Type: application/x-www-form-urlencoded");
    }
    std::map<std::string, std::string> form;
    std::string why;
    if (!parse_form(body_, form, why)) return error(400, "invalid_request", why);
    auto get = [&](const char* k) {
      auto it = form.find(k);
      return it == form.end() ? std::string() : it->second;
    };
    const std::string grant = get("grant_type");
    if (grant == "password") {
      std::string scope = get("scope");
      return password_login(get("username"), get("password"), scope.empty() ? "openid" : scope);
    }
    if (grant == kMfaOtpGrant) {
      return mfa_grant(get("mfa_token"), get("otp"), get("recovery_code"));
    }
    if (grant == "refresh_token") {
      const std::string rt = get("refresh_token");
      if (rt.empty()) return error(400, "invalid_request", "refresh_token is missing");
      return refresh(rt);
    }
    if (grant.empty()) return error(400, "invalid_request", "grant_type is missing");
    error(400, "unsupported_grant_type",
          std::string("supported: password, refresh_token, ") + kMfaOtpGrant);
  }

  bool scope_acceptable(const std::string& scope) {
    bool ok = !scope.empty() && scope.size() <= 256;
    size_t i = 0;
    while (ok && i < scope.size()) {
      size_t sp = scope.find(' ', i);
      std::string_view s(scope.data() + i, (sp == std::string::npos ? scope.size() : sp) - i);
      ok = s == "openid" || s == "profile" || s == "email" || s == "offline_access";
      i = sp == std::string::npos ? scope.size() : sp + 1;
    }
    if (!ok) error(400, "invalid_scope", "supported scopes: openid profile email offline_access");
    return ok;
  }

  void password_login(const std::string& username, std::string password, std::string scope) {
    if (!scope_acceptable(scope)) return;
    scope_ = std::move(scope);
    if (!normalise_email(username, email_) || password.empty() ||
        password.size() > svc_->o.max_password_length) {
      svc_->m.logins_failed->add(ctx_->worker().index());
      return bad_credentials();
    }
    password_ = std::move(password);
    sql({{"SELECT u.id, u.password_hash, u.disabled, u.mfa_required, t.confirmed_at "
          "FROM identity_users u LEFT JOIN identity_totp t ON t.user_id = u.id "
          "WHERE u.email = $1",
          {email_}},
         {"SELECT r.role FROM identity_user_roles r JOIN identity_users u ON u.id = r.user_id "
          "WHERE u.email = $1",
          {email_}},
         throttle_check()},
        true, [this](SqlResult& r) {
          if (!r.ok()) return unavailable(r);
          if (throttled(r.statements[2])) return;
          const auto& rows = r.statements[0].rows;
          std::string stored = *svc_->dummy_hash;
          bool usable = false;
          if (!rows.empty()) {
            user_id_ = store::sql_text(rows[0], 0);
            stored = store::sql_text(rows[0], 1);
            usable = store::sql_int(rows[0], 2) == 0;
            mfa_required_ = store::sql_int(rows[0], 3) != 0;
            totp_enrolled_ = !std::holds_alternative<std::monostate>(rows[0][4]);
          }
          for (const auto& role : r.statements[1].rows) {
            for (const auto& need : svc_->o.mfa_required_roles) {
              mfa_required_ = mfa_required_ || store::sql_text(role, 0) == need;
            }
          }
          verify_password(std::move(stored), usable);
        });
  }

  struct Verdict {
    bool match = false;
    std::string rehash;  // a new hash under the configured parameters, when one is due
  };

  void verify_password(std::string stored, bool usable) {
    crypto::PasswordParams params = svc_->o.password;
    // An unknown email costs one Argon2id verification like a known one: timing tells nothing.
    blocking(
        [pw = std::move(password_), stored = std::move(stored), params, gate = svc_->gate]() {
          return gate->run([&] {
          Verdict v;
          v.match = crypto::password_verify(pw, stored);
          if (v.match && crypto::password_needs_rehash(stored, params)) {
            auto h = crypto::password_hash(pw, params);
            if (h.ok()) v.rehash = std::move(h.value());
          }
          return v;
          });
        },
        [this, usable](Verdict v) {
          if (!v.match || !usable) {
            svc_->m.logins_failed->add(ctx_->worker().index());
            return record_failure([this] { bad_credentials(); });
          }
          // A second factor, when the account has one or must have one.
          if (totp_enrolled_) return challenge("otp", std::move(v.rehash));
          if (mfa_required_) return challenge("enroll", std::move(v.rehash));
          open_session(std::move(v.rehash));
        });
  }

  // The password was right, a second factor is due: a single-use challenge names the pending
  // login (mfa_token), answered 403 as OAuth servers with MFA do (no tokens yet).
  void challenge(const char* purpose, std::string rehash) {
    const int64_t now = now_s();
    challenge_token_ = crypto::random_token(32);
    std::vector<SqlStatement> st = {
        {"INSERT INTO identity_mfa_challenges (digest, user_id, purpose, scope, expires_at) "
         "VALUES ($1, $2, $3, $4, $5)",
         {crypto::secret_digest(challenge_token_), user_id_, std::string(purpose), scope_,
          now + svc_->o.mfa_challenge_ttl_s}},
        // Spent and expired challenges go as new ones come: the table stays small.
        {"DELETE FROM identity_mfa_challenges WHERE expires_at < $1", {now - 3600}},
    };
    if (!rehash.empty()) {
      st.push_back({"UPDATE identity_users SET password_hash = $1 WHERE id = $2",
                    {std::move(rehash), user_id_}});
    }
    const bool otp = std::string_view(purpose) == "otp";
    sql(std::move(st), false, [this, otp](SqlResult& r) {
      if (!r.ok()) return unavailable(r);
      json::object out{
          {"error", otp ? "mfa_required" : "mfa_enrollment_required"},
          {"error_description",
           otp ? "a one-time code is needed: POST it with this mfa_token"
               : "this account must set up a second factor first: enrol with this mfa_token"},
          {"mfa_token", challenge_token_},
          {"expires_in", svc_->o.mfa_challenge_ttl_s}};
      reply(403, json::serialize(out));
    });
  }

  // ---- throttling ------------------------------------------------------------------------------

  std::string throttle_key(const ThrottleRule& rule) const {
    const std::string address(ctx_->connection().peer_ip);
    if (rule.prefix[0] == 'p') return std::string(rule.prefix) + email_ + "|" + address;
    if (rule.prefix[0] == 'a' && rule.prefix[1] == 'c') return std::string(rule.prefix) + email_;
    return std::string(rule.prefix) + address;
  }

  SqlStatement throttle_check() const {
    return {"SELECT MAX(blocked_until) FROM identity_throttle WHERE key IN ($1, $2, $3)",
            {throttle_key(kThrottle[0]), throttle_key(kThrottle[1]), throttle_key(kThrottle[2])}};
  }

  // True (and answered 429) when one of the keys is blocked now.
  bool throttled(const store::SqlStatementResult& check) {
    const int64_t until = check.rows.empty() ? 0 : store::sql_int(check.rows[0], 0);
    const int64_t now = now_s();
    if (until <= now) return false;
    svc_->m.logins_throttled->add(ctx_->worker().index());
    const std::string wait = std::to_string(until - now);
    ctx_->response_head().headers.add("Retry-After", ctx_->arena().copy(wait));
    error(429, "too_many_attempts",
          "too many failed attempts: try again in " + wait + " seconds");
    return true;
  }

  // Counts a failure on each key (one transaction: concurrent failures all count), then `then`.
  template <class Then>
  void record_failure(Then then) {
    const int64_t now = now_s();
    std::vector<SqlStatement> st;
    for (const ThrottleRule& rule : kThrottle) {
      const std::string key = throttle_key(rule);
      st.push_back({"INSERT INTO identity_throttle (key, failures, blocked_until, updated_at) "
                    "VALUES ($1, 1, 0, $2) ON CONFLICT (key) DO UPDATE SET failures = CASE "
                    "WHEN identity_throttle.updated_at < $3 THEN 1 "
                    "ELSE identity_throttle.failures + 1 END, updated_at = $2",
                    {key, now, now - kThrottleMemoryS}});
      st.push_back({"UPDATE identity_throttle SET blocked_until = updated_at + CASE "
                    "WHEN (failures - $2 + 1) * $3 < $4 THEN (failures - $2 + 1) * $3 "
                    "ELSE $4 END WHERE key = $1 AND failures >= $2",
                    {key, rule.threshold, rule.step_s, rule.cap_s}});
    }
    st.push_back({"DELETE FROM identity_throttle WHERE updated_at < $1 AND blocked_until < $2",
                  {now - kThrottleMemoryS, now}});
    sql(std::move(st), false, [this, then = std::move(then)](SqlResult& r) mutable {
      if (!r.ok()) return unavailable(r);
      then();
    });
  }

  // A login that succeeded clears its account's and its pair's counts.
  SqlStatement throttle_clear() const {
    return {"DELETE FROM identity_throttle WHERE key IN ($1, $2)",
            {throttle_key(kThrottle[0]), throttle_key(kThrottle[1])}};
  }

  void bad_credentials() {
    if (ep_ == Endpoint::kLogin) return error(401, "invalid_grant", "wrong email or password");
    error(400, "invalid_grant", "wrong email or password");
  }

  // A new session for user_id_ (amr_, scope_): its row, its first refresh token and the
  // user's roles, appended to `st` (which may hold guards first); issue() answers from `roles_at`.
  void add_session(std::vector<SqlStatement>& st, int64_t now) {
    session_id_ = crypto::random_token(16);
    refresh_token_ = crypto::random_token(32);
    session_expires_ = now + svc_->o.session_ttl_s;
    const http::HeaderField* ua = ctx_->request().headers.find("user-agent");
    st.push_back({"INSERT INTO identity_sessions (id, user_id, created_at, last_used_at, "
                  "expires_at, client_address, user_agent, amr, scope) "
                  "VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8)",
                  {session_id_, user_id_, now, session_expires_,
                   std::string(ctx_->connection().peer_ip),
                   printable(ua != nullptr ? ua->value : std::string_view(), 200), amr_,
                   scope_}});
    st.push_back({"INSERT INTO identity_refresh_tokens (digest, session_id, expires_at) "
                  "VALUES ($1, $2, $3)",
                  {crypto::secret_digest(refresh_token_), session_id_,
                   std::min(now + svc_->o.refresh_ttl_s, session_expires_)}});
    st.push_back(
        {"SELECT role FROM identity_user_roles WHERE user_id = $1 ORDER BY role", {user_id_}});
  }

  void open_session(std::string rehash) {
    amr_ = "pwd";
    std::vector<SqlStatement> st;
    add_session(st, now_s());
    st.push_back(throttle_clear());
    if (!rehash.empty()) {
      st.push_back({"UPDATE identity_users SET password_hash = $1 WHERE id = $2",
                    {std::move(rehash), user_id_}});
    }
    sql(std::move(st), false, [this](SqlResult& r) {
      if (!r.ok()) return unavailable(r);
      svc_->m.logins->add(ctx_->worker().index());
      issue(r.statements[2].rows);
    });
  }

  // ---- the second factor ---------------------------------------------------------------------

  // POST {prefix}/login/mfa with JSON {mfa_token, code | recovery_code}.
  void login_mfa_json() {
    json::object in;
    if (!read_json(in)) return;
    mfa_grant(member(in, "mfa_token"), member(in, "code"), member(in, "recovery_code"));
  }

  // The mfa-otp grant: the challenge of a login whose password was right, and a TOTP code (or
  // a recovery code) for its account. Wrong codes count against the challenge.
  void mfa_grant(const std::string& mfa_token, std::string otp, std::string recovery) {
    if (mfa_token.empty() || otp.empty() == recovery.empty()) {
      return error(400, "invalid_request", "mfa_token and one of otp / recovery_code are needed");
    }
    otp_ = std::move(otp);
    recovery_ = std::move(recovery);
    digest_ = crypto::secret_digest(mfa_token);
    sql({{"SELECT c.user_id, c.purpose, c.scope, c.expires_at, c.attempts, c.used_at, t.secret, "
          "t.confirmed_at, u.email, u.disabled FROM identity_mfa_challenges c "
          "JOIN identity_users u ON u.id = c.user_id "
          "LEFT JOIN identity_totp t ON t.user_id = c.user_id WHERE c.digest = $1",
          {digest_}}},
        true, [this](SqlResult& r) {
          if (!r.ok()) return unavailable(r);
          const auto& rows = r.statements[0].rows;
          if (!rows.empty() && email_.empty()) {
            // Throttled by the account's keys: read them, then come back here.
            email_ = store::sql_text(rows[0], 8);
            return sql({throttle_check()}, true, [this, r](SqlResult& t) mutable {
              if (!t.ok()) return unavailable(t);
              if (throttled(t.statements[0])) return;
              mfa_checked(r);
            });
          }
          mfa_checked(r);
        });
  }

  void mfa_checked(SqlResult& r) {
    const auto& rows = r.statements[0].rows;
    const int64_t now = now_s();
    if (rows.empty() || store::sql_text(rows[0], 1) != "otp" ||
        store::sql_int(rows[0], 3) <= now ||
        store::sql_int(rows[0], 4) >= svc_->o.mfa_max_attempts ||
        !std::holds_alternative<std::monostate>(rows[0][5]) ||
        std::holds_alternative<std::monostate>(rows[0][7]) ||
        store::sql_int(rows[0], 9) != 0) {
      svc_->m.mfa_failed->add(ctx_->worker().index());
      return error(400, "invalid_grant", "the MFA challenge is unknown, spent or expired");
    }
    user_id_ = store::sql_text(rows[0], 0);
    scope_ = store::sql_text(rows[0], 2);
    email_ = store::sql_text(rows[0], 8);
    const int64_t now_step = now;
    std::vector<SqlStatement> st = {
        {"UPDATE identity_mfa_challenges SET used_at = $1 WHERE digest = $2 AND "
         "used_at IS NULL",
         {now_step, digest_}, 1}};
    if (!otp_.empty()) {
      auto secret = crypto::base32_decode(store::sql_text(rows[0], 6));
      auto step = secret ? crypto::totp_match(*secret, otp_, now, crypto::TotpParams{},
                                              svc_->o.mfa_window)
                         : std::nullopt;
      if (!step) return wrong_code();
      amr_ = "pwd otp";
      // Each code once: a step at or before the last accepted one is a replay.
      st.push_back({"UPDATE identity_totp SET last_step = $1 WHERE user_id = $2 AND "
                    "last_step < $1",
                    {*step, user_id_}, 1});
    } else {
      amr_ = "pwd otp";
      st.push_back({"UPDATE identity_recovery_codes SET used_at = $1 WHERE user_id = $2 "
                    "AND digest = $3 AND used_at IS NULL",
                    {now, user_id_, crypto::secret_digest(normal_recovery(recovery_))},
                    1});
    }
    add_session(st, now);
    st.push_back(throttle_clear());
    sql(std::move(st), false, [this](SqlResult& w) {
      if (w.error == SqlError::kConflict && w.failed_statement == 0) {
        return error(400, "invalid_grant", "the MFA challenge was already used");
      }
      if (w.error == SqlError::kConflict && w.failed_statement == 1) {
        if (!otp_.empty()) {
          svc_->m.mfa_failed->add(ctx_->worker().index());
          return error(400, "invalid_grant", "this code was already used: wait for the next");
        }
        return wrong_code();
      }
      if (!w.ok()) return unavailable(w);
      svc_->m.logins->add(ctx_->worker().index());
      svc_->m.mfa_ok->add(ctx_->worker().index());
      issue(w.statements[4].rows);
    });
  }

  // A wrong code counts against the challenge and, like a wrong password, against the account
  // (a password alone cannot buy unlimited challenges to guess codes with).
  void wrong_code() {
    svc_->m.mfa_failed->add(ctx_->worker().index());
    sql({{"UPDATE identity_mfa_challenges SET attempts = attempts + 1 WHERE digest = $1",
          {digest_}}},
        false, [this](SqlResult& r) {
          if (!r.ok()) return unavailable(r);
          record_failure([this] { error(400, "invalid_grant", "the code does not match"); });
        });
  }

  // Recovery codes as handed out ("ABCDE-FGHIJ"): case, spaces and dashes do not matter.
  static std::string normal_recovery(const std::string& code) {
    std::string out;
    for (char c : code) {
      if (c == '-' || c == ' ') continue;
      out.push_back(c >= 'a' && c <= 'z' ? static_cast<char>(c - 32) : c);
    }
    return out;
  }

  // Enrolment and removal act for a signed-in user (an access token of a live session) or,
  // for enrolment only, for a login that must enrol first (its mfa_token as the bearer).
  void totp_authenticate() {
    std::string_view v = bearer_token(ctx_->request());
    if (v.empty()) {
      return error(401, "invalid_request", "an access token is needed (Authorization: Bearer)");
    }
    if (v.find('.') != std::string_view::npos) return with_bearer();
    if (ctx_->request().method == "DELETE") {
      return error(401, "invalid_token", "removing a second factor needs an access token");
    }
    digest_ = crypto::secret_digest(v);
    sql({{"SELECT user_id FROM identity_mfa_challenges WHERE digest = $1 AND "
          "purpose = 'enroll' AND used_at IS NULL AND expires_at > $2",
          {digest_, now_s()}}},
        true, [this](SqlResult& r) {
          if (!r.ok()) return unavailable(r);
          if (r.statements[0].rows.empty()) {
            return error(401, "invalid_token", "the enrolment challenge is unknown or expired");
          }
          user_id_ = store::sql_text(r.statements[0].rows[0], 0);
          enrolling_ = true;
          totp_action();
        });
  }

  void totp_action() {
    if (ep_ == Endpoint::kTotpConfirm) return totp_confirm();
    if (ctx_->request().method == "DELETE") return totp_remove();
    totp_enrol();
  }

  void totp_enrol() {
    const int64_t now = now_s();
    raw_secret_ = crypto::random_bytes(20);  // 160 bits, RFC 4226's recommended size
    secret_ = crypto::base32_encode(raw_secret_);
    sql({{"INSERT INTO identity_totp (user_id, secret, created_at) VALUES ($1, $2, $3) "
          "ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, "
          "created_at = excluded.created_at WHERE identity_totp.confirmed_at IS NULL",
          {user_id_, secret_, now}, 1},
         {"SELECT email FROM identity_users WHERE id = $1", {user_id_}}},
        false, [this](SqlResult& r) {
          if (r.error == SqlError::kConflict) {
            return error(409, "already_enrolled",
                         "a second factor is set up: remove it first (DELETE)");
          }
          if (!r.ok()) return unavailable(r);
          const std::string account =
              r.statements[1].rows.empty() ? user_id_ : store::sql_text(r.statements[1].rows[0], 0);
          const std::string uri =
              crypto::otpauth_uri(svc_->o.mfa_label, account, raw_secret_, crypto::TotpParams{});
          json::object out{{"secret", secret_}, {"otpauth_uri", uri}, {"qr_svg", qr_svg(uri)}};
          reply(200, json::serialize(out));
        });
  }

  void totp_confirm() {
    json::object in;
    if (!read_json(in)) return;
    otp_ = member(in, "code");
    if (otp_.empty()) return error(400, "invalid_request", "\"code\" is missing");
    sql({{"SELECT secret, confirmed_at FROM identity_totp WHERE user_id = $1", {user_id_}}},
        true, [this](SqlResult& r) {
          if (!r.ok()) return unavailable(r);
          const auto& rows = r.statements[0].rows;
          if (rows.empty()) return error(409, "not_enrolled", "enrol first (POST .../mfa/totp)");
          if (!std::holds_alternative<std::monostate>(rows[0][1])) {
            return error(409, "already_enrolled", "the second factor is already confirmed");
          }
          auto secret = crypto::base32_decode(store::sql_text(rows[0], 0));
          const int64_t now = now_s();
          auto step = secret ? crypto::totp_match(*secret, otp_, now, crypto::TotpParams{},
                                                  svc_->o.mfa_window)
                             : std::nullopt;
          if (!step) {
            svc_->m.mfa_failed->add(ctx_->worker().index());
            return error(400, "invalid_code", "the code does not match: check the device's clock");
          }
          std::vector<SqlStatement> st = {
              {"UPDATE identity_totp SET confirmed_at = $1, last_step = $2 WHERE user_id = $3 "
               "AND confirmed_at IS NULL",
               {now, *step, user_id_}, 1},
              {"DELETE FROM identity_recovery_codes WHERE user_id = $1", {user_id_}}};
          json::array codes;
          for (int i = 0; i < 10; ++i) {
            // 50 bits each, in two groups of five base32 letters.
            std::string c = crypto::base32_encode(crypto::random_bytes(7)).substr(0, 10);
            st.push_back({"INSERT INTO identity_recovery_codes (user_id, digest) VALUES ($1, $2)",
                          {user_id_, crypto::secret_digest(c)}});
            codes.emplace_back(c.substr(0, 5) + "-" + c.substr(5));
          }
          if (enrolling_) {
            st.push_back({"UPDATE identity_mfa_challenges SET used_at = $1 WHERE digest = $2",
                          {now, digest_}});
          }
          sql(std::move(st), false, [this, codes = std::move(codes)](SqlResult& w) mutable {
            if (w.error == SqlError::kConflict) {
              return error(409, "already_enrolled", "the second factor is already confirmed");
            }
            if (!w.ok()) return unavailable(w);
            svc_->m.mfa_enrolled->add(ctx_->worker().index());
            json::object out{{"recovery_codes", std::move(codes)}};
            reply(200, json::serialize(out));
          });
        });
  }

  void totp_remove() {
    json::object in;
    if (!read_json(in)) return;
    otp_ = member(in, "code");
    if (otp_.empty()) {
      return error(400, "invalid_request", "\"code\" (a current TOTP code) is missing");
    }
    sql({{"SELECT secret FROM identity_totp WHERE user_id = $1 AND confirmed_at IS NOT NULL",
          {user_id_}}},
        true, [this](SqlResult& r) {
          if (!r.ok()) return unavailable(r);
          const auto& rows = r.statements[0].rows;
          if (rows.empty()) return error(409, "not_enrolled", "no second factor is set up");
          auto secret = crypto::base32_decode(store::sql_text(rows[0], 0));
          auto step = secret ? crypto::totp_match(*secret, otp_, now_s(), crypto::TotpParams{},
                                                  svc_->o.mfa_window)
                             : std::nullopt;
          if (!step) {
            svc_->m.mfa_failed->add(ctx_->worker().index());
            return error(400, "invalid_code", "the code does not match");
          }
          sql({{"DELETE FROM identity_totp WHERE user_id = $1 AND last_step < $2",
                {user_id_, *step}, 1},
               {"DELETE FROM identity_recovery_codes WHERE user_id = $1", {user_id_}}},
              false, [this](SqlResult& w) {
                if (w.error == SqlError::kConflict) {
                  return error(400, "invalid_code", "this code was already used");
                }
                if (!w.ok()) return unavailable(w);
                reply(200, "{\"removed\":true}");
              });
        });
  }

  void refresh(const std::string& presented) {
    digest_ = crypto::secret_digest(presented);
    sql({{"SELECT t.session_id, t.used_at, t.expires_at, s.user_id, s.revoked_at, s.expires_at, "
          "u.email, u.disabled, s.amr, s.scope FROM identity_refresh_tokens t "
          "JOIN identity_sessions s ON s.id = t.session_id "
          "JOIN identity_users u ON u.id = s.user_id WHERE t.digest = $1",
          {digest_}}},
        true, [this](SqlResult& r) {
          if (!r.ok()) return unavailable(r);
          const auto& rows = r.statements[0].rows;
          const size_t w = ctx_->worker().index();
          if (rows.empty()) {
            svc_->m.refreshes_failed->add(w);
            return error(400, "invalid_grant", "the refresh token is unknown");
          }
          const auto& row = rows[0];
          session_id_ = store::sql_text(row, 0);
          user_id_ = store::sql_text(row, 3);
          email_ = store::sql_text(row, 6);
          session_expires_ = store::sql_int(row, 5);
          amr_ = store::sql_text(row, 8);
          scope_ = store::sql_text(row, 9);
          const int64_t now = now_s();
          if (!std::holds_alternative<std::monostate>(row[1])) return reused();
          if (!std::holds_alternative<std::monostate>(row[4]) || store::sql_int(row, 2) <= now ||
              session_expires_ <= now || store::sql_int(row, 7) != 0) {
            svc_->m.refreshes_failed->add(w);
            return error(400, "invalid_grant", "the session has ended");
          }
          rotate(now);
        });
  }

  // A refresh token used twice: one of the two holders is not the user. Both lose the session
  // (RFC 6819, 5.2.2.3; OAuth 2.0 Security BCP, 4.14.2).
  void reused() {
    svc_->m.refresh_reuse->add(ctx_->worker().index());
    ctx_->worker().log().log(observe::LogLevel::kWarn,
                             "identity: a refresh token was used again: session %s revoked",
                             session_id_.c_str());
    sql({{"UPDATE identity_sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
          {now_s(), session_id_}}},
        false, [this](SqlResult& r) {
          if (!r.ok()) return unavailable(r);
          error(400, "invalid_grant", "the refresh token was already used: the session is revoked");
        });
  }

  void rotate(int64_t now) {
    refresh_token_ = crypto::random_token(32);
    sql({{"UPDATE identity_refresh_tokens SET used_at = $1 WHERE digest = $2 AND used_at IS NULL",
          {now, digest_}, 1},
         {"UPDATE identity_sessions SET last_used_at = $1 WHERE id = $2 AND revoked_at IS NULL",
          {now, session_id_}, 1},
         {"INSERT INTO identity_refresh_tokens (digest, session_id, expires_at) "
          "VALUES ($1, $2, $3)",
          {crypto::secret_digest(refresh_token_), session_id_,
           std::min(now + svc_->o.refresh_ttl_s, session_expires_)}},
         {"SELECT role FROM identity_user_roles WHERE user_id = $1 ORDER BY role", {user_id_}}},
        false, [this](SqlResult& r) {
          if (r.error == SqlError::kConflict) {
            // Another request used the same token between our read and this write.
            if (r.failed_statement == 0) return reused();
            svc_->m.refreshes_failed->add(ctx_->worker().index());
            return error(400, "invalid_grant", "the session has ended");
          }
          if (!r.ok()) return unavailable(r);
          svc_->m.refreshes->add(ctx_->worker().index());
          issue(r.statements[3].rows);
        });
  }

  // The token response (RFC 6749, 5.1) with a fresh access token for the session.
  void issue(const std::vector<std::vector<store::SqlValue>>& role_rows) {
    const IdentityOptions& o = svc_->o;
    const int64_t now = now_s();
    json::array roles;
    for (const auto& row : role_rows) roles.emplace_back(store::sql_text(row, 0));
    json::object claims;
    claims["iss"] = o.issuer;
    claims["sub"] = user_id_;
    if (o.audiences.size() == 1) {
      claims["aud"] = o.audiences[0];
    } else {
      json::array aud;
      for (const auto& a : o.audiences) aud.emplace_back(a);
      claims["aud"] = std::move(aud);
    }
    claims["iat"] = now;
    claims["nbf"] = now;
    claims["exp"] = now + o.access_ttl_s;
    claims["jti"] = crypto::random_token(16);
    claims["sid"] = session_id_;
    claims["email"] = email_;
    claims["roles"] = std::move(roles);
    claims["scope"] = scope_;
    json::array amr;  // RFC 8176: "pwd", and "otp" + "mfa" after a second factor
    for (std::string_view m : {"pwd", "otp"}) {
      if (amr_.find(m) != std::string::npos) amr.emplace_back(m);
    }
    if (amr.size() > 1) amr.emplace_back("mfa");
    claims["amr"] = std::move(amr);
    const crypto::Jwk& key = svc_->keys->signer();
    json::object header{{"typ", "at+jwt"}, {"kid", key.kid()}};
    auto token = crypto::jws_sign(key, svc_->keys->algorithm(), json::serialize(header),
                                  json::serialize(claims));
    if (!token.ok()) return error(500, "server_error", "cannot sign the token");
    json::object out{{"access_token", token.value()},
                     {"token_type", "Bearer"},
                     {"expires_in", o.access_ttl_s},
                     {"refresh_token", refresh_token_},
                     {"scope", scope_}};
    reply(200, json::serialize(out));
  }

  // RFC 7009: the answer is 200 whether or not the token was known (nothing to learn from it).
  void revoke() {
    std::string token;
    if (has_media_type(ctx_->request(), "application/json")) {
      json::object in;
      if (!read_json(in)) return;
      token = member(in, "refresh_token");
    } else {
      std::map<std::string, std::string> form;
      std::string why;
      if (!has_media_type(ctx_->request(), "application/x-www-form-urlencoded") ||
          !parse_form(body_, form, why)) {
        return error(400, "invalid_request", "expected a form with token=...");
      }
      token = form.count("token") != 0 ? form["token"] : form["refresh_token"];
    }
    if (token.empty()) return error(400, "invalid_request", "the token is missing");
    sql({{"UPDATE identity_sessions SET revoked_at = $1 WHERE revoked_at IS NULL AND id = "
          "(SELECT session_id FROM identity_refresh_tokens WHERE digest = $2)",
          {now_s(), crypto::secret_digest(token)}}},
        false, [this](SqlResult& r) {
          if (!r.ok()) return unavailable(r);
          reply(200, "{}");
        });
  }

  // ---- endpoints for a signed-in user (Authorization: Bearer <access token>) ---------------

  void with_bearer() {
    std::string_view v = bearer_token(ctx_->request());
    if (v.empty()) {
      return error(401, "invalid_request", "an access token is needed (Authorization: Bearer)");
    }
    auto token = verify_access_token(*svc_, v);
    if (!token.ok()) return error(401, "invalid_token", token.error().message());
    session_id_ = token.value().sid;
    user_id_ = token.value().sub;
    const int64_t now = now_s();
    // The session must still be open: a revoked one's access tokens stop here at once.
    SqlStatement live{"SELECT u.email, u.email_verified FROM identity_sessions s "
                      "JOIN identity_users u ON u.id = s.user_id WHERE s.id = $1 AND "
                      "s.user_id = $2 AND s.revoked_at IS NULL AND s.expires_at > $3 AND "
                      "u.disabled = 0",
                      {session_id_, user_id_, now}};
    if (ep_ == Endpoint::kTotp || ep_ == Endpoint::kTotpConfirm) {
      return sql({std::move(live)}, true, [this](SqlResult& r) {
        if (!r.ok()) return unavailable(r);
        if (r.statements[0].rows.empty()) {
          return error(401, "invalid_token", "the session has ended");
        }
        totp_action();
      });
    }
    if (ep_ == Endpoint::kUserinfo) {
      return sql({std::move(live)}, true, [this](SqlResult& r) {
        if (!r.ok()) return unavailable(r);
        const auto& rows = r.statements[0].rows;
        if (rows.empty()) return error(401, "invalid_token", "the session has ended");
        json::object out{{"sub", user_id_},
                         {"email", store::sql_text(rows[0], 0)},
                         {"email_verified", store::sql_int(rows[0], 1) != 0}};
        reply(200, json::serialize(out));
      });
    }
    if (ep_ == Endpoint::kSessions && ctx_->request().method == "GET") {
      return sql({std::move(live),
                  {"SELECT id, created_at, last_used_at, expires_at, client_address, user_agent "
                   "FROM identity_sessions WHERE user_id = $1 AND revoked_at IS NULL AND "
                   "expires_at > $2 ORDER BY created_at, id",
                   {user_id_, now}}},
                 true, [this](SqlResult& r) {
                   if (!r.ok()) return unavailable(r);
                   if (r.statements[0].rows.empty()) {
                     return error(401, "invalid_token", "the session has ended");
                   }
                   json::array list;
                   for (const auto& row : r.statements[1].rows) {
                     list.emplace_back(json::object{
                         {"id", store::sql_text(row, 0)},
                         {"created_at", store::sql_int(row, 1)},
                         {"last_used_at", store::sql_int(row, 2)},
                         {"expires_at", store::sql_int(row, 3)},
                         {"client_address", store::sql_text(row, 4)},
                         {"user_agent", store::sql_text(row, 5)},
                         {"current", store::sql_text(row, 0) == session_id_}});
                   }
                   reply(200, json::serialize(json::object{{"sessions", std::move(list)}}));
                 });
    }
    // DELETE: one session of the user's, or all of them. The first statement is the
    // authorisation (the caller's session is live); it changes nothing.
    SqlStatement check{"UPDATE identity_sessions SET revoked_at = NULL WHERE id = $1 AND "
                       "user_id = $2 AND revoked_at IS NULL AND expires_at > $3",
                       {session_id_, user_id_, now}, 1};
    SqlStatement act =
        ep_ == Endpoint::kSession
            ? SqlStatement{"UPDATE identity_sessions SET revoked_at = $1 WHERE id = $2 AND "
                           "user_id = $3 AND revoked_at IS NULL",
                           {now, target_, user_id_}, 1}
            : SqlStatement{"UPDATE identity_sessions SET revoked_at = $1 WHERE user_id = $2 "
                           "AND revoked_at IS NULL",
                           {now, user_id_}};
    sql({std::move(check), std::move(act)}, false, [this](SqlResult& r) {
      if (r.error == SqlError::kConflict && r.failed_statement == 0) {
        return error(401, "invalid_token", "the session has ended");
      }
      if (r.error == SqlError::kConflict) return error(404, "not_found", "no such session");
      if (!r.ok()) return unavailable(r);
      json::object out{{"revoked", r.statements[1].changes}};
      reply(200, json::serialize(out));
    });
  }

  std::shared_ptr<const Service> svc_;
  pipeline::Handler* admin_ = nullptr;  // {prefix}/admin/...: the request is the admin API's
  Endpoint ep_ = Endpoint::kNone;
  std::string email_, password_, invite_, scope_, target_;
  std::string user_id_, session_id_, refresh_token_, digest_;
  std::string amr_ = "pwd";
  std::string otp_, recovery_, secret_, raw_secret_, challenge_token_;
  bool mfa_required_ = false;
  bool totp_enrolled_ = false;
  bool enrolling_ = false;  // acting on an enrolment challenge, not an access token
  int64_t session_expires_ = 0;
};

class IdentityFactory final : public pipeline::HandlerFactory {
 public:
  explicit IdentityFactory(std::shared_ptr<const Service> svc) : svc_(std::move(svc)) {}
  pipeline::Handler* create(core::Arena& arena) const override {
    return pipeline::arena_new<IdentityHandler>(arena, svc_);
  }

 private:
  std::shared_ptr<const Service> svc_;
};

std::string discovery_document(const IdentityOptions& o, crypto::JwsAlg alg) {
  json::object d;
  d["issuer"] = o.issuer;
  d["token_endpoint"] = o.issuer + "/token";
  d["jwks_uri"] = o.issuer + "/jwks.json";
  d["userinfo_endpoint"] = o.issuer + "/userinfo";
  d["revocation_endpoint"] = o.issuer + "/revoke";
  d["grant_types_supported"] = json::array{"password", "refresh_token", kMfaOtpGrant};
  d["response_types_supported"] = json::array{"token"};
  d["subject_types_supported"] = json::array{"public"};
  d["id_token_signing_alg_values_supported"] = json::array{jws_alg_name(alg)};
  d["token_endpoint_auth_methods_supported"] = json::array{"none"};
  d["scopes_supported"] = json::array{"openid", "profile", "email", "offline_access"};
  d["claims_supported"] = json::array{"sub", "iss", "aud", "exp", "iat", "email", "roles"};
  return json::serialize(d);
}

}  // namespace

std::unique_ptr<pipeline::HandlerFactory> IdentityServiceParser::parse(
    const core::ConfigNode& options, pipeline::BuildContext& ctx) const {
  IdentityOptions o = parse_identity_options(options);
  if (o.issuer.empty()) return nullptr;
  auto svc = std::make_shared<Service>();
  observe::Registry& reg = ctx.metrics();
  const char* events = "Identity service events by kind and outcome";
  svc->m.signups = reg.counter("citadel_identity_events_total", events,
                               "event=\"signup\",outcome=\"success\"");
  svc->m.signups_refused = reg.counter("citadel_identity_events_total", events,
                                       "event=\"signup\",outcome=\"failure\"");
  svc->m.logins = reg.counter("citadel_identity_events_total", events,
                              "event=\"login\",outcome=\"success\"");
  svc->m.logins_failed = reg.counter("citadel_identity_events_total", events,
                                     "event=\"login\",outcome=\"failure\"");
  svc->m.refreshes = reg.counter("citadel_identity_events_total", events,
                                 "event=\"refresh\",outcome=\"success\"");
  svc->m.refreshes_failed = reg.counter("citadel_identity_events_total", events,
                                        "event=\"refresh\",outcome=\"failure\"");
  svc->m.refresh_reuse = reg.counter("citadel_identity_events_total", events,
                                     "event=\"refresh_reuse\",outcome=\"failure\"");
  svc->m.logins_throttled = reg.counter("citadel_identity_events_total", events,
                                        "event=\"login\",outcome=\"throttled\"");
  svc->m.mfa_ok = reg.counter("citadel_identity_events_total", events,
                              "event=\"mfa\",outcome=\"success\"");
  svc->m.mfa_failed = reg.counter("citadel_identity_events_total", events,
                                  "event=\"mfa\",outcome=\"failure\"");
  svc->m.mfa_enrolled = reg.counter("citadel_identity_events_total", events,
                                    "event=\"mfa_enrolment\",outcome=\"success\"");
  svc->m.admin_calls = reg.counter("citadel_identity_admin_calls_total",
                                   "Admin API calls by outcome", "outcome=\"allowed\"");
  svc->m.admin_denied = reg.counter("citadel_identity_admin_calls_total",
                                    "Admin API calls by outcome", "outcome=\"denied\"");
  svc->m.store_errors = reg.counter("citadel_identity_store_errors_total",
                                    "Identity requests answered 503: the store failed");
  svc->discovery = discovery_document(o, o.algorithm);
  if (ctx.checking()) {
    svc->o = std::move(o);
    return std::make_unique<IdentityFactory>(std::move(svc));
  }
  auto db = stores_.sql();
  if (!db.ok()) {
    options.error("the identity service cannot open its store: " + db.error().message());
    return nullptr;
  }
  if (core::Status s = db.value()->migrate("identity", identity_migrations()); !s.ok()) {
    options.error("the identity service cannot prepare its tables: " + s.message());
    return nullptr;
  }
  auto keys = KeySet::load(*db.value(), o, now_s());
  if (!keys.ok()) {
    options.error("the identity service: " + keys.error().message());
    return nullptr;
  }
  // A hash to verify against when the email is unknown, made once per parameter set.
  const std::string params_key = "dummy/" + std::to_string(o.password.memory_kib) + "/" +
                                 std::to_string(o.password.iterations);
  svc->gate = ctx.state<HashGate>("hash-gate", [] { return std::make_shared<HashGate>(); });
  svc->dummy_hash = ctx.state<std::string>(params_key, [&] {
    auto h = crypto::password_hash(crypto::random_token(16), o.password);
    return std::make_shared<std::string>(h.ok() ? h.value() : std::string());
  });
  svc->db = std::move(db.value());
  svc->keys = std::move(keys.value());
  svc->o = std::move(o);
  return std::make_unique<IdentityFactory>(std::move(svc));
}

}  // namespace citadel::platform::identity
