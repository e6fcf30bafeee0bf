// What the identity service's handlers share: the state one config snapshot builds (options,
// store, keys), the checks every endpoint family makes (access tokens, permissions) and small
// helpers. Internal to platform/identity.
#pragma once

#include <sched.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <semaphore>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "http/message.h"
#include "observe/metrics.h"
#include "platform/identity/key_set.h"
#include "platform/identity/options.h"
#include "store/sql.h"

namespace citadel::platform::identity {

int64_t now_s();

struct Metrics {
  observe::Counter* signups = nullptr;
  observe::Counter* signups_refused = nullptr;
  observe::Counter* logins = nullptr;
  observe::Counter* logins_failed = nullptr;
  observe::Counter* refreshes = nullptr;
  observe::Counter* refreshes_failed = nullptr;
  observe::Counter* refresh_reuse = nullptr;
  observe::Counter* store_errors = nullptr;
  observe::Counter* logins_throttled = nullptr;
  observe::Counter* mfa_ok = nullptr;
  observe::Counter* mfa_failed = nullptr;
  observe::Counter* mfa_enrolled = nullptr;
  observe::Counter* admin_calls = nullptr;
  observe::Counter* admin_denied = nullptr;
};

// Password hashes at once: no more than the CPUs this process may run on. Argon2id is memory
// bound (19 MiB a hash by default): more at once than there are cores only trade cache for
// context switches (on one core, two concurrent logins took 0.72x of the raw rate). Pool
// threads wait here, never a worker's loop.
class HashGate {
 public:
  HashGate() : slots_(cpus()) {}
  template <class F>
  auto run(F&& f) {
    slots_.acquire();
    struct Release {
      std::counting_semaphore<>& s;
      ~Release() { s.release(); }
    } release{slots_};
    return f();
  }

 private:
  static std::ptrdiff_t cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    return std::max(1, CPU_COUNT(&set));
  }
  std::counting_semaphore<> slots_;
};

// What every request of one snapshot shares; immutable.
struct Service {
  IdentityOptions o;
  std::shared_ptr<store::SqlDatabase> db;
  std::shared_ptr<const KeySet> keys;
  std::shared_ptr<const std::string> dummy_hash;  // verified for unknown emails: equal timing
  std::shared_ptr<HashGate> gate;
  std::string discovery;
  Metrics m;
};

// An email as stored and compared: trimmed, ASCII letters folded (the domain is case-blind and
// mail systems treat the local part so in practice), one '@', no spaces or controls.
bool normalise_email(std::string_view in, std::string& out);

// The credential of `Authorization: Bearer ...`, or empty.
std::string_view bearer_token(const http::RequestHead& request);

// An access token of ours, verified (signature, issuer, audience, times): its user and session.
// The session's liveness is the caller's to check (it is in the store).
struct AccessToken {
  std::string sub;
  std::string sid;
};
core::Result<AccessToken> verify_access_token(const Service& svc, std::string_view token);

// API keys: "citadel_" + a public prefix (12 base32 characters, looked up) + "_" + the secret
// (32 random bytes, base64url; stored as a digest).
constexpr std::string_view kApiKeyMark = "citadel_";
bool split_api_key(std::string_view key, std::string& prefix);

// Whether a held permission ("resource:action", either part "*", or "*" alone) grants `wanted`.
bool permission_grants(std::string_view held, std::string_view wanted);
bool any_grants(const std::vector<std::string>& held, std::string_view wanted);
// A permission as it may be stored: `*`, or `resource:action` from letters, digits and ._-*
bool valid_permission(std::string_view p);
// A role or key name: 1 to 64 of letters, digits and ._-
bool valid_name(std::string_view n);

}  // namespace citadel::platform::identity
