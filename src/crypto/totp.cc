#include "crypto/totp.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

namespace citadel::crypto {
namespace {

const EVP_MD* md_of(OtpHash h) {
  switch (h) {
    case OtpHash::kSha256:
      return EVP_sha256();
    case OtpHash::kSha512:
      return EVP_sha512();
    case OtpHash::kSha1:
    default:
      return EVP_sha1();
  }
}

// Percent-encoding for a URI component: unreserved characters stay.
std::string uri_escape(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_' || c == '~';
    if (keep) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace

std::string hotp(std::string_view secret, uint64_t counter, OtpHash hash, int digits) {
  digits = digits < 1 ? 1 : digits > 9 ? 9 : digits;  // 10^9 still fits the 31-bit value
  unsigned char msg[8];
  for (int i = 7; i >= 0; --i) {
    msg[i] = static_cast<unsigned char>(counter & 0xff);
    counter >>= 8;
  }
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(md_of(hash), secret.data(), static_cast<int>(secret.size()), msg, sizeof msg, mac, &len);
  // Dynamic truncation (RFC 4226, 5.3).
  const unsigned offset = mac[len - 1] & 0x0f;
  const uint32_t bin = (static_cast<uint32_t>(mac[offset] & 0x7f) << 24) |
                       (static_cast<uint32_t>(mac[offset + 1]) << 16) |
                       (static_cast<uint32_t>(mac[offset + 2]) << 8) | mac[offset + 3];
  uint32_t mod = 1;
  for (int i = 0; i < digits; ++i) mod *= 10;
  std::string code = std::to_string(bin % mod);
  return std::string(static_cast<size_t>(digits) - code.size(), '0') + code;
}

std::string totp(std::string_view secret, int64_t unix_time, const TotpParams& p) {
  const int64_t step = unix_time >= 0 ? unix_time / p.step : 0;
  return hotp(secret, static_cast<uint64_t>(step), p.hash, p.digits);
}

std::optional<int64_t> totp_match(std::string_view secret, std::string_view code,
                                  int64_t unix_time, const TotpParams& p, int window) {
  if (code.size() != static_cast<size_t>(p.digits)) return std::nullopt;
  const int64_t now = unix_time / p.step;
  std::optional<int64_t> found;
  // Every candidate is computed and compared, matched or not: the time taken says nothing about
  // which step (if any) matched.
  for (int64_t s = now - window; s <= now + window; ++s) {
    if (s < 0) continue;
    const std::string want = hotp(secret, static_cast<uint64_t>(s), p.hash, p.digits);
    if (CRYPTO_memcmp(want.data(), code.data(), want.size()) == 0 && !found) found = s;
  }
  return found;
}

std::string base32_encode(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    buffer = (buffer << 8) | c;
    bits += 8;
    while (bits >= 5) {
      out += kAlphabet[(buffer >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += kAlphabet[(buffer << (5 - bits)) & 31];
  return out;
}

std::optional<std::string> base32_decode(std::string_view text) {
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=' || c == ' ') continue;
    int v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a';
    else if (c >= '2' && c <= '7') v = c - '2' + 26;
    else return std::nullopt;
    buffer = (buffer << 5) | static_cast<uint32_t>(v);
    bits += 5;
    if (bits >= 8) {
      out += static_cast<char>((buffer >> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return out;
}

std::string otpauth_uri(std::string_view issuer, std::string_view account,
                        std::string_view secret, const TotpParams& p) {
  const char* alg = p.hash == OtpHash::kSha256   ? "SHA256"
                    : p.hash == OtpHash::kSha512 ? "SHA512"
                                                 : "SHA1";
  return "otpauth://totp/" + uri_escape(issuer) + ":" + uri_escape(account) +
         "?secret=" + base32_encode(secret) + "&issuer=" + uri_escape(issuer) +
         "&algorithm=" + alg + "&digits=" + std::to_string(p.digits) +
         "&period=" + std::to_string(p.step);
}

}  // namespace citadel::crypto
