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
      // TOTP second factors (RFC 6238): the secret an authenticator app holds (it must be read
      // back to check codes: the database file is the secret's protection, 0600), confirmed
      // once a first code matched; `last_step` refuses a code used before (replay). Recovery
      // codes as digests. A login that needs the second factor gets a challenge: single-use,
      // short-lived, a few attempts. `amr` (RFC 8176) on a session: how its login proved
      // itself, and the scope it was granted, carried into every token it refreshes.
      {2,
       "CREATE TABLE identity_totp ("
       " user_id TEXT PRIMARY KEY REFERENCES identity_users(id) ON DELETE CASCADE,"
       " secret TEXT NOT NULL, created_at INTEGER NOT NULL, confirmed_at INTEGER,"
       " last_step INTEGER NOT NULL DEFAULT 0);"
       "CREATE TABLE identity_recovery_codes ("
       " user_id TEXT NOT NULL REFERENCES identity_users(id) ON DELETE CASCADE,"
       " digest TEXT NOT NULL, used_at INTEGER, PRIMARY KEY (user_id, digest));"
       "CREATE TABLE identity_mfa_challenges ("
       " digest TEXT PRIMARY KEY,"
       " user_id TEXT NOT NULL REFERENCES identity_users(id) ON DELETE CASCADE,"
       " purpose TEXT NOT NULL, scope TEXT NOT NULL, expires_at INTEGER NOT NULL,"
       " attempts INTEGER NOT NULL DEFAULT 0, used_at INTEGER);"
       "ALTER TABLE identity_users ADD COLUMN mfa_required INTEGER NOT NULL DEFAULT 0;"
       "ALTER TABLE identity_sessions ADD COLUMN amr TEXT NOT NULL DEFAULT 'pwd';"
       "ALTER TABLE identity_sessions ADD COLUMN scope TEXT NOT NULL DEFAULT 'openid'"},
      // Failed logins and codes by key ("pair:EMAIL|ADDRESS", "acct:EMAIL", "addr:ADDRESS"):
      // a count that starts again after a quiet day, and a time before which logins on that
      // key are refused without looking at the password.
      {3,
       "CREATE TABLE identity_throttle ("
       " key TEXT PRIMARY KEY, failures INTEGER NOT NULL, blocked_until INTEGER NOT NULL,"
       " updated_at INTEGER NOT NULL)"},
      // RBAC: roles hold permissions ("resource:action", "*" for a whole part); the built-in
      // `admin` role holds "*". API keys: a public prefix to find the row, the secret's digest,
      // the scopes (permissions) the key may use, bounded by its owner's.
      {4,
       "CREATE TABLE identity_roles ("
       " name TEXT PRIMARY KEY, description TEXT NOT NULL, created_at INTEGER NOT NULL);"
       "CREATE TABLE identity_role_permissions ("
       " role TEXT NOT NULL REFERENCES identity_roles(name) ON DELETE CASCADE,"
       " permission TEXT NOT NULL, PRIMARY KEY (role, permission));"
       "INSERT INTO identity_roles VALUES ('admin', 'every permission', 0);"
       "INSERT INTO identity_role_permissions VALUES ('admin', '*');"
       "CREATE TABLE identity_api_keys ("
       " id TEXT PRIMARY KEY, prefix TEXT NOT NULL UNIQUE, digest TEXT NOT NULL,"
       " name TEXT NOT NULL,"
       " user_id TEXT NOT NULL REFERENCES identity_users(id) ON DELETE CASCADE,"
       " scopes TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER,"
       " revoked_at INTEGER, last_used_at INTEGER, rotated_from TEXT);"
       "CREATE INDEX identity_api_keys_user ON identity_api_keys (user_id)"},
  };
  return kMigrations;
}

}  // namespace citadel::platform::identity
