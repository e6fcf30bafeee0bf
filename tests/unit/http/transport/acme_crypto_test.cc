#include "http/transport/acme_crypto.h"

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <string>

namespace citadel::http::acme {
namespace {

std::string from_base64url(std::string s) {
  for (char& c : s) c = c == '-' ? '+' : c == '_' ? '/' : c;
  const size_t pad = (4 - s.size() % 4) % 4;
  s.append(pad, '=');
  std::string out(s.size(), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(s.data()),
                          static_cast<int>(s.size()));
  out.resize(static_cast<size_t>(n) - pad);  // DecodeBlock counts the padding as zero bytes
  return out;
}

// Verifies an ES256 r || s signature with OpenSSL's own ECDSA over DER.
bool verify_es256(const EcKey& key, std::string_view data, const std::string& sig) {
  if (sig.size() != 64) return false;
  ECDSA_SIG* s = ECDSA_SIG_new();
  ECDSA_SIG_set0(s, BN_bin2bn(reinterpret_cast<const unsigned char*>(sig.data()), 32, nullptr),
                 BN_bin2bn(reinterpret_cast<const unsigned char*>(sig.data()) + 32, 32, nullptr));
  unsigned char* der = nullptr;
  int len = i2d_ECDSA_SIG(s, &der);
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  bool ok = EVP_DigestVerifyInit(md, nullptr, EVP_sha256(), nullptr, key.native()) == 1 &&
            EVP_DigestVerify(md, der, static_cast<size_t>(len),
                             reinterpret_cast<const unsigned char*>(data.data()),
                             data.size()) == 1;
  EVP_MD_CTX_free(md);
  OPENSSL_free(der);
  ECDSA_SIG_free(s);
  return ok;
}

TEST(AcmeCrypto, Base64UrlMatchesRfc4648Vectors) {
  // RFC 4648, section 10, in the URL alphabet without padding.
  EXPECT_EQ(base64url(""), "");
  EXPECT_EQ(base64url("f"), "Zg");
  EXPECT_EQ(base64url("fo"), "Zm8");
  EXPECT_EQ(base64url("foo"), "Zm9v");
  EXPECT_EQ(base64url("foob"), "Zm9vYg");
  EXPECT_EQ(base64url("fooba"), "Zm9vYmE");
  EXPECT_EQ(base64url("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64url("\xfb\xff"), "-_8");
}

TEST(AcmeCrypto, JwkThumbprintAndSignatures) {
  auto key = EcKey::generate();
  ASSERT_TRUE(key.ok());
  const std::string jwk = key.value().jwk();
  // RFC 7638: the required members only, in lexicographic order, no whitespace.
  ASSERT_EQ(jwk.rfind(R"({"crv":"P-256","kty":"EC","x":")", 0), 0u) << jwk;
  EXPECT_EQ(jwk.find(' '), std::string::npos);
  EXPECT_EQ(key.value().thumbprint(), base64url(sha256(jwk)));
  EXPECT_EQ(key.value().thumbprint().size(), 43u);

  auto sig = key.value().sign("payload");
  ASSERT_TRUE(sig.ok());
  EXPECT_TRUE(verify_es256(key.value(), "payload", sig.value()));
  EXPECT_FALSE(verify_es256(key.value(), "payloaD", sig.value()));

  // The key survives a trip through PEM.
  auto again = EcKey::from_pem(key.value().private_pem());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.value().jwk(), jwk);
}

TEST(AcmeCrypto, FlattenedJwsVerifies) {
  auto key = EcKey::generate();
  ASSERT_TRUE(key.ok());
  auto body = jws(key.value(), R"({"alg":"ES256","nonce":"n","url":"https://a/b"})", "{}");
  ASSERT_TRUE(body.ok());
  const std::string& b = body.value();
  auto field = [&](const std::string& name) {
    size_t at = b.find("\"" + name + "\":\"");
    size_t start = at + name.size() + 4;
    return b.substr(start, b.find('"', start) - start);
  };
  EXPECT_EQ(from_base64url(field("protected")),
            R"({"alg":"ES256","nonce":"n","url":"https://a/b"})");
  EXPECT_EQ(field("payload"), base64url("{}"));
  EXPECT_TRUE(verify_es256(key.value(), field("protected") + "." + field("payload"),
                           from_base64url(field("signature"))));
  // A POST-as-GET has an empty payload.
  auto get = jws(key.value(), "{}", "");
  ASSERT_TRUE(get.ok());
  EXPECT_NE(get.value().find(R"("payload":"")"), std::string::npos);
}

TEST(AcmeCrypto, OnlyP256KeysAreAccounts) {
  EVP_PKEY* p384 = EVP_EC_gen("P-384");
  BIO* out = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(out, p384, nullptr, nullptr, 0, nullptr, nullptr);
  char* p = nullptr;
  long n = BIO_get_mem_data(out, &p);
  auto r = EcKey::from_pem(std::string(p, static_cast<size_t>(n)));
  EXPECT_FALSE(r.ok());
  BIO_free(out);
  EVP_PKEY_free(p384);
  EXPECT_FALSE(EcKey::from_pem("not a key").ok());
}

TEST(AcmeCrypto, CsrNamesEveryDomainAndIsSigned) {
  auto key = EcKey::generate();
  ASSERT_TRUE(key.ok());
  auto der = csr_der(key.value(), {"a.example", "b.example"});
  ASSERT_TRUE(der.ok());
  const auto* p = reinterpret_cast<const unsigned char*>(der.value().data());
  X509_REQ* req = d2i_X509_REQ(nullptr, &p, static_cast<long>(der.value().size()));
  ASSERT_NE(req, nullptr);
  EXPECT_EQ(X509_REQ_verify(req, key.value().native()), 1);
  STACK_OF(X509_EXTENSION)* exts = X509_REQ_get_extensions(req);
  auto* sans = static_cast<GENERAL_NAMES*>(X509V3_get_d2i(exts, NID_subject_alt_name, nullptr,
                                                          nullptr));
  ASSERT_NE(sans, nullptr);
  EXPECT_EQ(sk_GENERAL_NAME_num(sans), 2);
  GENERAL_NAMES_free(sans);
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  X509_REQ_free(req);
  EXPECT_FALSE(csr_der(key.value(), {}).ok());
}

TEST(AcmeCrypto, TlsAlpnChallengeCertificateCarriesTheAcmeIdentifier) {
  auto key = EcKey::generate();
  ASSERT_TRUE(key.ok());
  const std::string digest = sha256("token.thumbprint");
  auto pem = self_signed(key.value(), {"a.example"}, 7, digest);
  ASSERT_TRUE(pem.ok());
  BIO* in = BIO_new_mem_buf(pem.value().data(), static_cast<int>(pem.value().size()));
  X509* x = PEM_read_bio_X509(in, nullptr, nullptr, nullptr);
  BIO_free(in);
  ASSERT_NE(x, nullptr);
  ASN1_OBJECT* oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
  int at = X509_get_ext_by_OBJ(x, oid, -1);
  ASSERT_GE(at, 0);
  X509_EXTENSION* ext = X509_get_ext(x, at);
  EXPECT_EQ(X509_EXTENSION_get_critical(ext), 1);
  ASN1_OCTET_STRING* v = X509_EXTENSION_get_data(ext);
  // RFC 8737, 3: the extension's value is the DER OCTET STRING of the 32-byte digest.
  std::string value(reinterpret_cast<const char*>(ASN1_STRING_get0_data(v)),
                    static_cast<size_t>(ASN1_STRING_length(v)));
  EXPECT_EQ(value, std::string("\x04\x20", 2) + digest);
  ASN1_OBJECT_free(oid);
  X509_free(x);

  auto info = certificate_info(pem.value());
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info.value().self_signed);
  EXPECT_EQ(info.value().names, std::vector<std::string>{"a.example"});
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  EXPECT_NEAR(static_cast<double>(info.value().not_after), static_cast<double>(now + 7 * 86400),
              60.0);
  EXPECT_TRUE(key_matches(pem.value(), key.value().private_pem()));
  auto other = EcKey::generate();
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(key_matches(pem.value(), other.value().private_pem()));
}

TEST(AcmeCrypto, ChainChecksRefuseWhatCannotBeServed) {
  auto key = EcKey::generate();
  ASSERT_TRUE(key.ok());
  auto self = self_signed(key.value(), {"a.example"}, 7);
  ASSERT_TRUE(self.ok());
  EXPECT_NE(check_chain(self.value()).error().message().find("self-signed"), std::string::npos);
  EXPECT_NE(check_chain("garbage").error().message().find("no PEM"), std::string::npos);
  EXPECT_NE(check_chain(std::string(70 * 1024, 'x')).error().message().find("64 KiB"),
            std::string::npos);
  // A leaf "issued" by an unrelated certificate: not signed by the next one.
  auto other_key = EcKey::generate();
  ASSERT_TRUE(other_key.ok());
  auto other = self_signed(other_key.value(), {"ca.example"}, 7);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(check_chain(self.value() + other.value()).ok());
}

TEST(AcmeCrypto, ALongFirstNameLeavesTheCommonNameOut) {
  // X.520 caps a common name at 64 characters; the SAN carries the name and is then critical.
  auto key = EcKey::generate();
  ASSERT_TRUE(key.ok());
  const std::string name = std::string(70, 'a') + ".example";
  auto pem = self_signed(key.value(), {name}, 7);
  ASSERT_TRUE(pem.ok()) << pem.error().message();
  auto info = certificate_info(pem.value());
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info.value().names, std::vector<std::string>{name});
  auto csr = csr_der(key.value(), {name});
  EXPECT_TRUE(csr.ok());
  EXPECT_FALSE(self_signed(key.value(), {"a.example"}, 7, "short").ok());
}

}  // namespace
}  // namespace citadel::http::acme
