// The cryptography an ACME client (RFC 8555) needs, over OpenSSL 3: P-256 keys, their JWK and
// thumbprint (RFC 7638), flattened JWS with ES256 (RFC 7515, 7518), certificate signing
// requests, self-signed certificates (a placeholder until the first certificate is issued, and
// the TLS-ALPN-01 challenge certificate with its acmeIdentifier extension, RFC 8737), and what a
// PEM certificate says about itself. The protocol is in cli/acme_client.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "http/transport/tls_context.h"

using EVP_PKEY = struct evp_pkey_st;

namespace citadel::http::acme {

// RFC 4648, section 5, without padding.
std::string base64url(std::string_view bytes);
// SHA-256 of `data` (32 bytes).
std::string sha256(std::string_view data);

// An EC key on P-256: account keys and certificate keys.
class EcKey {
 public:
  static core::Result<EcKey> generate();
  // A PEM private key (PKCS#8 or SEC1) that must be on P-256.
  static core::Result<EcKey> from_pem(std::string_view pem);
  EcKey(EcKey&&) noexcept = default;
  EcKey& operator=(EcKey&&) noexcept = default;
  ~EcKey();

  std::string private_pem() const;  // PKCS#8
  // The public key as a JWK with its members in RFC 7638's order: {"crv","kty","x","y"}.
  std::string jwk() const;
  // base64url(SHA-256(jwk())): the account's part of every key authorization.
  std::string thumbprint() const;
  // ES256 over `data`: the 64-byte r || s of RFC 7518, section 3.4.
  core::Result<std::string> sign(std::string_view data) const;
  EVP_PKEY* native() const { return key_.get(); }

 private:
  struct Free {
    void operator()(EVP_PKEY* k) const;
  };
  explicit EcKey(EVP_PKEY* k) : key_(k) {}
  std::unique_ptr<EVP_PKEY, Free> key_;
};

// A flattened JWS JSON object (RFC 7515, 7.2.2) signing `payload` (already JSON, or empty for a
// POST-as-GET) under `protected_header` (JSON), as an ACME request body.
core::Result<std::string> jws(const EcKey& key, std::string_view protected_header,
                              std::string_view payload);

// A PKCS#10 request (DER) for `domains`: the first is the subject's common name, all are
// subject alternative names.
core::Result<std::string> csr_der(const EcKey& key, const std::vector<std::string>& domains);

// A self-signed certificate (PEM) for `domains`, valid from an hour ago for `days`. With a
// 32-byte `acme_identifier` (SHA-256 of a key authorization) it carries RFC 8737's critical
// id-pe-acmeIdentifier extension: the TLS-ALPN-01 challenge certificate.
core::Result<std::string> self_signed(const EcKey& key, const std::vector<std::string>& domains,
                                      int days, std::string_view acme_identifier = {});

// A fresh key and a self-signed certificate for `domains` (30 days), in memory: what a
// `tls.acme` listener serves until its first certificate is issued.
core::Result<TlsCertificateFiles> placeholder_certificate(const std::vector<std::string>& domains);

struct CertificateInfo {
  int64_t not_before = 0;  // seconds since the epoch
  int64_t not_after = 0;
  std::vector<std::string> names;  // DNS subject alternative names, lowercase
  std::string serial;              // hex
  bool self_signed = false;        // issuer == subject (a placeholder)
};
// What the first certificate of a PEM chain says about itself.
core::Result<CertificateInfo> certificate_info(std::string_view pem);
// Whether a PEM chain as an ACME server sends it can be served: 1 to 10 certificates in at most
// 64 KiB, the first not self-signed, each signed by the one after it. Gives the certificates
// alone, PEM again (whatever else the input held is dropped); the error says which rule fails.
core::Result<std::string> check_chain(std::string_view pem);

// Whether `key_pem` is the private key of the first certificate in `cert_pem`.
bool key_matches(std::string_view cert_pem, std::string_view key_pem);

}  // namespace citadel::http::acme
