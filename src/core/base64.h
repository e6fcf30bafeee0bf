// Base64 in the URL-safe alphabet without padding (RFC 4648, section 5), as JOSE and ACME write
// it.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace citadel::core {

std::string base64url_encode(std::string_view bytes);
// Strict: only the URL-safe alphabet, no padding, no whitespace, and the unused low bits of the
// last character zero (one encoding per value: a token cannot be altered into an equal one).
std::optional<std::string> base64url_decode(std::string_view text);

}  // namespace citadel::core
