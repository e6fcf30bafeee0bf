// Fuzzes the ClientHello server_name parser of the TLS-ALPN-01 callback (tls_context.h): the
// extension body comes from any client before any handshake succeeds. Checks what the callback
// relies on: a name found lies inside the input, is lowercase and has no trailing dot.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "http/transport/tls_context.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string name = citadel::http::client_hello_server_name(data, size);
  if (!name.empty()) {
    if (name.size() + 5 > size || name.back() == '.') std::abort();
    for (char c : name) {
      if (c >= 'A' && c <= 'Z') std::abort();
    }
  }
  return 0;
}
