#include "crypto/jwt.h"

#include <boost/json.hpp>
#include <boost/json/basic_parser_impl.hpp>
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace citadel::crypto {
namespace json = boost::json;
namespace {

// A basic_parser handler that keeps the member names of each open object and stops at the first
// repeated one.
struct DuplicateCheck {
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);
  std::vector<std::set<std::string>> open;
  std::string key;
  bool duplicate = false;

  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }
  bool on_object_begin(json::error_code&) {
    open.emplace_back();
    return open.size() <= 64;  // deeper nesting than any token needs
  }
  bool on_object_end(std::size_t, json::error_code&) {
    open.pop_back();
    return true;
  }
  bool on_array_begin(json::error_code&) { return true; }
  bool on_array_end(std::size_t, json::error_code&) { return true; }
  bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
    key.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, json::error_code&) {
    key.append(s.data(), s.size());
    const bool fresh = open.back().insert(key).second;
    key.clear();
    duplicate = duplicate || !fresh;
    return fresh;
  }
  bool on_string_part(json::string_view, std::size_t, json::error_code&) { return true; }
  bool on_string(json::string_view, std::size_t, json::error_code&) { return true; }
  bool on_number_part(json::string_view, json::error_code&) { return true; }
  bool on_int64(std::int64_t, json::string_view, json::error_code&) { return true; }
  bool on_uint64(std::uint64_t, json::string_view, json::error_code&) { return true; }
  bool on_double(double, json::string_view, json::error_code&) { return true; }
  bool on_bool(bool, json::error_code&) { return true; }
  bool on_null(json::error_code&) { return true; }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }
};

core::Status fail(const std::string& why) { return core::Status::error("jwt: " + why); }

// A NumericDate claim (RFC 7519, 2): seconds, fractions dropped; false when present but not a
// number.
bool numeric_date(const json::object& o, std::string_view name, int64_t& out) {
  const json::value* v = o.if_contains(name);
  if (v == nullptr) return true;
  if (v->is_int64()) {
    out = v->get_int64();
  } else if (v->is_uint64() && v->get_uint64() <= static_cast<uint64_t>(INT64_MAX)) {
    out = static_cast<int64_t>(v->get_uint64());
  } else if (v->is_double() && std::isfinite(v->get_double()) &&
             std::fabs(v->get_double()) < 9e18) {
    out = static_cast<int64_t>(std::floor(v->get_double()));
  } else {
    return false;
  }
  return true;
}

bool string_claim(const json::object& o, std::string_view name, std::string& out) {
  const json::value* v = o.if_contains(name);
  if (v == nullptr) return true;
  if (!v->is_string()) return false;
  out = std::string(v->get_string());
  return true;
}

}  // namespace

bool json_without_duplicate_members(std::string_view text) {
  json::basic_parser<DuplicateCheck> p(json::parse_options{});
  json::error_code ec;
  const size_t n = p.write_some(false, text.data(), text.size(), ec);
  return !ec && n == text.size() && !p.handler().duplicate;
}

core::Result<JwtClaims> jwt_verify(std::string_view token, const std::vector<const Jwk*>& keys,
                                   const JwtRules& rules, int64_t now) {
  JwsVerifyOptions opts;
  opts.allowed = rules.algorithms;
  opts.max_size = rules.max_size;
  auto jws = jws_verify(token, keys, opts);
  if (!jws.ok()) return jws.error();
  if (!json_without_duplicate_members(jws.value().header) ||
      !json_without_duplicate_members(jws.value().payload)) {
    return fail("a header or claim appears twice");
  }
  json::error_code ec;
  json::value v = json::parse(jws.value().payload, ec);
  if (ec || !v.is_object()) return fail("the claims are not a JSON object");
  const json::object& o = v.as_object();
  JwtClaims c;
  c.kid = jws.value().kid;
  if (!string_claim(o, "iss", c.iss) || !string_claim(o, "sub", c.sub) ||
      !string_claim(o, "jti", c.jti)) {
    return fail("iss, sub and jti are strings");
  }
  if (!numeric_date(o, "exp", c.exp) || !numeric_date(o, "nbf", c.nbf) ||
      !numeric_date(o, "iat", c.iat)) {
    return fail("exp, nbf and iat are numbers");
  }
  if (const json::value* aud = o.if_contains("aud")) {
    if (aud->is_string()) {
      c.aud.emplace_back(aud->get_string());
    } else if (aud->is_array()) {
      for (const auto& a : aud->get_array()) {
        if (!a.is_string()) return fail("aud holds strings");
        c.aud.emplace_back(a.get_string());
      }
    } else {
      return fail("aud is a string or a list of strings");
    }
  }
  const bool has_exp = o.contains("exp");
  if (rules.require_exp && !has_exp) return fail("the token has no expiry");
  if (has_exp && now >= c.exp + rules.leeway_s) return fail("the token has expired");
  if (o.contains("nbf") && now + rules.leeway_s < c.nbf) {
    return fail("the token is not valid yet");
  }
  if (o.contains("iat") && now + rules.leeway_s < c.iat) {
    return fail("the token is issued in the future");
  }
  if (rules.max_lifetime_s > 0 && has_exp &&
      c.exp - (o.contains("iat") ? c.iat : now) > rules.max_lifetime_s + rules.leeway_s) {
    return fail("the token lives longer than allowed");
  }
  if (!rules.issuer.empty() && c.iss != rules.issuer) return fail("another issuer");
  if (!rules.audiences.empty()) {
    bool any = false;
    for (const auto& a : c.aud) {
      for (const auto& want : rules.audiences) any = any || a == want;
    }
    if (!any) return fail("not for this audience");
  }
  c.payload = std::move(jws.value().payload);
  return c;
}

}  // namespace citadel::crypto
