// OCSP for stapling (RFC 6960, RFC 6066 8): the request a listener's certificate needs and the
// check of the responder's answer. OpenSSL's OCSP code stays here; the fetching is the HTTP
// client's, the scheduling the server's (cli/ocsp_stapler.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace citadel::http {

struct OcspQuery {
  std::string url;          // the responder, from the certificate's Authority Information Access
  std::string request_der;  // an OCSPRequest for the certificate (POSTed, application/ocsp-request)
};

// The query for the certificate in `cert_file` (PEM: the certificate, then its chain, which must
// hold the issuer). Errors: no OCSP responder named in the certificate, issuer not in the file.
core::Result<OcspQuery> ocsp_query(const std::string& cert_file);

// Checks `der`, a responder's answer for the certificate in `cert_file`: a successful response,
// signed by the issuer (or a responder the issuer delegated to), for this certificate, status
// good, current (thisUpdate not in the future, nextUpdate not past, 5 minutes of clock skew).
// Returns the seconds until its nextUpdate (a week when it names none).
core::Result<int64_t> ocsp_check(const std::string& cert_file, std::string_view der);

}  // namespace citadel::http
