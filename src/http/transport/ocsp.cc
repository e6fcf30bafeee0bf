#include "http/transport/ocsp.h"

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <memory>

namespace citadel::http {
namespace {

struct Chain {
  X509* leaf = nullptr;
  X509* issuer = nullptr;
  STACK_OF(X509)* all = nullptr;
  ~Chain() {
    X509_free(leaf);
    sk_X509_pop_free(all, X509_free);  // issuer is one of them
  }
};

core::Status read_chain(const std::string& file, Chain& c) {
  BIO* bio = BIO_new_file(file.c_str(), "r");
  if (bio == nullptr) {
    ERR_clear_error();
    return core::Status::error("ocsp: cannot read " + file);
  }
  c.leaf = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  c.all = sk_X509_new_null();
  while (X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) sk_X509_push(c.all, x);
  BIO_free(bio);
  ERR_clear_error();
  if (c.leaf == nullptr) return core::Status::error("ocsp: " + file + ": no certificate");
  for (int i = 0; i < sk_X509_num(c.all); ++i) {
    X509* x = sk_X509_value(c.all, i);
    if (X509_check_issued(x, c.leaf) == X509_V_OK) {
      c.issuer = x;
      break;
    }
  }
  if (c.issuer == nullptr) {
    return core::Status::error("ocsp: " + file + ": the issuer is not in the chain");
  }
  return core::Status();
}

}  // namespace

core::Result<OcspQuery> ocsp_query(const std::string& cert_file) {
  Chain c;
  core::Status st = read_chain(cert_file, c);
  if (!st.ok()) return st;
  OcspQuery q;
  STACK_OF(OPENSSL_STRING)* urls = X509_get1_ocsp(c.leaf);
  if (urls != nullptr && sk_OPENSSL_STRING_num(urls) > 0) q.url = sk_OPENSSL_STRING_value(urls, 0);
  X509_email_free(urls);
  if (q.url.empty()) {
    return core::Status::error("ocsp: " + cert_file + " names no OCSP responder");
  }
  OCSP_CERTID* id = OCSP_cert_to_id(nullptr, c.leaf, c.issuer);
  OCSP_REQUEST* req = OCSP_REQUEST_new();
  if (id == nullptr || req == nullptr || OCSP_request_add0_id(req, id) == nullptr) {
    OCSP_CERTID_free(id);
    OCSP_REQUEST_free(req);
    ERR_clear_error();
    return core::Status::error("ocsp: cannot build the request");
  }
  unsigned char* der = nullptr;
  int n = i2d_OCSP_REQUEST(req, &der);
  OCSP_REQUEST_free(req);  // frees id
  if (n <= 0) {
    ERR_clear_error();
    return core::Status::error("ocsp: cannot encode the request");
  }
  q.request_der.assign(reinterpret_cast<char*>(der), static_cast<size_t>(n));
  OPENSSL_free(der);
  return q;
}

core::Result<int64_t> ocsp_check(const std::string& cert_file, std::string_view der) {
  Chain c;
  core::Status st = read_chain(cert_file, c);
  if (!st.ok()) return st;
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  std::unique_ptr<OCSP_RESPONSE, decltype(&OCSP_RESPONSE_free)> resp(
      d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size())), OCSP_RESPONSE_free);
  if (!resp) {
    ERR_clear_error();
    return core::Status::error("ocsp: the answer is not an OCSP response");
  }
  int rs = OCSP_response_status(resp.get());
  if (rs != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
    return core::Status::error(std::string("ocsp: responder says ") +
                               OCSP_response_status_str(rs));
  }
  std::unique_ptr<OCSP_BASICRESP, decltype(&OCSP_BASICRESP_free)> basic(
      OCSP_response_get1_basic(resp.get()), OCSP_BASICRESP_free);
  if (!basic) {
    ERR_clear_error();
    return core::Status::error("ocsp: no basic response");
  }
  // Signed by the issuer itself, or by a responder certificate the issuer signed for OCSP
  // signing (carried in the response): the issuer is the only trust anchor.
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(),
                                                                X509_STORE_free);
  X509_STORE_add_cert(store.get(), c.issuer);
  STACK_OF(X509)* issuer_only = sk_X509_new_null();
  sk_X509_push(issuer_only, c.issuer);
  int ok = OCSP_basic_verify(basic.get(), issuer_only, store.get(), OCSP_TRUSTOTHER);
  sk_X509_free(issuer_only);
  if (ok != 1) {
    ERR_clear_error();
    return core::Status::error("ocsp: the response's signature does not verify");
  }
  OCSP_CERTID* id = OCSP_cert_to_id(nullptr, c.leaf, c.issuer);
  int status = -1, reason = -1;
  ASN1_GENERALIZEDTIME *rev = nullptr, *this_upd = nullptr, *next_upd = nullptr;
  int found = OCSP_resp_find_status(basic.get(), id, &status, &reason, &rev, &this_upd, &next_upd);
  OCSP_CERTID_free(id);
  if (found != 1) return core::Status::error("ocsp: the response is not about this certificate");
  if (status != V_OCSP_CERTSTATUS_GOOD) {
    return core::Status::error(std::string("ocsp: certificate status ") +
                               OCSP_cert_status_str(status));
  }
  if (OCSP_check_validity(this_upd, next_upd, 300, -1) != 1) {
    ERR_clear_error();
    return core::Status::error("ocsp: the response is not current");
  }
  if (next_upd == nullptr) return int64_t{7 * 86400};
  int days = 0, secs = 0;
  if (ASN1_TIME_diff(&days, &secs, nullptr, next_upd) != 1) return int64_t{3600};
  return static_cast<int64_t>(days) * 86400 + secs;
}

}  // namespace citadel::http
