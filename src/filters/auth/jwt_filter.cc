#include "filters/auth/jwt_filter.h"

#include <boost/json.hpp>
#include <cctype>
#include <cstring>
#include <ctime>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/file_io.h"
#include "crypto/jose.h"
#include "crypto/jwt.h"
#include "crypto/random.h"
#include "http/client/http_client.h"

namespace citadel::filters {
namespace {

namespace json = boost::json;

constexpr size_t kMaxWaiters = 1024;      // per worker, while its keys are being fetched
constexpr int64_t kRefetchGapMs = 30'000;  // an unknown kid refetches at most this often
constexpr size_t kMaxKeys = 64;

struct JwtOptions {
  std::string issuer;
  std::vector<std::string> audiences;
  std::vector<crypto::JwsAlg> algorithms;
  int64_t leeway_s = 60;
  int64_t max_lifetime_s = 0;
  std::string jwks_url;
  uint64_t jwks_cache_ms = 600'000;
  std::string query;  // a query parameter that may carry the token instead of the header
  std::string realm = "citadel";
  std::vector<std::pair<std::string, std::string>> forward;  // claim -> header name
  size_t cache_entries = 8192;
};

struct KeyRing {
  std::vector<std::unique_ptr<crypto::Jwk>> keys;
  std::vector<const crypto::Jwk*> views;
};

// {"keys": [...]}: the signature keys that load (an "enc" key, or one of a type this build does
// not verify, is skipped, not fatal: a provider's set often holds more than tokens need).
core::Result<std::shared_ptr<const KeyRing>> parse_jwks(std::string_view text) {
  json::error_code ec;
  json::value v = json::parse(text, ec);
  const json::value* keys = !ec && v.is_object() ? v.as_object().if_contains("keys") : nullptr;
  if (keys == nullptr || !keys->is_array()) {
    return core::Status::error("not a JWKS document ({\"keys\": [...]})");
  }
  auto ring = std::make_shared<KeyRing>();
  for (const json::value& k : keys->as_array()) {
    if (!k.is_object() || ring->keys.size() >= kMaxKeys) continue;
    const json::value* use = k.as_object().if_contains("use");
    if (use != nullptr && (!use->is_string() || use->as_string() != "sig")) continue;
    auto jwk = crypto::Jwk::parse(json::serialize(k));
    if (!jwk.ok()) continue;
    ring->keys.push_back(std::make_unique<crypto::Jwk>(std::move(jwk.value())));
    ring->views.push_back(ring->keys.back().get());
  }
  if (ring->keys.empty()) return core::Status::error("the JWKS holds no usable signature key");
  return std::shared_ptr<const KeyRing>(std::move(ring));
}

class JwtFilter;

struct Waiter {
  pipeline::StreamHandle handle;
  JwtFilter* filter;
};

struct Verified {
  int64_t exp = 0;          // Unix seconds; the entry is dropped from then on
  uint64_t generation = 0;  // the key set it was verified under
  std::vector<std::pair<std::string, std::string>> headers;  // to forward
};

// Looks tokens up by the view in the request head: no copy on a cache hit.
struct TokenHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// One worker's keys, cache and waiting requests: touched by that worker only.
struct WorkerState {
  std::shared_ptr<const KeyRing> keys;
  uint64_t generation = 0;
  uint64_t next_refresh_ms = 0;
  uint64_t last_fetch_ms = 0;
  bool fetched_once = false;
  bool fetching = false;
  std::vector<Waiter> waiters;
  std::unordered_map<std::string, Verified, TokenHash, std::equal_to<>> cache;
};

struct Metrics {
  observe::Counter* allowed = nullptr;
  observe::Counter* missing = nullptr;
  observe::Counter* invalid = nullptr;
  observe::Counter* unavailable = nullptr;
  observe::Counter* cache_hits = nullptr;
  observe::Counter* fetch_ok = nullptr;
  observe::Counter* fetch_failed = nullptr;
};

// What every snapshot with these options shares (kept across reloads by BuildContext::state).
struct Shared : std::enable_shared_from_this<Shared> {
  Shared(JwtOptions opts, std::shared_ptr<const KeyRing> file_keys, size_t workers)
      : o(std::move(opts)), slots(workers) {
    if (file_keys) {
      for (size_t i = 0; i < workers; ++i) {
        slots.at(i).keys = file_keys;
        slots.at(i).fetched_once = true;
        slots.at(i).next_refresh_ms = UINT64_MAX;
      }
    }
  }
  const JwtOptions o;
  pipeline::PerWorker<WorkerState> slots;
};

int64_t wall_s() { return static_cast<int64_t>(::time(nullptr)); }

// A claim as a header value: strings as they are, numbers and booleans as JSON writes them,
// arrays of those joined by ","; anything with a control character is not forwarded.
bool header_value(const json::value& v, std::string& out) {
  auto scalar = [](const json::value& s, std::string& o) {
    if (s.is_string()) {
      o.append(s.as_string().data(), s.as_string().size());
    } else if (s.is_int64() || s.is_uint64() || s.is_double() || s.is_bool()) {
      o += json::serialize(s);
    } else {
      return false;
    }
    return true;
  };
  out.clear();
  if (v.is_array()) {
    bool first = true;
    for (const auto& e : v.as_array()) {
      if (!first) out += ',';
      first = false;
      if (!scalar(e, out)) return false;
    }
  } else if (!scalar(v, out)) {
    return false;
  }
  for (char c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  }
  return out.size() <= 4096;
}

enum class Outcome : uint8_t { kAllowed, kWait, kInvalid, kUnavailable };

class JwtFilter final : public pipeline::Filter {
 public:
  // `shared` outlives the filter: the factory holds it, and the stream its snapshot.
  JwtFilter(Shared& shared, const Metrics& m) : shared_(&shared), m_(m) {}

  pipeline::FilterStatus on_request_headers(pipeline::FilterContext& ctx, http::RequestHead& head,
                                            bool) override {
    ctx_ = &ctx;
    head_ = &head;
    const JwtOptions& o = shared_->o;
    for (const auto& [claim, header] : o.forward) head.headers.remove(header);
    if (!extract(head)) {
      m_.missing->add(ctx.worker().index());
      return refuse(false, "");
    }
    WorkerState& w = slot();
    auto hit = w.cache.find(token_);
    if (hit != w.cache.end()) {
      if (hit->second.exp > wall_s() && hit->second.generation == w.generation) {
        m_.cache_hits->add(ctx.worker().index());
        return allow(hit->second);
      }
      w.cache.erase(hit);
    }
    switch (check(w)) {
      case Outcome::kAllowed:
        return pipeline::FilterStatus::kContinue;
      case Outcome::kWait:
        return pipeline::FilterStatus::kStop;
      case Outcome::kInvalid:
        return refuse(true, error_);
      case Outcome::kUnavailable:
        m_.unavailable->add(ctx.worker().index());
        ctx.send_local_reply(503, "the token's keys cannot be fetched now\n");
        return pipeline::FilterStatus::kStop;
    }
    return pipeline::FilterStatus::kContinue;
  }

  // The worker's keys changed (a fetch ended): verify again, then go on or answer.
  void keys_ready() {
    WorkerState& w = slot();
    if (!w.keys) {
      m_.unavailable->add(ctx_->worker().index());
      ctx_->send_local_reply(503, "the token's keys cannot be fetched now\n");
      return;
    }
    waited_ = true;
    switch (check(w)) {
      case Outcome::kAllowed:
        ctx_->continue_request();
        return;
      case Outcome::kWait:  // not again: a fetch was just made
      case Outcome::kInvalid:
      case Outcome::kUnavailable:
        m_.invalid->add(ctx_->worker().index());
        send_401(true, error_);
        return;
    }
  }

 private:
  WorkerState& slot() { return shared_->slots.at(ctx_->worker().index()); }

  bool extract(const http::RequestHead& head) {
    const http::HeaderField* auth = head.headers.find("authorization");
    if (auth != nullptr) {
      std::string_view v = auth->value;
      if (v.size() > 7 && http::iequals(v.substr(0, 7), "Bearer ")) {
        v.remove_prefix(7);
        while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
        token_ = v;
        return !token_.empty();
      }
      return false;
    }
    if (shared_->o.query.empty()) return false;
    // name=value in the query; a token is base64url and dots, so it needs no decoding.
    std::string_view q = head.query;
    while (!q.empty()) {
      size_t amp = q.find('&');
      std::string_view pair = q.substr(0, amp);
      q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
      if (pair.size() > shared_->o.query.size() && pair[shared_->o.query.size()] == '=' &&
          pair.substr(0, shared_->o.query.size()) == shared_->o.query) {
        token_ = pair.substr(shared_->o.query.size() + 1);
        return !token_.empty();
      }
    }
    return false;
  }

  Outcome check(WorkerState& w) {
    const JwtOptions& o = shared_->o;
    const uint64_t now_ms = ctx_->loop().now_ms();
    if (!o.jwks_url.empty() && (!w.keys || now_ms >= w.next_refresh_ms) && !waited_) {
      // No keys: wait for a fetch, unless the last one failed moments ago (the JWKS server is
      // not asked again for every request while it is down).
      if (!w.keys && w.fetched_once && !w.fetching && now_ms < w.next_refresh_ms) {
        return Outcome::kUnavailable;
      }
      if (!w.keys) return wait(w, now_ms);
      fetch(w, now_ms);  // a refresh in the background: the current keys serve meanwhile
    }
    crypto::JwtRules rules;
    rules.algorithms = o.algorithms;
    rules.issuer = o.issuer;
    rules.audiences = o.audiences;
    rules.leeway_s = o.leeway_s;
    rules.max_lifetime_s = o.max_lifetime_s;
    auto claims = crypto::jwt_verify(token_, w.keys->views, rules, wall_s());
    if (!claims.ok()) {
      error_ = claims.error().message();
      // A kid we do not know may be a key the issuer just rotated in: fetch once more.
      if (!o.jwks_url.empty() && !waited_ && error_.find("unknown key id") != std::string::npos &&
          (w.last_fetch_ms == 0 || now_ms >= w.last_fetch_ms + kRefetchGapMs || w.fetching)) {
        return wait(w, now_ms);
      }
      return Outcome::kInvalid;
    }
    Verified entry;
    entry.exp = claims.value().exp != 0 ? claims.value().exp : wall_s() + 60;
    entry.generation = w.generation;
    if (!o.forward.empty()) {
      json::error_code ec;
      json::value payload = json::parse(claims.value().payload, ec);
      if (!ec && payload.is_object()) {
        std::string value;
        for (const auto& [claim, header] : o.forward) {
          const json::value* c = payload.as_object().if_contains(claim);
          if (c != nullptr && header_value(*c, value)) entry.headers.emplace_back(header, value);
        }
      }
    }
    if (w.cache.size() >= o.cache_entries) {
      const int64_t now = wall_s();
      std::erase_if(w.cache, [&](const auto& e) { return e.second.exp <= now; });
      if (w.cache.size() >= o.cache_entries) w.cache.clear();
    }
    auto [it, _] = w.cache.insert_or_assign(std::string(token_), std::move(entry));
    allow(it->second);
    return Outcome::kAllowed;
  }

  pipeline::FilterStatus allow(const Verified& v) {
    m_.allowed->add(ctx_->worker().index());
    for (const auto& [header, value] : v.headers) {
      head_->headers.add(ctx_->arena().copy(header), ctx_->arena().copy(value));
    }
    return pipeline::FilterStatus::kContinue;
  }

  Outcome wait(WorkerState& w, uint64_t now_ms) {
    if (w.waiters.size() >= kMaxWaiters) {
      error_ = "too many requests wait for the token's keys";
      return Outcome::kInvalid;
    }
    w.waiters.push_back({ctx_->handle(), this});
    if (!w.fetching) fetch(w, now_ms);
    return Outcome::kWait;
  }

  void fetch(WorkerState& w, uint64_t now_ms) {
    if (w.fetching) return;
    w.fetching = true;
    w.last_fetch_ms = now_ms;
    http::client::ClientRequest req;
    req.url = shared_->o.jwks_url;
    req.headers.push_back({"Accept", "application/json"});
    req.timeout_ms = 5000;
    req.max_response_body = 256 * 1024;
    const size_t index = ctx_->worker().index();
    pipeline::WorkerContext* worker = &ctx_->worker();
    std::shared_ptr<Shared> shared = shared_->shared_from_this();
    Metrics m = m_;
    // Detached: the fetch serves the worker, not this request; it holds the shared state.
    ctx_->worker()
        .http_client()
        .send(req,
              [shared, index, worker, m](http::client::ClientResponse& r) {
                fetched(*shared, index, *worker, m, r);
              })
        .detach();
  }

  static void fetched(Shared& shared, size_t index, pipeline::WorkerContext& worker,
                      const Metrics& m, http::client::ClientResponse& r) {
    WorkerState& w = shared.slots.at(index);
    w.fetching = false;
    const uint64_t now_ms = worker.loop().now_ms();
    std::string why;
    if (!r.ok()) {
      why = std::string(http::client::error_name(r.error)) + " " + r.error_detail;
    } else if (r.status != 200) {
      why = "status " + std::to_string(r.status);
    } else {
      auto ring = parse_jwks(r.body);
      if (ring.ok()) {
        w.keys = std::move(ring.value());
        ++w.generation;
        w.cache.clear();
        w.next_refresh_ms = now_ms + shared.o.jwks_cache_ms;
        m.fetch_ok->add(index);
      } else {
        why = ring.error().message();
      }
    }
    if (!why.empty()) {
      m.fetch_failed->add(index);
      // Keys we had stay in use; without any, try again soon.
      w.next_refresh_ms = now_ms + (w.keys ? kRefetchGapMs : 5'000);
      worker.log().log(observe::LogLevel::kWarn, "jwt: cannot fetch %s: %s",
                       shared.o.jwks_url.c_str(), why.substr(0, 200).c_str());
    }
    w.fetched_once = true;
    std::vector<Waiter> waiting = std::move(w.waiters);
    w.waiters.clear();
    for (const Waiter& wt : waiting) {
      if (wt.handle.valid()) wt.filter->keys_ready();
    }
  }

  pipeline::FilterStatus refuse(bool invalid, const std::string& why) {
    if (invalid) m_.invalid->add(ctx_->worker().index());
    send_401(invalid, why);
    return pipeline::FilterStatus::kStop;
  }

  // RFC 6750, 3: a missing token names the realm only; a bad one says invalid_token. The
  // reason goes to the client as error_description (what a developer needs; nothing secret).
  void send_401(bool invalid, const std::string& why) {
    http::ResponseHead head;
    head.status = 401;
    std::string challenge = "Bearer realm=\"" + shared_->o.realm + "\"";
    if (invalid) {
      std::string d;
      for (char c : why.substr(0, 120)) d.push_back(c == '"' || c == '\\' || c < 0x20 ? '\'' : c);
      challenge += ", error=\"invalid_token\", error_description=\"" + d + "\"";
    }
    std::string_view body = invalid ? "invalid token\n" : "a bearer token is required\n";
    head.headers.add("WWW-Authenticate", ctx_->arena().copy(challenge));
    head.headers.add("Content-Type", "text/plain");
    head.framing = http::BodyFraming::kContentLength;
    head.content_length = body.size();
    ctx_->send_response_headers(head, false);
    ctx_->send_response_data(body, true);
  }

  Shared* shared_;
  const Metrics& m_;
  pipeline::FilterContext* ctx_ = nullptr;
  http::RequestHead* head_ = nullptr;
  std::string_view token_;  // in the request head (held while the filter waits)
  std::string error_;
  bool waited_ = false;
};

class JwtFilterFactory final : public pipeline::FilterFactory {
 public:
  JwtFilterFactory(std::shared_ptr<Shared> shared, Metrics m)
      : shared_(std::move(shared)), m_(m) {}
  pipeline::Filter* create(core::Arena& arena) const override {
    return pipeline::arena_new<JwtFilter>(arena, *shared_, m_);
  }

 private:
  std::shared_ptr<Shared> shared_;
  Metrics m_;
};

bool valid_header_name(const std::string& h) {
  if (h.empty()) return false;
  for (char c : h) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return false;
  }
  return true;
}

}  // namespace

std::unique_ptr<pipeline::FilterFactory> JwtFilterConfig::parse(
    const core::ConfigNode& node, pipeline::BuildContext& ctx) const {
  if (!node.expect_map()) return nullptr;
  node.allow_keys({"issuer", "audiences", "algorithms", "jwks", "jwks_file", "jwks_cache",
                   "leeway", "max_lifetime", "query", "realm", "forward"});
  JwtOptions o;
  bool ok = true;
  o.issuer = node["issuer"].str();
  o.audiences = node["audiences"].str_list();
  core::ConfigNode algs = node["algorithms"];
  std::vector<std::string> names = algs.defined()
      ? algs.str_list()
      : std::vector<std::string>{"EdDSA", "ES256", "ES384", "ES512", "RS256", "RS384",
                                 "RS512", "PS256", "PS384", "PS512"};
  for (const auto& n : names) {
    crypto::JwsAlg a;
    if (!crypto::jws_alg_from_name(n, a)) {
      algs.error("unknown algorithm \"" + n + "\" (none is never accepted)");
      ok = false;
      continue;
    }
    o.algorithms.push_back(a);
  }
  if (algs.defined() && names.empty()) {
    algs.error("at least one algorithm is needed");
    ok = false;
  }
  o.leeway_s = static_cast<int64_t>(node["leeway"].duration_ms(60'000) / 1000);
  o.max_lifetime_s = static_cast<int64_t>(node["max_lifetime"].duration_ms(0) / 1000);
  o.jwks_cache_ms = node["jwks_cache"].nonzero_duration_ms(o.jwks_cache_ms);
  o.query = node["query"].str();
  o.realm = node["realm"].str(o.realm);
  for (char c : o.realm) {
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
      node["realm"].error("the realm cannot hold quotes, backslashes or control characters");
      ok = false;
      break;
    }
  }
  core::ConfigNode fwd = node["forward"];
  if (fwd.defined() && fwd.expect_map()) {
    for (const auto& claim : fwd.keys()) {
      std::string header = fwd[claim].str();
      if (!valid_header_name(header)) {
        fwd[claim].error("expected a header name such as X-User-Id");
        ok = false;
        continue;
      }
      o.forward.emplace_back(claim, header);
    }
  }
  core::ConfigNode url = node["jwks"];
  core::ConfigNode file = node["jwks_file"];
  std::shared_ptr<const KeyRing> file_keys;
  std::string file_digest;  // the file's content: a changed file makes a new key set
  if (url.defined() == file.defined()) {
    node.error("the jwt filter needs exactly one of `jwks` (a URL) and `jwks_file`");
    ok = false;
  } else if (url.defined()) {
    o.jwks_url = url.str();
    if (o.jwks_url.rfind("https://", 0) != 0 && o.jwks_url.rfind("http://", 0) != 0) {
      url.error("expected an http:// or https:// URL");
      ok = false;
    }
  } else {
    std::string path = file.str();
    std::string text;
    int err = core::read_file(path, text, 1 << 20);
    if (err != 0) {
      file.error("cannot read " + path + ": " + std::strerror(err));
      ok = false;
    } else {
      auto ring = parse_jwks(text);
      if (!ring.ok()) {
        file.error(path + ": " + ring.error().message());
        ok = false;
      } else {
        file_keys = std::move(ring.value());
        file_digest = crypto::secret_digest(text);
      }
    }
  }
  if (!ok) return nullptr;
  Metrics m;
  observe::Registry& reg = ctx.metrics();
  const std::string route = "route=\"" + std::string(ctx.route()) + "\"";
  const char* help = "Requests the jwt filter judged, by outcome";
  m.allowed = reg.counter("citadel_jwt_requests_total", help, route + ",outcome=\"allowed\"");
  m.missing = reg.counter("citadel_jwt_requests_total", help, route + ",outcome=\"missing\"");
  m.invalid = reg.counter("citadel_jwt_requests_total", help, route + ",outcome=\"invalid\"");
  m.unavailable =
      reg.counter("citadel_jwt_requests_total", help, route + ",outcome=\"unavailable\"");
  m.cache_hits = reg.counter("citadel_jwt_cache_hits_total",
                             "Tokens found verified in a worker's cache", route);
  const char* fetches = "JWKS fetches by the jwt filter, by outcome";
  m.fetch_ok = reg.counter("citadel_jwt_jwks_fetches_total", fetches, "outcome=\"success\"");
  m.fetch_failed = reg.counter("citadel_jwt_jwks_fetches_total", fetches, "outcome=\"failure\"");
  // Kept across snapshots while the options stay the same (the fetched keys, the cache).
  std::string key = o.issuer + "|" + o.jwks_url + "|" + file.str() + "|" +
                    std::to_string(o.leeway_s) + "|" + std::to_string(o.max_lifetime_s) + "|" +
                    std::to_string(o.jwks_cache_ms) + "|" + o.query + "|" + o.realm;
  for (const auto& a : o.audiences) key += "|a:" + a;
  for (auto a : o.algorithms) key += "|" + std::string(crypto::jws_alg_name(a));
  for (const auto& [c, h] : o.forward) key += "|f:" + c + "=" + h;
  if (file_keys) key += "|keys:" + file_digest;
  const size_t workers = ctx.workers();
  auto shared = ctx.state<Shared>(key, [&] {
    return std::make_shared<Shared>(o, file_keys, workers);
  });
  return std::make_unique<JwtFilterFactory>(std::move(shared), m);
}

}  // namespace citadel::filters
