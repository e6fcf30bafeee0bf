#include "http/client/url.h"

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

namespace citadel::http::client {
namespace {

// Host names as DNS takes them (RFC 1123 letters, digits, hyphen and dot; the underscore seen
// in service names too). Anything else a URL may percent-encode into a host is refused here
// rather than handed to a resolver.
bool valid_host_name(std::string_view h) {
  if (h.empty() || h.size() > 253) return false;
  for (char c : h) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_';
    if (!ok) return false;
  }
  return h.front() != '.' && h.find("..") == std::string_view::npos;
}

}  // namespace

core::Result<Url> parse_url(std::string_view text) {
  // Boost.URL reports errors through its result type; nothing here throws.
  auto parsed = boost::urls::parse_absolute_uri(boost::urls::string_view(text.data(), text.size()));
  if (!parsed) {
    // parse_absolute_uri refuses a fragment; parse_uri takes one (which is then dropped).
    parsed = boost::urls::parse_uri(boost::urls::string_view(text.data(), text.size()));
    if (!parsed) return core::Status::error("invalid URL: " + parsed.error().message());
  }
  const boost::urls::url_view& u = *parsed;
  Url out;
  if (u.scheme_id() == boost::urls::scheme::https) {
    out.https = true;
    out.port = 443;
  } else if (u.scheme_id() != boost::urls::scheme::http) {
    return core::Status::error("unsupported URL scheme \"" + std::string(u.scheme()) +
                               "\" (expected http or https)");
  }
  if (!u.has_authority()) return core::Status::error("URL has no host");
  if (u.has_userinfo()) return core::Status::error("URL carries user info (not supported)");
  switch (u.host_type()) {
    case boost::urls::host_type::ipv4:
      out.host = u.host_ipv4_address().to_string();
      out.host_is_ip = true;
      break;
    case boost::urls::host_type::ipv6:
      out.host = u.host_ipv6_address().to_string();
      out.host_is_ip = true;
      break;
    case boost::urls::host_type::name: {
      std::string name = u.host_name();
      for (char& c : name) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      }
      // A trailing dot names the same host (fully qualified).
      if (!name.empty() && name.back() == '.') name.pop_back();
      if (!valid_host_name(name)) return core::Status::error("URL has an invalid host name");
      out.host = std::move(name);
      break;
    }
    default:
      return core::Status::error("URL has an unsupported host");
  }
  if (u.has_port() && !u.port().empty()) {
    // Boost.URL's port_number() wraps values past 65535; read the digits here.
    uint32_t port = 0;
    for (char c : u.port()) {
      port = port * 10 + static_cast<uint32_t>(c - '0');  // the grammar allows digits only
      if (port > 65535) break;
    }
    if (port == 0 || port > 65535) return core::Status::error("URL port out of range");
    out.port = static_cast<uint16_t>(port);
  }
  out.authority = u.host_type() == boost::urls::host_type::ipv6 ? "[" + out.host + "]" : out.host;
  if (out.port != (out.https ? 443 : 80)) out.authority += ":" + std::to_string(out.port);
  std::string_view path(u.encoded_path().data(), u.encoded_path().size());
  out.target = path.empty() ? "/" : std::string(path);
  if (u.has_query()) {
    out.target += '?';
    out.target.append(u.encoded_query().data(), u.encoded_query().size());
  }
  return out;
}

}  // namespace citadel::http::client
