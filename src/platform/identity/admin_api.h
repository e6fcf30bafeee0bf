// The identity service's admin API under {prefix}/admin/: users, roles and their permissions
// (RBAC), API keys (created, listed, rotated with an overlap, revoked), sessions, invitations
// (docs/identity.md). Every call needs the `identity:admin` permission, from an access token of a
// live session or from an API key (its scopes and its owner's roles must both grant it).
#pragma once

#include <memory>

#include "core/arena.h"
#include "http/pipeline/handler.h"
#include "platform/identity/service.h"

namespace citadel::platform::identity {

// A handler for one admin request, in `arena` (the stream calls its destructor).
pipeline::Handler* new_admin_handler(core::Arena& arena, std::shared_ptr<const Service> svc);

}  // namespace citadel::platform::identity
