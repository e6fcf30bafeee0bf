// ASCII case folding for protocol tokens (host names, header field names, certificate names):
// never locale-dependent, never touches bytes outside A-Z.
#pragma once

#include <string>

namespace citadel::core {

inline char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

inline std::string ascii_lower(std::string s) {
  for (char& c : s) c = ascii_lower(c);
  return s;
}

}  // namespace citadel::core
