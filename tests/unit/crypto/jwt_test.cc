#include "crypto/jwt.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <memory>
#include <string>

#include "core/base64.h"

namespace citadel::crypto {
namespace {

constexpr int64_t kNow = 1'800'000'000;

class JwtTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto k = Jwk::parse(R"({"kty":"OKP","crv":"Ed25519","kid":"k1",)"
                        R"("x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",)"
                        R"("d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"})");
    ASSERT_TRUE(k.ok()) << k.error().message();
    key = std::make_unique<Jwk>(std::move(k.value()));
    rules.algorithms = {JwsAlg::kEdDSA};
    rules.issuer = "https://id.example.com";
    rules.audiences = {"api"};
  }
  std::string token(const std::string& claims, const std::string& header = R"({"kid":"k1"})") {
    auto t = jws_sign(*key, JwsAlg::kEdDSA, header, claims);
    EXPECT_TRUE(t.ok());
    return t.value();
  }
  core::Result<JwtClaims> verify(const std::string& t) {
    return jwt_verify(t, {key.get()}, rules, kNow);
  }
  std::unique_ptr<Jwk> key;
  JwtRules rules;
};

TEST_F(JwtTest, AGoodTokenGivesItsClaims) {
  auto c = verify(token(R"({"iss":"https://id.example.com","sub":"u1","aud":["web","api"],)"
                        R"("exp":1800000300,"iat":1800000000,"nbf":1800000000,"jti":"j",)"
                        R"("roles":["admin"]})"));
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_EQ(c.value().sub, "u1");
  EXPECT_EQ(c.value().exp, 1'800'000'300);
  EXPECT_EQ(c.value().aud, (std::vector<std::string>{"web", "api"}));
  EXPECT_EQ(c.value().kid, "k1");
  EXPECT_NE(c.value().payload.find("\"roles\""), std::string::npos);
  // aud as one string; fractional dates.
  EXPECT_TRUE(
      verify(token(R"({"iss":"https://id.example.com","aud":"api","exp":1800000300.9})")).ok());
}

TEST_F(JwtTest, ClaimsThatDoNotHoldAreRefused) {
  const std::string base = R"("iss":"https://id.example.com","aud":"api")";
  struct Bad {
    std::string claims;
    const char* why;
  } cases[] = {
      {"{" + base + R"(,"exp":1799999900})", "expired"},       // 100 s ago, beyond the leeway
      {"{" + base + "}", "no expiry"},
      {"{" + base + R"(,"exp":1800000300,"nbf":1800000100})", "not valid yet"},
      {"{" + base + R"(,"exp":1800000300,"iat":1800000100})", "in the future"},
      {R"({"iss":"https://evil.example.com","aud":"api","exp":1800000300})", "another issuer"},
      {R"({"iss":"https://id.example.com","aud":"web","exp":1800000300})", "audience"},
      {R"({"iss":"https://id.example.com","aud":["web"],"exp":1800000300})", "audience"},
      {"{" + base + R"(,"exp":"1800000300"})", "numbers"},
      {"{" + base + R"(,"exp":1800000300,"sub":42})", "strings"},
      {"{" + base + R"(,"exp":1800000300,"aud":"api"})", "twice"},     // duplicate claim
      {R"({"iss":"https://id.example.com","aud":[1],"exp":1800000300})", "aud holds strings"},
      {"[1,2]", "not a JSON object"},
  };
  for (const auto& c : cases) {
    auto r = verify(token(c.claims));
    ASSERT_FALSE(r.ok()) << c.claims;
    EXPECT_NE(r.error().message().find(c.why), std::string::npos)
        << c.claims << ": " << r.error().message();
  }
  // Within the leeway: accepted.
  EXPECT_TRUE(verify(token("{" + base + R"(,"exp":1799999950})")).ok());
  // A duplicate header member (signed by hand: jws_sign would not write one).
  {
    const std::string secret(32, 's');
    auto hs = Jwk::parse(R"({"kty":"oct","k":")" + core::base64url_encode(secret) + R"("})");
    ASSERT_TRUE(hs.ok());
    const std::string input =
        core::base64url_encode(R"({"alg":"HS256","alg":"HS256"})") + "." +
        core::base64url_encode("{" + base + R"(,"exp":1800000300})");
    unsigned char mac[32];
    unsigned int len = 0;
    HMAC(EVP_sha256(), secret.data(), 32, reinterpret_cast<const unsigned char*>(input.data()),
         input.size(), mac, &len);
    const std::string t =
        input + "." + core::base64url_encode(std::string(reinterpret_cast<char*>(mac), len));
    JwtRules hs_rules = rules;
    hs_rules.algorithms = {JwsAlg::kHS256};
    auto r = jwt_verify(t, {&hs.value()}, hs_rules, kNow);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find("twice"), std::string::npos) << r.error().message();
  }
  // Too long a life.
  rules.max_lifetime_s = 3600;
  EXPECT_FALSE(verify(token("{" + base + R"(,"iat":1800000000,"exp":1800090000})")).ok());
}

TEST(JsonDuplicates, NestedAndEscapedNames) {
  EXPECT_TRUE(json_without_duplicate_members(R"({"a":1,"b":{"a":2},"c":[{"a":1},{"a":2}]})"));
  EXPECT_FALSE(json_without_duplicate_members(R"({"a":1,"b":{"x":1,"x":2}})"));
  EXPECT_FALSE(json_without_duplicate_members(R"({"a":1,"\u0061":2})"));  // the same name
  EXPECT_FALSE(json_without_duplicate_members(R"({"a":1)"));
  EXPECT_FALSE(json_without_duplicate_members(R"({"a":1} x)"));
}

}  // namespace
}  // namespace citadel::crypto
