// Request bodies platform services read: application/x-www-form-urlencoded (the OAuth token
// endpoint, RFC 6749 appendix B) and the media type check before either form or JSON is read.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "http/message.h"

namespace citadel::platform {

// Decodes `body` into name -> value ('+' is a space, %XX a byte). Refused (false, `error` says
// why): a malformed escape, a name given twice (RFC 6749, 3.1: parameters are sent once, so
// which of two a server took cannot be argued about), more than 64 parameters.
bool parse_form(std::string_view body, std::map<std::string, std::string>& out,
                std::string& error);

// Whether the request's Content-Type is `type` (case-insensitively, parameters such as charset
// ignored).
bool has_media_type(const http::RequestHead& request, std::string_view type);

}  // namespace citadel::platform
