// One-time passwords: HOTP (RFC 4226) and TOTP (RFC 6238), the base32 secrets authenticator apps
// take, and the otpauth:// URI they scan (Google Authenticator's key-uri format).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace citadel::crypto {

enum class OtpHash : uint8_t { kSha1, kSha256, kSha512 };

struct TotpParams {
  OtpHash hash = OtpHash::kSha1;  // what every authenticator app supports
  int digits = 6;                 // 6 to 8
  int step = 30;                  // seconds per code
};

// The HOTP value of `counter` under `secret`, `digits` long with leading zeros.
std::string hotp(std::string_view secret, uint64_t counter, OtpHash hash, int digits);
// The TOTP code for the time step holding `unix_time` (T0 = 0).
std::string totp(std::string_view secret, int64_t unix_time, const TotpParams& params);

// The time step `code` is valid for, within `window` steps either side of `unix_time` (clock
// drift), compared in constant time; nullopt when none matches. The caller refuses a step it has
// already accepted (replay).
std::optional<int64_t> totp_match(std::string_view secret, std::string_view code,
                                  int64_t unix_time, const TotpParams& params, int window = 1);

// RFC 4648 base32 (upper case, no padding on output; padding and lower case taken on input);
// nullopt for a character outside the alphabet.
std::string base32_encode(std::string_view bytes);
std::optional<std::string> base32_decode(std::string_view text);

// otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=...&algorithm=...&digits=...&period=...
std::string otpauth_uri(std::string_view issuer, std::string_view account,
                        std::string_view secret, const TotpParams& params);

}  // namespace citadel::crypto
