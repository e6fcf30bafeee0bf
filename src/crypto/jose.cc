#include "crypto/jose.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include <boost/json.hpp>
#include <utility>

#include "core/base64.h"

namespace citadel::crypto {
namespace json = boost::json;
namespace {

constexpr std::pair<JwsAlg, std::string_view> kNames[] = {
    {JwsAlg::kHS256, "HS256"}, {JwsAlg::kHS384, "HS384"}, {JwsAlg::kHS512, "HS512"},
    {JwsAlg::kRS256, "RS256"}, {JwsAlg::kRS384, "RS384"}, {JwsAlg::kRS512, "RS512"},
    {JwsAlg::kPS256, "PS256"}, {JwsAlg::kPS384, "PS384"}, {JwsAlg::kPS512, "PS512"},
    {JwsAlg::kES256, "ES256"}, {JwsAlg::kES384, "ES384"}, {JwsAlg::kES512, "ES512"},
    {JwsAlg::kEdDSA, "EdDSA"},
};

const EVP_MD* md_of(JwsAlg a) {
  switch (a) {
    case JwsAlg::kHS256: case JwsAlg::kRS256: case JwsAlg::kPS256: case JwsAlg::kES256:
      return EVP_sha256();
    case JwsAlg::kHS384: case JwsAlg::kRS384: case JwsAlg::kPS384: case JwsAlg::kES384:
      return EVP_sha384();
    case JwsAlg::kHS512: case JwsAlg::kRS512: case JwsAlg::kPS512: case JwsAlg::kES512:
      return EVP_sha512();
    case JwsAlg::kEdDSA:
      return nullptr;  // Ed25519 hashes itself
  }
  return nullptr;
}

bool is_hs(JwsAlg a) { return a == JwsAlg::kHS256 || a == JwsAlg::kHS384 || a == JwsAlg::kHS512; }
bool is_rs(JwsAlg a) { return a == JwsAlg::kRS256 || a == JwsAlg::kRS384 || a == JwsAlg::kRS512; }
bool is_ps(JwsAlg a) { return a == JwsAlg::kPS256 || a == JwsAlg::kPS384 || a == JwsAlg::kPS512; }
bool is_es(JwsAlg a) { return a == JwsAlg::kES256 || a == JwsAlg::kES384 || a == JwsAlg::kES512; }

// The size of one coordinate (and of r and s) for an ES algorithm's curve.
size_t es_size(JwsAlg a) { return a == JwsAlg::kES256 ? 32 : a == JwsAlg::kES384 ? 48 : 66; }

std::string member(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string();
}

core::Status fail(const std::string& what) {
  ERR_clear_error();
  return core::Status::error("jose: " + what);
}

std::string bn_pad(const BIGNUM* bn, size_t len) {
  std::string out(len, '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(len));
  return out;
}

}  // namespace

std::string_view jws_alg_name(JwsAlg alg) {
  for (const auto& [a, n] : kNames) {
    if (a == alg) return n;
  }
  return "";
}

bool jws_alg_from_name(std::string_view name, JwsAlg& out) {
  for (const auto& [a, n] : kNames) {
    if (n == name) {
      out = a;
      return true;
    }
  }
  return false;
}

Jwk::Jwk() = default;
Jwk::~Jwk() { EVP_PKEY_free(pkey_); }
Jwk::Jwk(Jwk&& o) noexcept
    : kty_(std::move(o.kty_)),
      crv_(std::move(o.crv_)),
      kid_(std::move(o.kid_)),
      alg_(std::move(o.alg_)),
      secret_(std::move(o.secret_)),
      public_json_(std::move(o.public_json_)),
      pkey_(std::exchange(o.pkey_, nullptr)),
      private_(o.private_) {}
Jwk& Jwk::operator=(Jwk&& o) noexcept {
  if (this != &o) {
    EVP_PKEY_free(pkey_);
    kty_ = std::move(o.kty_);
    crv_ = std::move(o.crv_);
    kid_ = std::move(o.kid_);
    alg_ = std::move(o.alg_);
    secret_ = std::move(o.secret_);
    public_json_ = std::move(o.public_json_);
    pkey_ = std::exchange(o.pkey_, nullptr);
    private_ = o.private_;
  }
  return *this;
}

core::Result<Jwk> Jwk::parse(std::string_view text) {
  auto k = parse_key(text);
  if (!k.ok() || k.value().kty_ == "oct") return k;
  json::object pub;
  json::value v = json::parse(text);
  const json::object& o = v.as_object();
  for (const char* m : {"kty", "crv", "x", "y", "n", "e", "kid", "alg"}) {
    if (const json::value* f = o.if_contains(m); f != nullptr && f->is_string()) pub[m] = *f;
  }
  pub["use"] = "sig";
  k.value().public_json_ = json::serialize(pub);
  return k;
}

core::Result<Jwk> Jwk::parse_key(std::string_view text) {
  json::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return fail("a JWK is a JSON object");
  const json::object& o = v.as_object();
  Jwk k;
  k.kty_ = member(o, "kty");
  k.kid_ = member(o, "kid");
  k.alg_ = member(o, "alg");
  k.crv_ = member(o, "crv");
  auto b64 = [&](std::string_view name, std::string& out) {
    const std::string s = member(o, name);
    if (s.empty()) return false;
    auto d = core::base64url_decode(s);
    if (!d) return false;
    out = std::move(*d);
    return true;
  };
  if (k.kty_ == "oct") {
    if (!b64("k", k.secret_) || k.secret_.empty()) return fail("an oct JWK needs `k`");
    k.private_ = true;
    return k;
  }
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  std::vector<BIGNUM*> bns;
  auto push_bn = [&](const char* param, std::string_view name, bool required) {
    std::string bytes;
    if (!b64(name, bytes)) return !required;
    BIGNUM* bn = BN_bin2bn(reinterpret_cast<const unsigned char*>(bytes.data()),
                           static_cast<int>(bytes.size()), nullptr);
    bns.push_back(bn);
    return bn != nullptr && OSSL_PARAM_BLD_push_BN(bld, param, bn) == 1;
  };
  const char* type = nullptr;
  std::string pub;  // EC: the uncompressed point
  bool ok = bld != nullptr;
  if (k.kty_ == "RSA") {
    type = "RSA";
    ok = ok && push_bn(OSSL_PKEY_PARAM_RSA_N, "n", true) &&
         push_bn(OSSL_PKEY_PARAM_RSA_E, "e", true);
    k.private_ = o.contains("d");
    if (ok && k.private_) {
      ok = push_bn(OSSL_PKEY_PARAM_RSA_D, "d", true) &&
           push_bn(OSSL_PKEY_PARAM_RSA_FACTOR1, "p", false) &&
           push_bn(OSSL_PKEY_PARAM_RSA_FACTOR2, "q", false) &&
           push_bn(OSSL_PKEY_PARAM_RSA_EXPONENT1, "dp", false) &&
           push_bn(OSSL_PKEY_PARAM_RSA_EXPONENT2, "dq", false) &&
           push_bn(OSSL_PKEY_PARAM_RSA_COEFFICIENT1, "qi", false);
    }
  } else if (k.kty_ == "EC") {
    type = "EC";
    const char* group = k.crv_ == "P-256"   ? "prime256v1"
                        : k.crv_ == "P-384" ? "secp384r1"
                        : k.crv_ == "P-521" ? "secp521r1"
                                            : nullptr;
    const size_t size = k.crv_ == "P-256" ? 32 : k.crv_ == "P-384" ? 48 : 66;
    std::string x, y;
    ok = ok && group != nullptr && b64("x", x) && b64("y", y) && x.size() == size &&
         y.size() == size;
    if (ok) {
      pub = "\x04" + x + y;
      ok = OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) == 1 &&
           OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub.data(),
                                            pub.size()) == 1;
      k.private_ = o.contains("d");
      if (ok && k.private_) ok = push_bn(OSSL_PKEY_PARAM_PRIV_KEY, "d", true);
    }
  } else if (k.kty_ == "OKP" && k.crv_ == "Ed25519") {
    std::string x, d;
    OSSL_PARAM_BLD_free(bld);
    if (!b64("x", x) || x.size() != 32) return fail("an Ed25519 JWK needs a 32-byte `x`");
    if (b64("d", d)) {
      if (d.size() != 32) return fail("an Ed25519 JWK's `d` is 32 bytes");
      k.pkey_ = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr,
                                             reinterpret_cast<const unsigned char*>(d.data()),
                                             d.size());
      k.private_ = true;
      // The public half must be the one the key says.
      unsigned char derived[32];
      size_t n = sizeof derived;
      if (k.pkey_ == nullptr || EVP_PKEY_get_raw_public_key(k.pkey_, derived, &n) != 1 ||
          n != 32 || CRYPTO_memcmp(derived, x.data(), 32) != 0) {
        return fail("the Ed25519 JWK's `x` is not its `d`'s public key");
      }
    } else {
      k.pkey_ = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                            reinterpret_cast<const unsigned char*>(x.data()),
                                            x.size());
    }
    if (k.pkey_ == nullptr) return fail("cannot load the Ed25519 key");
    return k;
  } else {
    OSSL_PARAM_BLD_free(bld);
    return fail("unsupported key type \"" + k.kty_ + (k.crv_.empty() ? "" : "/" + k.crv_) + "\"");
  }
  OSSL_PARAM* params = ok ? OSSL_PARAM_BLD_to_param(bld) : nullptr;
  EVP_PKEY_CTX* ctx = params != nullptr ? EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr)
                                        : nullptr;
  ok = ctx != nullptr && EVP_PKEY_fromdata_init(ctx) == 1 &&
       EVP_PKEY_fromdata(ctx, &k.pkey_, k.private_ ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY,
                         params) == 1;
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  for (BIGNUM* bn : bns) BN_clear_free(bn);
  if (!ok) return fail("cannot load the " + k.kty_ + " key (missing or malformed members)");
  if (k.kty_ == "RSA" && EVP_PKEY_get_bits(k.pkey_) < 2048) {
    return fail("RSA keys under 2048 bits are refused");
  }
  return k;
}

bool Jwk::fits(JwsAlg a) const {
  if (!alg_.empty() && alg_ != jws_alg_name(a)) return false;
  if (is_hs(a)) {
    // RFC 7518, 3.2: a key at least as long as the hash output.
    return kty_ == "oct" && secret_.size() >= static_cast<size_t>(EVP_MD_get_size(md_of(a)));
  }
  if (is_rs(a) || is_ps(a)) return kty_ == "RSA";
  if (is_es(a)) {
    return kty_ == "EC" && ((a == JwsAlg::kES256 && crv_ == "P-256") ||
                            (a == JwsAlg::kES384 && crv_ == "P-384") ||
                            (a == JwsAlg::kES512 && crv_ == "P-521"));
  }
  return kty_ == "OKP" && crv_ == "Ed25519";
}

namespace {

// The raw signature of `input` (for ES: r || s, each `es_size` bytes).
core::Result<std::string> sign_raw(EVP_PKEY* pkey, JwsAlg a, std::string_view input) {
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  EVP_PKEY_CTX* pctx = nullptr;
  size_t len = 0;
  std::string sig;
  bool ok = md != nullptr && EVP_DigestSignInit(md, &pctx, md_of(a), nullptr, pkey) == 1;
  if (ok && is_ps(a)) {
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
  }
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  ok = ok && EVP_DigestSign(md, nullptr, &len, in, input.size()) == 1;
  if (ok) {
    sig.resize(len);
    ok = EVP_DigestSign(md, reinterpret_cast<unsigned char*>(sig.data()), &len, in,
                        input.size()) == 1;
    sig.resize(len);
  }
  EVP_MD_CTX_free(md);
  if (!ok) return fail("cannot sign");
  if (!is_es(a)) return sig;
  const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
  ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
  if (es == nullptr) return fail("cannot read the ECDSA signature");
  std::string raw =
      bn_pad(ECDSA_SIG_get0_r(es), es_size(a)) + bn_pad(ECDSA_SIG_get0_s(es), es_size(a));
  ECDSA_SIG_free(es);
  return raw;
}

bool verify_raw(EVP_PKEY* pkey, JwsAlg a, std::string_view input, std::string_view sig) {
  std::string der;
  if (is_es(a)) {
    // r || s back to the DER OpenSSL verifies; a wrong size is refused, not padded.
    const size_t n = es_size(a);
    if (sig.size() != 2 * n) return false;
    ECDSA_SIG* es = ECDSA_SIG_new();
    BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(sig.data()), static_cast<int>(n),
                          nullptr);
    BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(sig.data()) + n,
                          static_cast<int>(n), nullptr);
    if (es == nullptr || r == nullptr || s == nullptr || ECDSA_SIG_set0(es, r, s) != 1) {
      BN_free(r);
      BN_free(s);
      ECDSA_SIG_free(es);
      return false;
    }
    unsigned char* out = nullptr;
    int len = i2d_ECDSA_SIG(es, &out);
    ECDSA_SIG_free(es);
    if (len <= 0) return false;
    der.assign(reinterpret_cast<char*>(out), static_cast<size_t>(len));
    OPENSSL_free(out);
    sig = der;
  }
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  EVP_PKEY_CTX* pctx = nullptr;
  bool ok = md != nullptr && EVP_DigestVerifyInit(md, &pctx, md_of(a), nullptr, pkey) == 1;
  if (ok && is_ps(a)) {
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
  }
  ok = ok && EVP_DigestVerify(md, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                              reinterpret_cast<const unsigned char*>(input.data()),
                              input.size()) == 1;
  EVP_MD_CTX_free(md);
  ERR_clear_error();
  return ok;
}

std::string hmac(JwsAlg a, const std::string& key, std::string_view input) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(md_of(a), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
  return std::string(reinterpret_cast<char*>(mac), len);
}

}  // namespace

core::Result<std::string> jws_sign(const Jwk& key, JwsAlg alg, std::string_view header_members,
                                   std::string_view payload) {
  if (!key.fits(alg)) return fail("the key does not fit " + std::string(jws_alg_name(alg)));
  if (!key.has_private()) return fail("signing needs a private key");
  json::error_code ec;
  json::value extra = json::parse(header_members.empty() ? "{}" : header_members, ec);
  if (ec || !extra.is_object()) return fail("the header members are not a JSON object");
  json::object header;
  header["alg"] = jws_alg_name(alg);
  for (const auto& kv : extra.as_object()) {
    if (kv.key() != "alg") header[kv.key()] = kv.value();
  }
  const std::string input = core::base64url_encode(json::serialize(header)) + "." +
                            core::base64url_encode(payload);
  std::string sig;
  if (is_hs(alg)) {
    sig = hmac(alg, key.secret_, input);
  } else {
    auto s = sign_raw(key.pkey_, alg, input);
    if (!s.ok()) return s.error();
    sig = std::move(s.value());
  }
  return input + "." + core::base64url_encode(sig);
}

struct JwsVerifier {
  static bool check(const Jwk& k, JwsAlg a, std::string_view input, std::string_view sig) {
    if (is_hs(a)) {
      const std::string want = hmac(a, k.secret_, input);
      return want.size() == sig.size() &&
             CRYPTO_memcmp(want.data(), sig.data(), sig.size()) == 0;
    }
    return verify_raw(k.pkey_, a, input, sig);
  }
};

core::Result<JwsVerified> jws_verify(std::string_view compact, const std::vector<const Jwk*>& keys,
                                     const JwsVerifyOptions& options) {
  if (compact.size() > options.max_size) return fail("the token is too large");
  const size_t d1 = compact.find('.');
  const size_t d2 = d1 == std::string_view::npos ? d1 : compact.find('.', d1 + 1);
  if (d2 == std::string_view::npos || compact.find('.', d2 + 1) != std::string_view::npos) {
    return fail("not a compact JWS (three dot-separated parts)");
  }
  auto header = core::base64url_decode(compact.substr(0, d1));
  auto payload = core::base64url_decode(compact.substr(d1 + 1, d2 - d1 - 1));
  auto sig = core::base64url_decode(compact.substr(d2 + 1));
  if (!header || !payload || !sig) return fail("a part is not base64url");
  json::error_code ec;
  json::value h = json::parse(*header, ec);
  if (ec || !h.is_object()) return fail("the header is not a JSON object");
  const json::object& ho = h.as_object();
  if (ho.contains("crit")) return fail("`crit` header members are not understood");
  const std::string alg_name = member(ho, "alg");
  JwsAlg alg;
  if (!jws_alg_from_name(alg_name, alg)) {
    return fail("algorithm \"" + alg_name.substr(0, 32) + "\" is not accepted");
  }
  bool allowed = false;
  for (JwsAlg a : options.allowed) allowed = allowed || a == alg;
  if (!allowed) return fail("algorithm " + alg_name + " is not accepted here");
  const std::string kid = member(ho, "kid");
  const std::string_view input = compact.substr(0, d2);
  bool known_kid = kid.empty();
  for (const Jwk* k : keys) {
    if (!kid.empty() && k->kid() != kid) continue;
    known_kid = true;
    if (!k->fits(alg)) continue;
    if (JwsVerifier::check(*k, alg, input, *sig)) {
      return JwsVerified{alg, kid, std::move(*header), std::move(*payload)};
    }
  }
  return fail(known_kid ? "the signature does not verify" : "unknown key id \"" +
                                                                kid.substr(0, 64) + "\"");
}

}  // namespace citadel::crypto

namespace citadel::crypto {

core::Result<std::string> generate_jwk(JwsAlg alg, std::string_view kid) {
  json::object o;
  if (alg == JwsAlg::kHS256) {
    unsigned char secret[32];
    if (RAND_bytes(secret, sizeof secret) != 1) return fail("no randomness");
    o["kty"] = "oct";
    o["k"] = core::base64url_encode(std::string_view(reinterpret_cast<char*>(secret), 32));
    OPENSSL_cleanse(secret, sizeof secret);
  } else if (alg == JwsAlg::kEdDSA || alg == JwsAlg::kES256) {
    EVP_PKEY* pkey = alg == JwsAlg::kEdDSA ? EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")
                                           : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    if (pkey == nullptr) return fail("cannot generate a key");
    bool ok = true;
    if (alg == JwsAlg::kEdDSA) {
      unsigned char pub[32], priv[32];
      size_t np = sizeof pub, nd = sizeof priv;
      ok = EVP_PKEY_get_raw_public_key(pkey, pub, &np) == 1 &&
           EVP_PKEY_get_raw_private_key(pkey, priv, &nd) == 1 && np == 32 && nd == 32;
      if (ok) {
        o["kty"] = "OKP";
        o["crv"] = "Ed25519";
        o["x"] = core::base64url_encode(std::string_view(reinterpret_cast<char*>(pub), 32));
        o["d"] = core::base64url_encode(std::string_view(reinterpret_cast<char*>(priv), 32));
      }
      OPENSSL_cleanse(priv, sizeof priv);
    } else {
      BIGNUM* x = nullptr;
      BIGNUM* y = nullptr;
      BIGNUM* d = nullptr;
      ok = EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &x) == 1 &&
           EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &y) == 1 &&
           EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_PRIV_KEY, &d) == 1;
      if (ok) {
        o["kty"] = "EC";
        o["crv"] = "P-256";
        o["x"] = core::base64url_encode(bn_pad(x, 32));
        o["y"] = core::base64url_encode(bn_pad(y, 32));
        o["d"] = core::base64url_encode(bn_pad(d, 32));
      }
      BN_free(x);
      BN_free(y);
      BN_clear_free(d);
    }
    EVP_PKEY_free(pkey);
    if (!ok) return fail("cannot export the generated key");
  } else {
    return fail("keys are generated for EdDSA, ES256 and HS256 only");
  }
  o["kid"] = kid;
  o["alg"] = jws_alg_name(alg);
  o["use"] = "sig";
  return json::serialize(o);
}

}  // namespace citadel::crypto
