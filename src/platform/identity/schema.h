// The identity service's tables (component "identity" in schema_migrations). Secrets are never
// stored: passwords as Argon2id PHC strings, refresh tokens and invites as SHA-256 digests
// (crypto/random.h). Times are Unix seconds.
#pragma once

#include <vector>

#include "store/sql.h"

namespace citadel::platform::identity {

inline const std::vector<store::SqlMigration>& identity_migrations() {
  static const std::vector<store::SqlMigration> kMigrations = {
      {1,
       "CREATE TABLE identity_users ("
       " id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,"
       " created_at INTEGER NOT NULL, email_verified INTEGER NOT NULL DEFAULT 0,"
       " disabled INTEGER NOT NULL DEFAULT 0);"
       "CREATE TABLE identity_user_roles ("
       " user_id TEXT NOT NULL REFERENCES identity_users(id) ON DELETE CASCADE,"
       " role TEXT NOT NULL, PRIMARY KEY (user_id, role));"
       "CREATE TABLE identity_sessions ("
       " id TEXT PRIMARY KEY,"
       " user_id TEXT NOT NULL REFERENCES identity_users(id) ON DELETE CASCADE,"
       " created_at INTEGER NOT NULL, last_used_at INTEGER NOT NULL,"
       " expires_at INTEGER NOT NULL, revoked_at INTEGER,"
       " client_address TEXT NOT NULL, user_agent TEXT NOT NULL);"
       "CREATE INDEX identity_sessions_user ON identity_sessions (user_id);"
       "CREATE TABLE identity_refresh_tokens ("
       " digest TEXT PRIMARY KEY,"
       " session_id TEXT NOT NULL REFERENCES identity_sessions(id) ON DELETE CASCADE,"
       " expires_at INTEGER NOT NULL, used_at INTEGER);"
       "CREATE INDEX identity_refresh_tokens_session ON identity_refresh_tokens (session_id);"
       "CREATE TABLE identity_invites ("
       " digest TEXT PRIMARY KEY, email TEXT, expires_at INTEGER NOT NULL, used_at INTEGER);"
       "CREATE TABLE identity_keys ("
       " kid TEXT PRIMARY KEY, alg TEXT NOT NULL, jwk TEXT NOT NULL,"
       " created_at INTEGER NOT NULL, retired_at INTEGER)"},
  };
  return kMigrations;
}

}  // namespace citadel::platform::identity
