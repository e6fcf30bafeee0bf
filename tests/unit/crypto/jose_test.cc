#include "crypto/jose.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <fstream>
#include <iterator>
#include <string>

#include "core/base64.h"

namespace citadel::crypto {
namespace {
namespace json = boost::json;

json::value load(const std::string& rel) {
  std::ifstream in(std::string(CITADEL_TESTDATA) + "/jose-cookbook/" + rel);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return json::parse(text);
}

// The key without its private members: what a verifier holds.
std::string public_part(const json::object& key) {
  json::object pub;
  for (const auto& kv : key) {
    const std::string k(kv.key());
    if (k == "d" || k == "p" || k == "q" || k == "dp" || k == "dq" || k == "qi") continue;
    pub[kv.key()] = kv.value();
  }
  return json::serialize(pub);
}

struct Case {
  const char* file;
  JwsAlg alg;
  bool reproducible;
};

class CookbookTest : public ::testing::TestWithParam<Case> {};

TEST_P(CookbookTest, VerifiesSignsAndRefusesEveryAlteredByte) {
  const Case& c = GetParam();
  json::value doc = load(c.file);
  const json::object& key_json = doc.at("input").at("key").as_object();
  auto priv = Jwk::parse(json::serialize(key_json));
  ASSERT_TRUE(priv.ok()) << priv.error().message();
  auto pub = Jwk::parse(public_part(key_json));
  ASSERT_TRUE(pub.ok()) << pub.error().message();
  EXPECT_EQ(pub.value().has_private(), c.alg == JwsAlg::kHS256);  // a shared secret is both
  const std::string compact(doc.at("output").at("compact").as_string());
  const std::string payload(doc.at("input").at("payload").as_string());
  JwsVerifyOptions opts;
  opts.allowed = {c.alg};
  auto v = jws_verify(compact, {&pub.value()}, opts);
  ASSERT_TRUE(v.ok()) << v.error().message();
  EXPECT_EQ(v.value().payload, payload);
  EXPECT_EQ(v.value().alg, c.alg);

  // Signing: the same bytes where the algorithm is deterministic; else a signature that
  // verifies.
  json::object members = doc.at("signing").at("protected").as_object();
  members.erase("alg");
  auto signed_ = jws_sign(priv.value(), c.alg, json::serialize(members), payload);
  ASSERT_TRUE(signed_.ok()) << signed_.error().message();
  if (c.reproducible) {
    EXPECT_EQ(signed_.value(), compact);
  }
  EXPECT_TRUE(jws_verify(signed_.value(), {&pub.value()}, opts).ok());

  // Any byte of header, payload or signature changed: refused.
  for (size_t i = 0; i < compact.size(); ++i) {
    if (compact[i] == '.') continue;
    std::string altered = compact;
    altered[i] = compact[i] == 'A' ? 'B' : 'A';
    EXPECT_FALSE(jws_verify(altered, {&pub.value()}, opts).ok()) << "byte " << i;
  }
  // Not allowed here, even with the right key.
  JwsVerifyOptions other;
  other.allowed = {c.alg == JwsAlg::kHS256 ? JwsAlg::kHS512 : JwsAlg::kHS256};
  EXPECT_FALSE(jws_verify(compact, {&pub.value()}, other).ok());
}

INSTANTIATE_TEST_SUITE_P(
    Rfc7520And8037, CookbookTest,
    ::testing::Values(Case{"jws/4_1.rsa_v15_signature.json", JwsAlg::kRS256, true},
                      Case{"jws/4_2.rsa-pss_signature.json", JwsAlg::kPS384, false},
                      Case{"jws/4_3.ecdsa_signature.json", JwsAlg::kES512, false},
                      Case{"jws/4_4.hmac-sha2_integrity_protection.json", JwsAlg::kHS256, true},
                      Case{"curve25519/jws.json", JwsAlg::kEdDSA, true}));

TEST(Jose, TokenAttacksAreRefused) {
  json::value rsa_doc = load("jws/4_1.rsa_v15_signature.json");
  const json::object& rsa_json = rsa_doc.at("input").at("key").as_object();
  auto rsa_pub = Jwk::parse(public_part(rsa_json));
  ASSERT_TRUE(rsa_pub.ok());
  JwsVerifyOptions any;
  any.allowed = {JwsAlg::kRS256, JwsAlg::kHS256, JwsAlg::kES256, JwsAlg::kEdDSA};
  const std::string body = core::base64url_encode(R"({"sub":"admin"})");

  // alg: none, with and without a signature.
  const std::string none = core::base64url_encode(R"({"alg":"none"})") + "." + body + ".";
  EXPECT_FALSE(jws_verify(none, {&rsa_pub.value()}, any).ok());
  // HS256 "signed" with the RSA public key's modulus as the secret (key confusion).
  json::object confused;
  confused["kty"] = "oct";
  confused["k"] = rsa_json.at("n");
  auto as_secret = Jwk::parse(json::serialize(confused));
  ASSERT_TRUE(as_secret.ok());
  auto forged = jws_sign(as_secret.value(), JwsAlg::kHS256, "{}", R"({"sub":"admin"})");
  ASSERT_TRUE(forged.ok());
  EXPECT_FALSE(jws_verify(forged.value(), {&rsa_pub.value()}, any).ok());
  // A key that names its algorithm is used for that one only.
  json::object hs_key = load("jws/4_4.hmac-sha2_integrity_protection.json")
                            .at("input").at("key").as_object();
  auto hs = Jwk::parse(json::serialize(hs_key));
  ASSERT_TRUE(hs.ok());
  EXPECT_TRUE(hs.value().fits(JwsAlg::kHS256));
  EXPECT_FALSE(hs.value().fits(JwsAlg::kHS512));
  // Unknown kid, crit, oversized, not three parts, padding.
  auto signed_ = jws_sign(hs.value(), JwsAlg::kHS256, R"({"kid":"nobody"})", "x");
  ASSERT_TRUE(signed_.ok());
  auto r = jws_verify(signed_.value(), {&hs.value()}, any);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("unknown key id"), std::string::npos);
  auto crit = jws_sign(hs.value(), JwsAlg::kHS256, R"({"crit":["exp"],"exp":1})", "x");
  ASSERT_TRUE(crit.ok());
  EXPECT_FALSE(jws_verify(crit.value(), {&hs.value()}, any).ok());
  auto ok = jws_sign(hs.value(), JwsAlg::kHS256, "{}", std::string(20000, 'x'));
  ASSERT_TRUE(ok.ok());
  EXPECT_FALSE(jws_verify(ok.value(), {&hs.value()}, any).ok());  // over 16 KiB
  EXPECT_FALSE(jws_verify("a.b", {&hs.value()}, any).ok());
  EXPECT_FALSE(jws_verify("a.b.c.d", {&hs.value()}, any).ok());
  auto small = jws_sign(hs.value(), JwsAlg::kHS256, "{}", "x");
  ASSERT_TRUE(small.ok());
  EXPECT_TRUE(jws_verify(small.value(), {&hs.value()}, any).ok());
  EXPECT_FALSE(jws_verify(small.value() + "=", {&hs.value()}, any).ok());
  // Keys that cannot be: short RSA, an Ed25519 x that is not d's.
  EXPECT_FALSE(Jwk::parse(R"({"kty":"RSA","n":"AQAB","e":"AQAB"})").ok());
  EXPECT_FALSE(Jwk::parse(R"({"kty":"OKP","crv":"Ed25519",)"
                          R"("x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",)"
                          R"("d":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"})")
                   .ok());
  EXPECT_FALSE(Jwk::parse(R"({"kty":"EC","crv":"P-256","x":"AA","y":"AA"})").ok());
  EXPECT_FALSE(Jwk::parse("[]").ok());
}

TEST(Jwk, GeneratedKeysSignAndTheirPublicHalvesVerify) {
  for (JwsAlg alg : {JwsAlg::kEdDSA, JwsAlg::kES256, JwsAlg::kHS256}) {
    auto text = generate_jwk(alg, "k1");
    ASSERT_TRUE(text.ok()) << text.error().message();
    auto key = Jwk::parse(text.value());
    ASSERT_TRUE(key.ok()) << key.error().message();
    EXPECT_TRUE(key.value().has_private());
    EXPECT_EQ(key.value().kid(), "k1");
    auto token = jws_sign(key.value(), alg, R"({"kid":"k1"})", R"({"sub":"u"})");
    ASSERT_TRUE(token.ok());
    JwsVerifyOptions only{{alg}};
    if (alg == JwsAlg::kHS256) {
      EXPECT_TRUE(key.value().public_json().empty());  // a secret is never published
      EXPECT_TRUE(jws_verify(token.value(), {&key.value()}, only).ok());
      continue;
    }
    const std::string pub = key.value().public_json();
    EXPECT_EQ(pub.find("\"d\""), std::string::npos) << pub;
    auto verifier = Jwk::parse(pub);
    ASSERT_TRUE(verifier.ok()) << pub;
    EXPECT_FALSE(verifier.value().has_private());
    EXPECT_TRUE(jws_verify(token.value(), {&verifier.value()}, only).ok());
    Jwk moved = std::move(key.value());  // the public half moves with the key
    EXPECT_EQ(moved.public_json(), pub);
    // Two generations never give the same key.
    EXPECT_NE(generate_jwk(alg, "k1").value(), text.value());
  }
  EXPECT_FALSE(generate_jwk(JwsAlg::kRS256, "k").ok());
}

TEST(Base64Url, StrictDecoding) {
  EXPECT_EQ(core::base64url_decode("Zm9vYmFy").value(), "foobar");
  EXPECT_EQ(core::base64url_decode("-_8").value(), "\xfb\xff");
  EXPECT_FALSE(core::base64url_decode("Zm9vYg==").has_value());  // padding
  EXPECT_FALSE(core::base64url_decode("Zm9vYh").has_value());    // non-zero leftover bits
  EXPECT_FALSE(core::base64url_decode("Zm9v+g").has_value());    // not the URL alphabet
  EXPECT_FALSE(core::base64url_decode("Z").has_value());
}

}  // namespace
}  // namespace citadel::crypto
