// Fuzzes the ClientHello extension parsers of the TLS-ALPN-01 callback (tls_context.h): the
// server_name and ALPN extension bodies come from any client before any handshake succeeds.
// Checks what the callback relies on: a name found lies inside the input, is lowercase and
// has no trailing dot; the ALPN scan and the name agree with a slow reference reading.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "http/transport/tls_context.h"

namespace {

// The reference: RFC 7301's ProtocolNameList read one field at a time.
bool reference_alpn(const uint8_t* p, size_t len, std::string_view proto) {
  if (len < 2) return false;
  size_t end = 2 + ((static_cast<size_t>(p[0]) << 8) | p[1]);
  if (end > len) end = len;
  for (size_t i = 2; i < end;) {
    size_t n = p[i];
    if (i + 1 + n > end) return false;
    if (std::string_view(reinterpret_cast<const char*>(p + i + 1), n) == proto) return true;
    i += 1 + n;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using citadel::http::client_hello_offers_alpn;
  using citadel::http::client_hello_server_name;
  for (std::string_view proto : {std::string_view("acme-tls/1"), std::string_view("h2"),
                                 std::string_view("")}) {
    if (client_hello_offers_alpn(data, size, proto) != reference_alpn(data, size, proto)) {
      std::abort();
    }
  }
  std::string name = client_hello_server_name(data, size);
  if (!name.empty()) {
    if (name.size() + 5 > size || name.back() == '.') std::abort();
    for (char c : name) {
      if (c >= 'A' && c <= 'Z') std::abort();
    }
  }
  return 0;
}
