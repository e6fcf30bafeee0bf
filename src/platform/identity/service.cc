#include "platform/identity/service.h"

#include <boost/json.hpp>
#include <ctime>

#include "core/ascii.h"
#include "crypto/jwt.h"
#include "http/headers.h"

namespace citadel::platform::identity {

namespace json = boost::json;

int64_t now_s() { return static_cast<int64_t>(::time(nullptr)); }

bool normalise_email(std::string_view in, std::string& out) {
  while (!in.empty() && (in.front() == ' ' || in.front() == '\t')) in.remove_prefix(1);
  while (!in.empty() && (in.back() == ' ' || in.back() == '\t')) in.remove_suffix(1);
  if (in.empty() || in.size() > 254) return false;
  const size_t at = in.find('@');
  if (at == 0 || at == std::string_view::npos || at + 1 == in.size() ||
      in.find('@', at + 1) != std::string_view::npos) {
    return false;
  }
  for (char c : in) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return false;
  }
  out = core::ascii_lower(std::string(in));
  return true;
}

std::string_view bearer_token(const http::RequestHead& request) {
  const http::HeaderField* auth = request.headers.find("authorization");
  std::string_view v = auth != nullptr ? auth->value : std::string_view();
  if (v.size() < 7 || !http::iequals(v.substr(0, 7), "Bearer ")) return {};
  v.remove_prefix(7);
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  return v;
}

core::Result<AccessToken> verify_access_token(const Service& svc, std::string_view token) {
  crypto::JwtRules rules;
  rules.algorithms = svc.keys->algorithms();
  rules.issuer = svc.o.issuer;
  rules.audiences = svc.o.audiences;
  rules.max_lifetime_s = svc.o.access_ttl_s + 60;
  auto claims = crypto::jwt_verify(token, svc.keys->verifiers(), rules, now_s());
  if (!claims.ok()) return claims.error();
  json::error_code ec;
  json::value payload = json::parse(claims.value().payload, ec);
  const json::value* sid = ec ? nullptr : payload.as_object().if_contains("sid");
  if (sid == nullptr || !sid->is_string() || claims.value().sub.empty()) {
    return core::Status::error("not a session's access token");
  }
  return AccessToken{claims.value().sub, std::string(sid->as_string())};
}

bool split_api_key(std::string_view key, std::string& prefix) {
  if (key.size() != kApiKeyMark.size() + 12 + 1 + 43 || key.substr(0, 8) != kApiKeyMark ||
      key[kApiKeyMark.size() + 12] != '_') {
    return false;
  }
  prefix = std::string(key.substr(kApiKeyMark.size(), 12));
  return true;
}

bool permission_grants(std::string_view held, std::string_view wanted) {
  if (held == "*") return true;
  const size_t h = held.find(':');
  const size_t w = wanted.find(':');
  if (h == std::string_view::npos || w == std::string_view::npos) return held == wanted;
  auto part = [](std::string_view a, std::string_view b) { return a == "*" || a == b; };
  return part(held.substr(0, h), wanted.substr(0, w)) &&
         part(held.substr(h + 1), wanted.substr(w + 1));
}

bool any_grants(const std::vector<std::string>& held, std::string_view wanted) {
  for (const auto& p : held) {
    if (permission_grants(p, wanted)) return true;
  }
  return false;
}

namespace {
bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '_' || c == '-';
}
}  // namespace

bool valid_permission(std::string_view p) {
  if (p == "*") return true;
  const size_t colon = p.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == p.size() || p.size() > 128 ||
      p.find(':', colon + 1) != std::string_view::npos) {
    return false;
  }
  for (size_t i = 0; i < p.size(); ++i) {
    if (i != colon && !name_char(p[i]) && p[i] != '*') return false;
  }
  // "*" stands for a whole part, never part of a word ("ord*:read" would read as a pattern).
  auto whole = [](std::string_view part) {
    return part == "*" || part.find('*') == std::string_view::npos;
  };
  return whole(p.substr(0, colon)) && whole(p.substr(colon + 1));
}

bool valid_name(std::string_view n) {
  if (n.empty() || n.size() > 64) return false;
  for (char c : n) {
    if (!name_char(c)) return false;
  }
  return true;
}

}  // namespace citadel::platform::identity
