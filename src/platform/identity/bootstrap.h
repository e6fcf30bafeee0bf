// `citadel admin create`: the first administrator, made straight in the store (the service need
// not run): a user with the built-in `admin` role (every permission) and an API key for it,
// shown once. Blocking; for the command line.
#pragma once

#include <string>

#include "core/status.h"
#include "platform/identity/options.h"
#include "store/sql.h"

namespace citadel::platform::identity {

struct CreatedAdmin {
  std::string user_id;
  std::string api_key;
  bool existed = false;  // the email had an account: it was given the role, its password kept
};

// Prepares the identity tables, then makes (or promotes) the user `email` with `password` and
// issues an API key named "admin-bootstrap" with scope "*".
core::Result<CreatedAdmin> create_admin(store::SqlDatabase& db, const IdentityOptions& options,
                                        const std::string& email, const std::string& password);

}  // namespace citadel::platform::identity
