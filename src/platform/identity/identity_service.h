// The identity service, mounted as a route target (`to: { service: identity }`) with its options
// under `services: { identity: {...} }` (docs/identity.md): sign-up, the OAuth 2.0 token
// endpoint (RFC 6749: password and refresh_token grants), refresh tokens rotated on every use
// with reuse detection, server-side sessions, token revocation (RFC 7009), userinfo, JWKS and the
// OpenID Connect discovery document.
//
// The pattern later services follow: options parsed by a ServiceConfigParser that the cli
// wiring gives the shared stores; state that must outlive a snapshot (the database, the key
// set) reached through them; a handler per request that never blocks its worker: SQL through
// store/sql.h (results on the worker's loop), password hashing on the blocking pool
// (pipeline::run_blocking), every callback checked against the stream's handle.
#pragma once

#include <memory>
#include <string_view>

#include "http/pipeline/handler.h"
#include "store/stores.h"

namespace citadel::platform::identity {

class IdentityServiceParser final : public pipeline::ServiceConfigParser {
 public:
  explicit IdentityServiceParser(store::Stores& stores) : stores_(stores) {}
  std::string_view name() const override { return "identity"; }
  std::unique_ptr<pipeline::HandlerFactory> parse(const core::ConfigNode& options,
                                                  pipeline::BuildContext& ctx) const override;

 private:
  store::Stores& stores_;
};

}  // namespace citadel::platform::identity
