// What a proxy does to the messages it forwards, shared by the stream (routing, the client's
// side) and the cluster handler (the upstream's side). Pure functions; any thread.
#pragma once

#include <string_view>

#include "http/headers.h"
#include "http/message.h"

namespace citadel::proxy {

// Removes hop-by-hop fields and the fields that `Connection` names (RFC 9110 section 7.6.1),
// except `TE: trailers` (gRPC needs it end to end). `keep_upgrade` keeps Upgrade for a protocol
// switch.
void strip_hop_by_hop(http::HeaderMap& headers, bool keep_upgrade);
// Appends to `to` the trailer fields of `from` that a proxy passes on: not those that frame,
// route, authenticate, set cookies, describe the content or control caching or the request
// (RFC 9110 section 6.5.1), nor hop-by-hop ones. `to` keeps views into `from`'s strings.
void copy_forwardable_trailers(const http::HeaderMap& from, http::HeaderMap& to);
// RFC 9112 section 3.2.2: "http://host/path" (neither origin-form nor "*").
bool is_absolute_form(std::string_view target);
// "?query" as received (also a bare "?"), or empty.
std::string_view query_part(const http::RequestHead& req);
// Replaces the value of Host in place (the codec allows one at most), or adds it.
void set_host(http::HeaderMap& headers, std::string_view host);
// Methods a retry may repeat.
bool is_safe_method(std::string_view m);
// 1..5 for a status, 0 for anything else (metrics' "reset" class).
int status_class(int status);

}  // namespace citadel::proxy
