#include "platform/identity/options.h"

#include <boost/url/parse.hpp>

namespace citadel::platform::identity {

IdentityOptions parse_identity_options(const core::ConfigNode& node) {
  IdentityOptions o;
  if (node.defined() && !node.expect_map()) return o;
  node.allow_keys({"issuer", "prefix", "audiences", "signup", "access_token_ttl",
                   "refresh_token_ttl", "session_ttl", "algorithm", "key_rotation", "password",
                   "mfa"});
  core::ConfigNode iss = node["issuer"];
  o.issuer = iss.str();
  std::string issuer_path;
  if (o.issuer.empty()) {
    iss.error("the identity service needs `issuer`, the public URL it answers at "
              "(such as https://example.com/auth)");
  } else {
    auto u = boost::urls::parse_absolute_uri(o.issuer);
    const bool local = u && (u->host() == "localhost" || u->host() == "127.0.0.1" ||
                             u->host() == "[::1]" || u->host() == "::1");
    if (!u || (u->scheme() != "https" && !(u->scheme() == "http" && local)) ||
        u->host().empty() || u->has_query() || u->has_fragment() || u->has_userinfo()) {
      iss.error("expected an https URL without query or fragment (http only for localhost), "
                "got \"" + o.issuer + "\"");
    } else {
      issuer_path = std::string(u->encoded_path());
    }
    while (!o.issuer.empty() && o.issuer.back() == '/') o.issuer.pop_back();
    while (!issuer_path.empty() && issuer_path.back() == '/') issuer_path.pop_back();
  }
  core::ConfigNode prefix = node["prefix"];
  o.prefix = prefix.str(issuer_path);
  while (!o.prefix.empty() && o.prefix.back() == '/') o.prefix.pop_back();
  if (!o.prefix.empty() && (o.prefix[0] != '/' || o.prefix.find_first_of("?#%") !=
                                                       std::string::npos)) {
    prefix.error("expected a path such as /auth");
  }
  o.audiences = node["audiences"].str_list();
  if (o.audiences.empty() && !o.issuer.empty()) o.audiences.push_back(o.issuer);
  const std::string signup = node["signup"].choice("open", {"open", "invite_only", "closed"});
  o.signup = signup == "closed"        ? Signup::kClosed
             : signup == "invite_only" ? Signup::kInviteOnly
                                       : Signup::kOpen;
  auto seconds = [&](const char* key, int64_t fallback, int64_t min_s, int64_t max_s) {
    core::ConfigNode n = node[key];
    const int64_t v = static_cast<int64_t>(n.nonzero_duration_ms(
                          static_cast<uint64_t>(fallback) * 1000)) / 1000;
    if (n.defined() && (v < min_s || v > max_s)) {
      n.error("expected between " + std::to_string(min_s) + "s and " + std::to_string(max_s) +
              "s");
      return fallback;
    }
    return v;
  };
  o.access_ttl_s = seconds("access_token_ttl", o.access_ttl_s, 30, 24 * 3600);
  o.refresh_ttl_s = seconds("refresh_token_ttl", o.refresh_ttl_s, 60, 365 * 24 * 3600);
  o.session_ttl_s = seconds("session_ttl", o.session_ttl_s, 60, 5 * 365 * 24 * 3600);
  o.key_rotation_s = seconds("key_rotation", o.key_rotation_s, 3600, 5 * 365 * 24 * 3600);
  const std::string alg = node["algorithm"].choice("EdDSA", {"EdDSA", "ES256", "HS256"});
  crypto::jws_alg_from_name(alg, o.algorithm);
  core::ConfigNode pw = node["password"];
  if (pw.defined() && pw.expect_map()) {
    pw.allow_keys({"memory", "iterations", "min_length"});
    // Argon2id's own floor is 8 KiB; below OWASP's 19 MiB / 2 passes is allowed for tests and
    // small machines, and said so in the docs.
    o.password.memory_kib = pw["memory"].size_bytes(o.password.memory_kib * 1024) / 1024;
    if (o.password.memory_kib < 8 || o.password.memory_kib > 4 * 1024 * 1024) {
      pw["memory"].error("expected between 8KiB and 4GiB");
    }
    o.password.iterations = static_cast<uint64_t>(
        pw["iterations"].integer(static_cast<int64_t>(o.password.iterations), 1, 100));
    o.min_password_length =
        static_cast<size_t>(pw["min_length"].integer(8, 1, 128));
  }
  core::ConfigNode mfa = node["mfa"];
  if (mfa.defined() && mfa.expect_map()) {
    mfa.allow_keys({"label", "required_roles", "window", "challenge_ttl"});
    o.mfa_label = mfa["label"].str(o.mfa_label);
    if (o.mfa_label.empty() || o.mfa_label.find(':') != std::string::npos) {
      mfa["label"].error("expected a name without ':' (authenticator apps split on it)");
    }
    o.mfa_required_roles = mfa["required_roles"].str_list();
    o.mfa_window = static_cast<int>(mfa["window"].integer(o.mfa_window, 0, 10));
    core::ConfigNode ttl = mfa["challenge_ttl"];
    o.mfa_challenge_ttl_s =
        static_cast<int64_t>(ttl.nonzero_duration_ms(300'000) / 1000);
    if (o.mfa_challenge_ttl_s < 30 || o.mfa_challenge_ttl_s > 3600) {
      ttl.error("expected between 30s and 1h");
    }
  }
  return o;
}

}  // namespace citadel::platform::identity
