#include "http/transport/acme_crypto.h"

#include "core/ascii.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <ctime>

#include "core/base64.h"


namespace citadel::http::acme {
namespace {

struct Bio {
  BIO* b;
  Bio() : b(BIO_new(BIO_s_mem())) {}
  explicit Bio(std::string_view data)
      : b(BIO_new_mem_buf(data.data(), static_cast<int>(data.size()))) {}
  ~Bio() { BIO_free(b); }
  std::string str() const {
    char* p = nullptr;
    long n = BIO_get_mem_data(b, &p);
    return n > 0 ? std::string(p, static_cast<size_t>(n)) : std::string();
  }
};

core::Status fail(const char* what) {
  return core::Status::error(std::string("acme: ") + tls_error_string(what));
}

std::string bn_bytes(const BIGNUM* bn, int len) {
  std::string out(static_cast<size_t>(len), '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), len);
  return out;
}

// The DNS subject alternative names of `domains` as an extension (null on failure).
X509_EXTENSION* san_extension(const std::vector<std::string>& domains, bool critical) {
  GENERAL_NAMES* names = sk_GENERAL_NAME_new_null();
  for (const auto& d : domains) {
    GENERAL_NAME* gn = GENERAL_NAME_new();
    ASN1_IA5STRING* s = ASN1_IA5STRING_new();
    ASN1_STRING_set(s, d.data(), static_cast<int>(d.size()));
    GENERAL_NAME_set0_value(gn, GEN_DNS, s);
    sk_GENERAL_NAME_push(names, gn);
  }
  X509_EXTENSION* ext = X509V3_EXT_i2d(NID_subject_alt_name, critical ? 1 : 0, names);
  GENERAL_NAMES_free(names);
  return ext;
}

// A PEM password callback that gives none: an encrypted key fails to load instead of OpenSSL
// prompting on the terminal.
int no_password(char*, int, int, void*) { return 0; }

// The subject of a certificate or request for `domains`: CN = the first name when it fits the
// 64 characters X.520 allows, else empty (the names are in the subject alternative names, which
// RFC 5280, 4.2.1.6, then requires to be critical). Null on failure.
X509_NAME* subject_for(const std::vector<std::string>& domains, bool& san_critical) {
  X509_NAME* name = X509_NAME_new();
  san_critical = domains.front().size() > 64;
  if (name != nullptr && !san_critical &&
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(domains.front().c_str()),
                                 -1, -1, 0) != 1) {
    X509_NAME_free(name);
    return nullptr;
  }
  return name;
}

int64_t epoch_of(const ASN1_TIME* t) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

}  // namespace

std::string base64url(std::string_view bytes) { return core::base64url_encode(bytes); }

std::string sha256(std::string_view data) {
  unsigned char md[32];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(md), len);
}

void EcKey::Free::operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }

EcKey::~EcKey() = default;

core::Result<EcKey> EcKey::generate() {
  EVP_PKEY* k = EVP_EC_gen("P-256");
  if (k == nullptr) return fail("cannot generate a P-256 key");
  return EcKey(k);
}

core::Result<EcKey> EcKey::from_pem(std::string_view pem) {
  Bio in(pem);
  EVP_PKEY* k = PEM_read_bio_PrivateKey(in.b, nullptr, no_password, nullptr);
  if (k == nullptr) return fail("no PEM private key (or it is encrypted)");
  EcKey key(k);
  char group[64] = {0};
  size_t len = 0;
  if (EVP_PKEY_get_base_id(k) != EVP_PKEY_EC ||
      EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) !=
          1 ||
      std::string_view(group, len) != "prime256v1") {
    ERR_clear_error();
    return core::Status::error("acme: the key is not an EC key on P-256");
  }
  return key;
}

std::string EcKey::private_pem() const {
  Bio out;
  if (PEM_write_bio_PrivateKey(out.b, key_.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    ERR_clear_error();
    return "";
  }
  return out.str();
}

std::string EcKey::jwk() const {
  BIGNUM* x = nullptr;
  BIGNUM* y = nullptr;
  if (EVP_PKEY_get_bn_param(key_.get(), OSSL_PKEY_PARAM_EC_PUB_X, &x) != 1 ||
      EVP_PKEY_get_bn_param(key_.get(), OSSL_PKEY_PARAM_EC_PUB_Y, &y) != 1) {
    BN_free(x);
    BN_free(y);
    ERR_clear_error();
    return "";
  }
  std::string out = R"({"crv":"P-256","kty":"EC","x":")" + base64url(bn_bytes(x, 32)) +
                    R"(","y":")" + base64url(bn_bytes(y, 32)) + "\"}";
  BN_free(x);
  BN_free(y);
  return out;
}

std::string EcKey::thumbprint() const { return base64url(sha256(jwk())); }

core::Result<std::string> EcKey::sign(std::string_view data) const {
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  size_t len = 0;
  std::string der;
  bool ok = md != nullptr &&
            EVP_DigestSignInit(md, nullptr, EVP_sha256(), nullptr, key_.get()) == 1 &&
            EVP_DigestSign(md, nullptr, &len,
                           reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
  if (ok) {
    der.resize(len);
    ok = EVP_DigestSign(md, reinterpret_cast<unsigned char*>(der.data()), &len,
                        reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
    der.resize(len);
  }
  EVP_MD_CTX_free(md);
  if (!ok) return fail("cannot sign");
  // DER ECDSA-Sig-Value -> the fixed-size r || s JWS wants.
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
  if (sig == nullptr) return fail("cannot read the signature");
  std::string out = bn_bytes(ECDSA_SIG_get0_r(sig), 32) + bn_bytes(ECDSA_SIG_get0_s(sig), 32);
  ECDSA_SIG_free(sig);
  return out;
}

core::Result<std::string> jws(const EcKey& key, std::string_view protected_header,
                              std::string_view payload) {
  std::string p = base64url(protected_header);
  std::string b = base64url(payload);  // "" for a POST-as-GET
  auto sig = key.sign(p + "." + b);
  if (!sig.ok()) return sig.error();
  return R"({"protected":")" + p + R"(","payload":")" + b + R"(","signature":")" +
         base64url(sig.value()) + "\"}";
}

core::Result<std::string> csr_der(const EcKey& key, const std::vector<std::string>& domains) {
  if (domains.empty()) return core::Status::error("acme: a request needs a name");
  bool critical = false;
  X509_NAME* name = subject_for(domains, critical);
  X509_EXTENSION* san = san_extension(domains, critical);
  X509_REQ* req = X509_REQ_new();
  STACK_OF(X509_EXTENSION)* exts = sk_X509_EXTENSION_new_null();
  bool ok = name != nullptr && san != nullptr && req != nullptr && exts != nullptr &&
            sk_X509_EXTENSION_push(exts, san) > 0;
  if (!ok) X509_EXTENSION_free(san);  // else the stack owns it
  ok = ok && X509_REQ_set_version(req, 0) == 1 && X509_REQ_set_subject_name(req, name) == 1 &&
            X509_REQ_add_extensions(req, exts) == 1 &&
            X509_REQ_set_pubkey(req, key.native()) == 1 &&
            X509_REQ_sign(req, key.native(), EVP_sha256()) > 0;
  std::string out;
  if (ok) {
    int len = i2d_X509_REQ(req, nullptr);
    out.resize(static_cast<size_t>(len > 0 ? len : 0));
    auto* p = reinterpret_cast<unsigned char*>(out.data());
    ok = len > 0 && i2d_X509_REQ(req, &p) == len;
  }
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  X509_NAME_free(name);
  X509_REQ_free(req);
  if (!ok) return fail("cannot make the certificate request");
  return out;
}

core::Result<std::string> self_signed(const EcKey& key, const std::vector<std::string>& domains,
                                      int days, std::string_view acme_identifier) {
  if (domains.empty()) return core::Status::error("acme: a certificate needs a name");
  if (!acme_identifier.empty() && acme_identifier.size() != 32) {
    return core::Status::error("acme: an acmeIdentifier is a 32-byte SHA-256 digest");
  }
  bool critical = false;
  X509_NAME* name = subject_for(domains, critical);
  if (name == nullptr) return fail("cannot make a subject name");
  X509* x = X509_new();
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;  // positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  bool ok = X509_set_version(x, 2) == 1 && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) &&
            X509_gmtime_adj(X509_getm_notBefore(x), -3600) != nullptr &&
            X509_gmtime_adj(X509_getm_notAfter(x), static_cast<long>(days) * 86400) != nullptr &&
            X509_set_subject_name(x, name) == 1 && X509_set_issuer_name(x, name) == 1 &&
            X509_set_pubkey(x, key.native()) == 1;
  BN_free(bn);
  X509_EXTENSION* san = san_extension(domains, critical);
  ok = ok && san != nullptr && X509_add_ext(x, san, -1) == 1;
  X509_EXTENSION_free(san);
  if (ok && !acme_identifier.empty()) {
    // id-pe-acmeIdentifier (RFC 8737, 3): critical, its value the DER OCTET STRING of the
    // SHA-256 of the key authorization.
    std::string value = std::string("\x04\x20", 2) + std::string(acme_identifier);
    ASN1_OBJECT* oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    ASN1_OCTET_STRING* os = ASN1_OCTET_STRING_new();
    ASN1_OCTET_STRING_set(os, reinterpret_cast<const unsigned char*>(value.data()),
                          static_cast<int>(value.size()));
    X509_EXTENSION* ext = X509_EXTENSION_create_by_OBJ(nullptr, oid, 1, os);
    ok = ext != nullptr && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    ASN1_OCTET_STRING_free(os);
    ASN1_OBJECT_free(oid);
  }
  ok = ok && X509_sign(x, key.native(), EVP_sha256()) > 0;
  std::string out;
  if (ok) {
    Bio b;
    ok = PEM_write_bio_X509(b.b, x) == 1;
    out = b.str();
  }
  X509_NAME_free(name);
  X509_free(x);
  if (!ok) return fail("cannot make a self-signed certificate");
  return out;
}

core::Result<TlsCertificateFiles> placeholder_certificate(
    const std::vector<std::string>& domains) {
  auto key = EcKey::generate();
  if (!key.ok()) return key.error();
  auto pem = self_signed(key.value(), domains, 30);
  if (!pem.ok()) return pem.error();
  TlsCertificateFiles f;
  f.cert_pem = std::move(pem.value());
  f.key_pem = key.value().private_pem();
  if (f.key_pem.empty()) return core::Status::error("acme: cannot write the placeholder key");
  return f;
}

core::Result<CertificateInfo> certificate_info(std::string_view pem) {
  Bio in(pem);
  X509* x = PEM_read_bio_X509(in.b, nullptr, nullptr, nullptr);
  if (x == nullptr) {
    ERR_clear_error();
    return core::Status::error("acme: no PEM certificate");
  }
  CertificateInfo info;
  info.not_before = epoch_of(X509_get0_notBefore(x));
  info.not_after = epoch_of(X509_get0_notAfter(x));
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
      if (gn->type != GEN_DNS) continue;
      const unsigned char* p = ASN1_STRING_get0_data(gn->d.dNSName);
      info.names.push_back(core::ascii_lower(std::string(reinterpret_cast<const char*>(p),
                                             static_cast<size_t>(ASN1_STRING_length(
                                                 gn->d.dNSName)))));
    }
    GENERAL_NAMES_free(sans);
  }
  BIGNUM* serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), nullptr);
  if (serial != nullptr) {
    char* hex = BN_bn2hex(serial);
    info.serial = hex != nullptr ? hex : "";
    OPENSSL_free(hex);
    BN_free(serial);
  }
  info.self_signed = X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) == 0;
  X509_free(x);
  return info;
}

core::Result<std::string> check_chain(std::string_view pem) {
  constexpr size_t kMaxBytes = 64 * 1024;
  constexpr size_t kMaxCerts = 10;
  if (pem.size() > kMaxBytes) return core::Status::error("acme: the chain is over 64 KiB");
  Bio in(pem);
  std::vector<X509*> certs;
  while (certs.size() <= kMaxCerts) {
    X509* x = PEM_read_bio_X509(in.b, nullptr, nullptr, nullptr);
    if (x == nullptr) break;
    certs.push_back(x);
  }
  ERR_clear_error();  // the end of the input reads as an error
  core::Status status;
  if (certs.empty()) {
    status = core::Status::error("acme: no PEM certificate");
  } else if (certs.size() > kMaxCerts) {
    status = core::Status::error("acme: the chain has more than 10 certificates");
  } else if (X509_check_issued(certs[0], certs[0]) == X509_V_OK) {
    status = core::Status::error("acme: the certificate is self-signed");
  } else {
    for (size_t i = 0; i + 1 < certs.size(); ++i) {
      EVP_PKEY* issuer_key = X509_get0_pubkey(certs[i + 1]);
      if (X509_check_issued(certs[i + 1], certs[i]) != X509_V_OK || issuer_key == nullptr ||
          X509_verify(certs[i], issuer_key) != 1) {
        status = core::Status::error("acme: certificate " + std::to_string(i + 1) +
                                     " of the chain is not signed by the next one");
        break;
      }
    }
  }
  std::string out;
  if (status.ok()) {
    Bio b;
    for (X509* x : certs) {
      if (PEM_write_bio_X509(b.b, x) != 1) status = fail("cannot write the chain");
    }
    out = b.str();
  }
  for (X509* x : certs) X509_free(x);
  ERR_clear_error();
  if (!status.ok()) return status;
  return out;
}

bool key_matches(std::string_view cert_pem, std::string_view key_pem) {
  Bio cin(cert_pem);
  Bio kin(key_pem);
  X509* x = PEM_read_bio_X509(cin.b, nullptr, nullptr, nullptr);
  EVP_PKEY* k = PEM_read_bio_PrivateKey(kin.b, nullptr, no_password, nullptr);
  bool ok = x != nullptr && k != nullptr && X509_check_private_key(x, k) == 1;
  X509_free(x);
  EVP_PKEY_free(k);
  ERR_clear_error();
  return ok;
}

}  // namespace citadel::http::acme
