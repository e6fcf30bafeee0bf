#include "crypto/totp.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <fstream>
#include <iterator>
#include <string>

namespace citadel::crypto {
namespace {

boost::json::value load(const std::string& rel) {
  std::ifstream in(std::string(CITADEL_TESTDATA) + "/" + rel);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return boost::json::parse(text);
}

TEST(Totp, Rfc6238AppendixBVectors) {
  auto doc = load("totp/rfc6238.json");
  const auto& vectors = doc.at("vectors").as_array();
  ASSERT_EQ(vectors.size(), 18u);
  for (const auto& v : vectors) {
    const std::string alg(v.at("algorithm").as_string());
    TotpParams p;
    p.hash = alg == "SHA256" ? OtpHash::kSha256 : alg == "SHA512" ? OtpHash::kSha512
                                                                   : OtpHash::kSha1;
    p.digits = static_cast<int>(v.at("digits").as_int64());
    p.step = static_cast<int>(v.at("step").as_int64());
    const std::string secret(v.at("secret_ascii").as_string());
    const int64_t t = v.at("time").as_int64();
    const std::string want(v.at("totp").as_string());
    EXPECT_EQ(totp(secret, t, p), want) << alg << " at " << t;
    auto step = totp_match(secret, want, t, p, 0);
    ASSERT_TRUE(step.has_value());
    EXPECT_EQ(*step, t / p.step);
  }
}

TEST(Totp, DriftWindowAndRefusals) {
  const std::string secret = "12345678901234567890";
  TotpParams p;  // SHA-1, 6 digits, 30 s
  const int64_t now = 1'700'000'000;
  const std::string previous = totp(secret, now - 30, p);
  EXPECT_EQ(totp_match(secret, previous, now, p, 1), now / 30 - 1);
  EXPECT_FALSE(totp_match(secret, previous, now, p, 0).has_value());
  EXPECT_FALSE(totp_match(secret, totp(secret, now + 90, p), now, p, 1).has_value());
  EXPECT_FALSE(totp_match(secret, "12345", now, p).has_value());    // wrong length
  EXPECT_FALSE(totp_match(secret, "abcdef", now, p).has_value());
}

TEST(Totp, Base32AndTheOtpauthUri) {
  // RFC 4648, section 10.
  EXPECT_EQ(base32_encode("foobar"), "MZXW6YTBOI");
  EXPECT_EQ(base32_decode("MZXW6YTBOI======").value(), "foobar");
  EXPECT_EQ(base32_decode("mzxw6ytboi").value(), "foobar");
  EXPECT_FALSE(base32_decode("MZXW1").has_value());
  TotpParams p;
  EXPECT_EQ(otpauth_uri("Acme Co", "alice@example.com", "12345678901234567890", p),
            "otpauth://totp/Acme%20Co:alice%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
            "&issuer=Acme%20Co&algorithm=SHA1&digits=6&period=30");
}

}  // namespace
}  // namespace citadel::crypto
