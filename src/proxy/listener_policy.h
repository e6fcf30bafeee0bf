// What a listener's own options ask of its requests, as filters the snapshot puts at the head of
// the listener's filter list (they run before routing and see every response, as listener
// filters do):
//
//   HstsFilter           `tls.hsts`: Strict-Transport-Security on every response over TLS that
//                        lacks one (RFC 6797: never over plain HTTP, never over a target's own).
//   ClientSubjectFilter  `tls.client_auth.forward_subject`: the request field that carries the
//                        verified client certificate's subject; a field of that name from the
//                        client is removed on every listener, so routes may match on it.
//   HttpsRedirectFilter  `redirect_to_https`: every request on a plain listener answered with a
//                        redirect to the same host and target over https (301 for GET and HEAD,
//                        308 otherwise, which keeps the method and body).
//   AcmeHttp01Filter     while the ACME client has HTTP-01 challenges out (RFC 8555, 8.3): on
//                        plain listeners, GET /.well-known/acme-challenge/TOKEN answered with the
//                        token's key authorization (404 for an unknown token), before anything
//                        else, a redirect to https included.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "http/pipeline/filter.h"

namespace citadel::proxy {

class HstsFilterFactory final : public pipeline::FilterFactory {
 public:
  explicit HstsFilterFactory(std::string value) : value_(std::move(value)) {}
  pipeline::Filter* create(core::Arena& arena) const override;

 private:
  std::string value_;  // "max-age=31536000; includeSubDomains"
};

class ClientSubjectFilterFactory final : public pipeline::FilterFactory {
 public:
  // `set`: this listener forwards its verified subject in `field` (else the field is only
  // removed: every listener removes what any listener would vouch for).
  ClientSubjectFilterFactory(std::string field, bool set) : field_(std::move(field)), set_(set) {}
  pipeline::Filter* create(core::Arena& arena) const override;

 private:
  std::string field_;
  bool set_;
};

class HttpsRedirectFilterFactory final : public pipeline::FilterFactory {
 public:
  explicit HttpsRedirectFilterFactory(uint16_t port) : port_(port) {}
  pipeline::Filter* create(core::Arena& arena) const override;

 private:
  uint16_t port_;  // 443: no port in the URL
};

class AcmeHttp01FilterFactory final : public pipeline::FilterFactory {
 public:
  using Answers = std::map<std::string, std::string>;
  explicit AcmeHttp01FilterFactory(std::shared_ptr<const Answers> answers)
      : answers_(std::move(answers)) {}
  pipeline::Filter* create(core::Arena& arena) const override;

 private:
  std::shared_ptr<const std::map<std::string, std::string>> answers_;  // token -> answer
};

}  // namespace citadel::proxy
