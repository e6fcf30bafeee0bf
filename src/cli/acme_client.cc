#include "cli/acme_client.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <utility>

#include "core/ascii.h"
#include "core/file_io.h"
#include "http/transport/acme_crypto.h"

namespace citadel::cli {
namespace json = boost::json;
namespace acme = http::acme;

namespace {

constexpr uint64_t kMaxBackoffMs = 86'400'000;  // a day
constexpr uint64_t kMaxSleepMs = 12 * 3'600'000ull;  // wake at least this often to look again
constexpr uint64_t kRequestTimeoutMs = 30'000;
constexpr uint64_t kAnswerDelayMs = 250;  // lets every worker take the snapshot with the answer
constexpr int kMaxPolls = 60;
constexpr int64_t kMinReorderS = 600;  // after an issuance, the next order waits at least this
constexpr int64_t kClockSkewS = 3600;  // what a fresh certificate's validity may be off by
constexpr int kMaxBadNonce = 5;

int64_t wall_now() { return static_cast<int64_t>(::time(nullptr)); }

// What a server said, fit for one log line: control characters (a forged line, terminal
// escapes) become '?', and at most 300 bytes are kept.
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 300)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? '?' : c;
  }
  if (s.size() > 300) out += "...";
  return out;
}

bool is_https(std::string_view url) { return url.rfind("https://", 0) == 0; }

// RFC 4648's URL-safe alphabet: what nonces and tokens are made of.
bool is_base64url(std::string_view s) {
  return s.find_first_not_of(
             "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
         std::string_view::npos;
}

// A file-name-safe form of `s`: letters, digits, '.', '-'; anything else becomes '_'.
std::string safe_name(const std::string& s) {
  std::string out;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-';
    out += ok ? c : '_';
  }
  if (out.empty() || out[0] == '.') out.insert(out.begin(), '_');
  return out;
}

std::string hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

// The string member `key` of a JSON object, or "".
std::string str_of(const json::value& v, std::string_view key) {
  const json::object* o = v.if_object();
  if (o == nullptr) return "";
  const json::value* m = o->if_contains(key);
  if (m == nullptr || !m->is_string()) return "";
  return std::string(m->get_string());
}

// Whether the certificate names every domain of `domains`.
bool covers(const acme::CertificateInfo& info, const std::vector<std::string>& domains) {
  for (const auto& d : domains) {
    if (std::find(info.names.begin(), info.names.end(), d) == info.names.end()) return false;
  }
  return true;
}

// Seconds of `Retry-After` (RFC 9110, 10.2.3: a number of seconds; a date is taken as 1s),
// clamped to [1, 10].
uint64_t retry_after_ms(const http::client::ClientResponse& r) {
  const std::string* h = r.header("Retry-After");
  uint64_t s = 1;
  if (h != nullptr && !h->empty() && h->find_first_not_of("0123456789") == std::string::npos &&
      h->size() < 6) {
    s = std::stoull(*h);
  }
  return std::clamp<uint64_t>(s, 1, 10) * 1000;
}

// A server's Retry-After on an error (429 rateLimited, 503), in ms: 0 when absent or not a
// number of seconds.
uint64_t error_retry_after_ms(const http::client::ClientResponse& r) {
  const std::string* h = r.ok() && (r.status == 429 || r.status == 503)
                             ? r.header("Retry-After")
                             : nullptr;
  if (h == nullptr || h->empty() || h->find_first_not_of("0123456789") != std::string::npos) {
    return 0;  // absent, or an HTTP-date (not read: the doubling backoff applies)
  }
  if (h->size() > 9) return kMaxBackoffMs;  // more than a day anyway
  return std::stoull(*h) * 1000;
}

// Takes HTTP-01 answers (by token) and TLS-ALPN-01 certificates (by name) out of `s`.
void withdraw(proxy::AcmeState& s, const std::vector<std::string>& tokens,
              const std::vector<std::string>& names) {
  for (const auto& t : tokens) s.http01.erase(t);
  s.tls_alpn01.erase(std::remove_if(s.tls_alpn01.begin(), s.tls_alpn01.end(),
                                    [&](const auto& c) {
                                      return std::find(names.begin(), names.end(), c.name) !=
                                             names.end();
                                    }),
                     s.tls_alpn01.end());
}

}  // namespace

std::string acme_account_dir(const std::string& data_dir, const proxy::AcmeConfig& a) {
  // "https://host:port/path" -> "host_port-1a2b3c4d"
  std::string rest = a.directory.substr(a.directory.find("://") + 3);
  std::string host = rest.substr(0, rest.find('/'));
  return data_dir + "/acme/" + safe_name(host) + "-" + hex(acme::sha256(a.directory)).substr(0, 8);
}

std::string acme_certificate_dir(const std::string& data_dir, const proxy::AcmeConfig& a) {
  return acme_account_dir(data_dir, a) + "/" + safe_name(a.domains.front());
}

// --- one certificate's job ---------------------------------------------------------------------

class AcmeManager::Job {
 public:
  Job(AcmeManager& owner, std::string data_dir, proxy::AcmeConfig cfg, bool plain_listener)
      : owner_(owner),
        data_dir_(std::move(data_dir)),
        cfg_(std::move(cfg)),
        http01_(cfg_.challenge == proxy::AcmeChallenge::kHttp01 ||
                (cfg_.challenge == proxy::AcmeChallenge::kAuto && plain_listener)),
        timer_(&Job::on_timer, this) {
    http::TlsClientOptions o;
    o.ca = cfg_.ca;
    auto tls = http::TlsClientContext::create(o);
    http::client::ClientOptions co = owner_.client_options_;
    if (tls.ok()) co.tls = std::move(tls.value());
    else tls_error_ = tls.error().message();
    client_ = std::make_unique<http::client::HttpClient>(owner_.loop_, owner_.blocks_, co);
  }
  ~Job() {
    owner_.loop_.timers().cancel(timer_);
    request_.cancel();
  }

  bool same(const proxy::AcmeConfig& c, bool plain_listener, const std::string& data_dir) const {
    const bool h = c.challenge == proxy::AcmeChallenge::kHttp01 ||
                   (c.challenge == proxy::AcmeChallenge::kAuto && plain_listener);
    return c == cfg_ && h == http01_ && data_dir == data_dir_;
  }
  // The challenge answers this job has published (to withdraw when it goes).
  const std::vector<std::string>& http01_tokens() const { return http01_tokens_; }
  const std::vector<std::string>& alpn_names() const { return alpn_names_; }
  const std::string& first() const { return cfg_.domains.front(); }
  int64_t not_after() const { return served_.not_after; }
  bool issued() const { return !served_.self_signed && served_.not_after != 0; }

  // Learns what certificate is served (placeholder or not) and schedules the next order.
  void begin(const http::TlsCertificateFiles& current) {
    auto info = acme::certificate_info(current.cert_pem);
    served_ = info.ok() ? info.value() : acme::CertificateInfo{};
    if (!info.ok()) served_.self_signed = true;
    if (!served_.self_signed && !covers(served_, cfg_.domains)) {
      owner_.log_.log(observe::LogLevel::kInfo,
                      "ACME: the certificate for %s does not name every configured domain; "
                      "ordering one that does",
                      first().c_str());
    }
    schedule();
  }

 private:
  using Next = std::function<void(http::client::ClientResponse&)>;

  // When the served certificate is due (seconds since the epoch): now (0) when it is a
  // placeholder or misses a domain; else `renew_before` ahead of its expiry, or a third of its
  // validity ahead when `renew_before` is not set or not shorter than the validity (it would
  // order again and again).
  int64_t due() const {
    if (served_.self_signed || !covers(served_, cfg_.domains)) return 0;
    const int64_t life = served_.not_after - served_.not_before;
    int64_t before = static_cast<int64_t>(cfg_.renew_before_s);
    if (before <= 0 || before >= life) before = life / 3;
    // A certificate that is due as soon as it is issued (a very short validity) is not ordered
    // again and again.
    // The certificate's own start counts as an issuance too (CAs backdate it up to an hour), so
    // a restart or an edited block does not order again at once either.
    const int64_t issued = std::max(last_issued_, served_.not_before + kClockSkewS);
    return std::max(served_.not_after - before, issued + kMinReorderS);
  }

  void schedule() {
    if (cfg_.renew_before_s > 0 && !served_.self_signed &&
        static_cast<int64_t>(cfg_.renew_before_s) >= served_.not_after - served_.not_before &&
        !warned_renew_before_) {
      warned_renew_before_ = true;
      owner_.log_.log(observe::LogLevel::kWarn,
                      "ACME: renew_before for %s is not shorter than the certificate's validity; "
                      "renewing when a third of it is left",
                      first().c_str());
    }
    const int64_t wait_s = due() - wall_now();
    if (wait_s <= 0) {
      owner_.loop_.arm(timer_, 0);
      return;
    }
    owner_.log_.log(observe::LogLevel::kInfo, "ACME: certificate for %s renews in %llds",
                    first().c_str(), static_cast<long long>(wait_s));
    owner_.loop_.arm(timer_, std::min<uint64_t>(static_cast<uint64_t>(wait_s) * 1000,
                                                kMaxSleepMs));
  }

  static void on_timer(void* arg) {
    auto* j = static_cast<Job*>(arg);
    if (j->step_) {
      auto step = std::move(j->step_);
      j->step_ = nullptr;
      step();
      return;
    }
    // Asleep until due: look again (the wait is capped, and the clock may have moved).
    if (j->due() > wall_now()) {
      j->schedule();
      return;
    }
    j->order();
  }

  // Runs `fn` after `ms` on the job's timer.
  void later(uint64_t ms, std::function<void()> fn) {
    step_ = std::move(fn);
    owner_.loop_.arm(timer_, ms);
  }

  void fail(const std::string& why) {
    ++owner_.orders_failed_;
    withdraw_answers();
    backoff_ms_ = backoff_ms_ == 0 ? cfg_.retry_ms : std::min(backoff_ms_ * 2, kMaxBackoffMs);
    // A server that says when to come back (rate limited, unavailable) is believed, up to a day.
    backoff_ms_ = std::min(std::max(backoff_ms_, server_retry_ms_), kMaxBackoffMs);
    server_retry_ms_ = 0;
    owner_.log_.log(observe::LogLevel::kWarn,
                    "ACME: certificate for %s not obtained (%s); retry in %llus", first().c_str(),
                    why.c_str(), static_cast<unsigned long long>((backoff_ms_ + 999) / 1000));
    nonce_.clear();
    later(backoff_ms_, [this] { order(); });
  }

  // The problem document of an error answer (RFC 7807, RFC 8555 6.7), for the log.
  static std::string problem(const http::client::ClientResponse& r) {
    if (!r.ok()) {
      return std::string(http::client::error_name(r.error)) + ": " + r.error_detail;
    }
    std::string out = "status " + std::to_string(r.status);
    json::error_code ec;
    json::value v = json::parse(r.body, ec);
    if (!ec) {
      std::string type = str_of(v, "type");
      std::string detail = str_of(v, "detail");
      if (!type.empty()) out += ", " + printable(type);
      if (!detail.empty()) out += ": " + printable(detail);
    }
    return out;
  }

  // Parses a JSON object answer; false (after fail()) when it is not one.
  bool parse(const http::client::ClientResponse& r, const char* what, json::value& out) {
    json::error_code ec;
    out = json::parse(r.body, ec);
    if (ec || !out.is_object()) {
      fail(std::string(what) + ": the answer is not a JSON object");
      return false;
    }
    return true;
  }

  void send(http::client::ClientRequest req, Next next) {
    req.timeout_ms = kRequestTimeoutMs;
    req.max_response_body = 1 << 20;
    // RFC 8555, 6.1: clients send a User-Agent.
    req.headers.push_back({"User-Agent", owner_.user_agent_});
    request_ = client_->send(req, [this, next = std::move(next)](http::client::ClientResponse& r) {
      // A nonce is base64url (RFC 8555, 6.5.1): anything else is not sent back.
      if (const std::string* n = r.header("Replay-Nonce");
          n != nullptr && !n->empty() && n->size() <= 256 && is_base64url(*n)) {
        nonce_ = *n;
      }
      server_retry_ms_ = error_retry_after_ms(r);
      next(r);
    });
  }

  // A JWS-signed POST (RFC 8555, 6.2): with the account's JWK until the account URL is known,
  // then with its kid. An empty payload is a POST-as-GET.
  void post(std::string url, std::string payload, Next next, int bad_nonces = 0) {
    // Every URL the server hands out is followed over https only: plain http would give the
    // signed requests (the contact, the CSR) and the certificate to anyone on the path.
    if (!is_https(url) || !is_https(new_nonce_)) {
      fail("the server gave a URL that is not https: " + printable(is_https(url) ? new_nonce_
                                                                                  : url));
      return;
    }
    if (nonce_.empty()) {
      http::client::ClientRequest req;
      req.method = "HEAD";
      req.url = new_nonce_;
      send(req, [this, url = std::move(url), payload = std::move(payload), next = std::move(next),
                 bad_nonces](http::client::ClientResponse& r) mutable {
        if (nonce_.empty()) {
          fail("newNonce: " + (r.ok() ? "no Replay-Nonce in the answer" : problem(r)));
          return;
        }
        post(std::move(url), std::move(payload), std::move(next), bad_nonces);
      });
      return;
    }
    json::object header;
    header["alg"] = "ES256";
    header["nonce"] = nonce_;
    header["url"] = url;
    if (kid_.empty()) header["jwk"] = json::parse(account_key_->jwk());
    else header["kid"] = kid_;
    nonce_.clear();  // each nonce is used once
    auto body = acme::jws(*account_key_, json::serialize(header), payload);
    if (!body.ok()) {
      fail(body.error().message());
      return;
    }
    http::client::ClientRequest req;
    req.method = "POST";
    req.url = url;
    req.headers = {{"Content-Type", "application/jose+json"}};
    req.body = body.value();
    send(req, [this, url, payload, next = std::move(next),
               bad_nonces](http::client::ClientResponse& r) mutable {
      if (r.ok() && r.status == 400 && bad_nonces < kMaxBadNonce) {
        json::error_code ec;
        json::value v = json::parse(r.body, ec);
        if (!ec && str_of(v, "type") == "urn:ietf:params:acme:error:badNonce") {
          ++owner_.bad_nonces_;
          post(std::move(url), std::move(payload), std::move(next), bad_nonces + 1);
          return;
        }
      }
      next(r);
    });
  }

  // --- the order, step by step ---

  void order() {
    if (!tls_error_.empty()) {
      fail("tls: " + tls_error_);
      return;
    }
    if (!account_key_ && !load_account_key()) return;
    authorizations_.clear();
    next_authz_ = 0;
    http::client::ClientRequest req;
    req.url = cfg_.directory;
    send(req, [this](http::client::ClientResponse& r) {
      if (!r.ok() || r.status != 200) {
        fail("directory: " + problem(r));
        return;
      }
      json::value v;
      if (!parse(r, "directory", v)) return;
      new_nonce_ = str_of(v, "newNonce");
      new_account_ = str_of(v, "newAccount");
      new_order_ = str_of(v, "newOrder");
      const json::value* meta = v.as_object().if_contains("meta");
      const json::value* eab = meta != nullptr && meta->is_object()
                                   ? meta->as_object().if_contains("externalAccountRequired")
                                   : nullptr;
      if (eab != nullptr && eab->is_bool() && eab->get_bool()) {
        fail("the server requires External Account Binding, which Citadel does not do");
        return;
      }
      if (new_nonce_.empty() || new_account_.empty() || new_order_.empty()) {
        fail("directory: newNonce, newAccount or newOrder missing");
        return;
      }
      account();
    });
  }

  bool load_account_key() {
    const std::string dir = acme_account_dir(data_dir_, cfg_);
    const std::string path = dir + "/account.key";
    std::string pem;
    const int err = core::read_file(path, pem);
    if (err != 0 && err != ENOENT) {
      // Unreadable is not absent: a new key would be a new account.
      fail(path + ": " + std::strerror(err));
      return false;
    }
    if (err == 0) {
      auto key = acme::EcKey::from_pem(pem);
      if (!key.ok()) {
        fail(path + ": " + key.error().message());
        return false;
      }
      account_key_ = std::make_unique<acme::EcKey>(std::move(key.value()));
      return true;
    }
    auto key = acme::EcKey::generate();
    if (!key.ok()) {
      fail(key.error().message());
      return false;
    }
    core::Status s = core::make_private_dirs(dir);
    if (s.ok()) s = core::write_file_atomic(path, key.value().private_pem());
    if (!s.ok()) {
      fail(s.message());
      return false;
    }
    account_key_ = std::make_unique<acme::EcKey>(std::move(key.value()));
    return true;
  }

  void account() {
    // newAccount with a known key answers with that account (200) instead of a new one (201).
    json::object p;
    p["termsOfServiceAgreed"] = true;
    if (!cfg_.email.empty()) p["contact"] = json::array{json::value("mailto:" + cfg_.email)};
    kid_.clear();
    post(new_account_, json::serialize(p), [this](http::client::ClientResponse& r) {
      const std::string* loc = r.ok() ? r.header("Location") : nullptr;
      if (!r.ok() || (r.status != 200 && r.status != 201) || loc == nullptr) {
        fail("newAccount: " + problem(r));
        return;
      }
      json::value v;
      if (!parse(r, "newAccount", v)) return;
      if (const std::string status = str_of(v, "status"); status != "valid") {
        fail("the account is " + printable(status.empty() ? "of no status" : status));
        return;
      }
      kid_ = *loc;
      new_order();
    });
  }

  void new_order() {
    json::array ids;
    for (const auto& d : cfg_.domains) ids.push_back(json::object{{"type", "dns"}, {"value", d}});
    json::object p;
    p["identifiers"] = std::move(ids);
    post(new_order_, json::serialize(p), [this](http::client::ClientResponse& r) {
      const std::string* loc = r.ok() ? r.header("Location") : nullptr;
      if (!r.ok() || r.status != 201 || loc == nullptr) {
        fail("newOrder: " + problem(r));
        return;
      }
      order_url_ = *loc;
      json::value v;
      if (!parse(r, "newOrder", v)) return;
      finalize_url_ = str_of(v, "finalize");
      const json::value* az = v.as_object().if_contains("authorizations");
      if (finalize_url_.empty() || az == nullptr || !az->is_array()) {
        fail("newOrder: finalize or authorizations missing");
        return;
      }
      // One authorization per identifier (RFC 8555, 7.1.3); a longer list is walked by no one.
      if (az->get_array().size() > cfg_.domains.size()) {
        fail("newOrder: more authorizations than domains");
        return;
      }
      for (const auto& a : az->get_array()) {
        if (a.is_string()) authorizations_.emplace_back(a.get_string());
      }
      polls_ = 0;
      authorize();
    });
  }

  // The next authorization: answer its challenge unless it is valid already.
  void authorize() {
    if (next_authz_ == authorizations_.size()) {
      withdraw_answers();
      finalize();
      return;
    }
    const std::string url = authorizations_[next_authz_];
    post(url, "", [this](http::client::ClientResponse& r) {
      if (!r.ok() || r.status != 200) {
        fail("authorization: " + problem(r));
        return;
      }
      json::value v;
      if (!parse(r, "authorization", v)) return;
      const std::string status = str_of(v, "status");
      const json::value* ident = v.as_object().if_contains("identifier");
      const std::string name = core::ascii_lower(ident != nullptr ? str_of(*ident, "value") : "");
      if (status == "valid") {
        ++next_authz_;
        polls_ = 0;
        answered_ = false;  // the next one is answered afresh
        authorize();
        return;
      }
      if (status != "pending") {
        fail("authorization for " + printable(name) + " is " + printable(status) + ": " +
             challenge_error(v));
        return;
      }
      if (answered_) {
        // Answered and still pending: the server is validating.
        if (++polls_ > kMaxPolls) {
          fail("authorization for " + name + " still pending after " +
               std::to_string(kMaxPolls) + " looks");
          return;
        }
        later(retry_after_ms(r), [this] { authorize(); });
        return;
      }
      answer(v, name);
    });
  }

  // The error a failed challenge of an authorization reports.
  static std::string challenge_error(const json::value& authz) {
    const json::value* chs = authz.as_object().if_contains("challenges");
    if (chs == nullptr || !chs->is_array()) return "no detail";
    for (const auto& c : chs->get_array()) {
      const json::value* e = c.is_object() ? c.as_object().if_contains("error") : nullptr;
      if (e != nullptr) return printable(str_of(*e, "type") + ": " + str_of(*e, "detail"));
    }
    return "no detail";
  }

  void answer(const json::value& authz, const std::string& name) {
    const char* want = http01_ ? "http-01" : "tls-alpn-01";
    // The server names what it authorizes; only a configured domain gets an answer (a name
    // Citadel never asked for would become a challenge certificate nothing serves).
    if (std::find(cfg_.domains.begin(), cfg_.domains.end(), name) == cfg_.domains.end()) {
      fail("the server asks to authorize \"" + printable(name) +
           "\", which is not a configured domain");
      return;
    }
    const json::value* chs = authz.as_object().if_contains("challenges");
    std::string url;
    std::string token;
    if (chs != nullptr && chs->is_array()) {
      for (const auto& c : chs->get_array()) {
        if (str_of(c, "type") == want) {
          url = str_of(c, "url");
          token = str_of(c, "token");
        }
      }
    }
    // A token is base64url (RFC 8555, 8.1): nothing else may reach a path or a map key.
    if (url.empty() || token.empty() || token.size() > 256 || !is_base64url(token)) {
      fail(std::string("the server offers no usable ") + want + " challenge for " + name);
      return;
    }
    const std::string key_authorization = token + "." + account_key_->thumbprint();
    owner_.log_.log(observe::LogLevel::kInfo, "ACME: answering the %s challenge for %s", want,
                    name.c_str());
    bool published = false;
    if (http01_) {
      http01_tokens_.push_back(token);
      published = owner_.update([&](proxy::AcmeState& s) { s.http01[token] = key_authorization; });
    } else {
      auto key = acme::EcKey::generate();
      auto cert = key.ok() ? acme::self_signed(key.value(), {name}, 7,
                                               acme::sha256(key_authorization))
                           : core::Result<std::string>(key.error());
      if (!cert.ok()) {
        fail(cert.error().message());
        return;
      }
      alpn_names_.push_back(name);
      published = owner_.update([&](proxy::AcmeState& s) {
        s.tls_alpn01.erase(std::remove_if(s.tls_alpn01.begin(), s.tls_alpn01.end(),
                                          [&](const auto& c) { return c.name == name; }),
                           s.tls_alpn01.end());
        s.tls_alpn01.push_back({name, cert.value(), key.value().private_pem()});
      });
    }
    if (!published) {
      // Telling the server to validate an answer nobody serves would only fail the
      // validation and count against the account's failed-validation limit.
      fail("the challenge answer could not be published");
      return;
    }
    answered_ = true;
    polls_ = 0;
    // Workers take a published snapshot from their loops within microseconds to milliseconds;
    // the delay covers that without a round of acknowledgements.
    later(kAnswerDelayMs, [this, url] {
      post(url, "{}", [this](http::client::ClientResponse& r) {
        if (!r.ok() || r.status != 200) {
          fail("challenge: " + problem(r));
          return;
        }
        later(retry_after_ms(r), [this] { authorize(); });
      });
    });
  }

  // Takes back the challenge answers this job published.
  void withdraw_answers() {
    answered_ = false;
    if (http01_tokens_.empty() && alpn_names_.empty()) return;
    auto tokens = std::move(http01_tokens_);
    auto names = std::move(alpn_names_);
    http01_tokens_.clear();
    alpn_names_.clear();
    owner_.update([&](proxy::AcmeState& s) { withdraw(s, tokens, names); });
  }

  void finalize() {
    auto key = acme::EcKey::generate();
    if (!key.ok()) {
      fail(key.error().message());
      return;
    }
    auto csr = acme::csr_der(key.value(), cfg_.domains);
    if (!csr.ok()) {
      fail(csr.error().message());
      return;
    }
    cert_key_ = std::make_unique<acme::EcKey>(std::move(key.value()));
    json::object p;
    p["csr"] = acme::base64url(csr.value());
    polls_ = 0;
    post(finalize_url_, json::serialize(p), [this](http::client::ClientResponse& r) {
      if (!r.ok() || r.status != 200) {
        fail("finalize: " + problem(r));
        return;
      }
      on_order(r);
    });
  }

  // An order object: valid (download), processing (look again), else a failure.
  void on_order(http::client::ClientResponse& r) {
    json::value v;
    if (!parse(r, "order", v)) return;
    const std::string status = str_of(v, "status");
    if (status == "valid") {
      const std::string cert = str_of(v, "certificate");
      if (cert.empty()) {
        fail("order: valid without a certificate URL");
        return;
      }
      download(cert);
      return;
    }
    if ((status == "processing" || status == "ready") && ++polls_ <= kMaxPolls) {
      later(retry_after_ms(r), [this] {
        post(order_url_, "", [this](http::client::ClientResponse& r2) {
          if (!r2.ok() || r2.status != 200) {
            fail("order: " + problem(r2));
            return;
          }
          on_order(r2);
        });
      });
      return;
    }
    fail("order is " + printable(status) + (polls_ > kMaxPolls ? " after too many looks" : ""));
  }

  void download(const std::string& url) {
    post(url, "", [this](http::client::ClientResponse& r) {
      if (!r.ok() || r.status != 200) {
        fail("certificate: " + problem(r));
        return;
      }
      const std::string key_pem = cert_key_->private_pem();
      if (key_pem.empty()) {
        fail("cannot write the certificate's key");
        return;
      }
      auto info = acme::certificate_info(r.body);
      if (!info.ok()) {
        fail("certificate: " + info.error().message());
        return;
      }
      auto chain = acme::check_chain(r.body);
      if (!chain.ok()) {
        fail("certificate: " + chain.error().message());
        return;
      }
      const std::string& pem = chain.value();  // the certificates alone, re-encoded
      if (!acme::key_matches(pem, key_pem)) {
        fail("certificate: it is not for the key the request was signed with");
        return;
      }
      const int64_t now = wall_now();
      if (info.value().not_before > now + kClockSkewS ||
          info.value().not_after <= now + kClockSkewS) {
        fail("certificate: it is not valid now (or expires within the hour)");
        return;
      }
      if (!covers(info.value(), cfg_.domains)) {
        fail("certificate: it does not name every configured domain");
        return;
      }
      const std::string dir = acme_certificate_dir(data_dir_, cfg_);
      core::Status s = core::make_private_dirs(dir);
      // The key first: a crash between the two leaves a new key with the old certificate,
      // which the next start sees as not matching and orders again.
      if (s.ok()) s = core::write_file_atomic(dir + "/key.pem", key_pem);
      if (s.ok()) s = core::write_file_atomic(dir + "/cert.pem", pem);
      if (!s.ok()) {
        // Served anyway: better a certificate kept only in memory than none.
        owner_.log_.log(observe::LogLevel::kError, "ACME: cannot store the certificate: %s",
                        s.message().c_str());
      }
      ++owner_.orders_ok_;
      backoff_ms_ = 0;
      served_ = info.value();
      last_issued_ = wall_now();
      owner_.log_.log(observe::LogLevel::kInfo,
                      "ACME: certificate for %s obtained (serial %s, valid until %lld)",
                      first().c_str(), served_.serial.c_str(),
                      static_cast<long long>(served_.not_after));
      http::TlsCertificateFiles files;
      files.cert_pem = pem;
      files.key_pem = key_pem;
      cert_key_.reset();
      owner_.update([&](proxy::AcmeState& st) { st.certificates[cfg_.key()] = files; });
      schedule();
    });
  }

  AcmeManager& owner_;
  std::string data_dir_;
  proxy::AcmeConfig cfg_;
  bool http01_;
  core::Timer timer_;
  std::function<void()> step_;  // what the timer runs next; empty: the renewal check
  std::unique_ptr<http::client::HttpClient> client_;
  std::string tls_error_;
  http::client::RequestHandle request_;
  acme::CertificateInfo served_;
  uint64_t backoff_ms_ = 0;
  uint64_t server_retry_ms_ = 0;  // the last answer's Retry-After on an error
  int64_t last_issued_ = -kMinReorderS;  // when this job last obtained a certificate
  std::unique_ptr<acme::EcKey> account_key_;
  std::unique_ptr<acme::EcKey> cert_key_;
  std::string nonce_;
  std::string new_nonce_, new_account_, new_order_;
  std::string kid_;
  std::string order_url_, finalize_url_;
  std::vector<std::string> authorizations_;
  size_t next_authz_ = 0;
  int polls_ = 0;
  bool answered_ = false;
  bool warned_renew_before_ = false;
  std::vector<std::string> http01_tokens_;
  std::vector<std::string> alpn_names_;
};

// --- the manager -------------------------------------------------------------------------------

AcmeManager::AcmeManager(core::EventLoop& loop, core::BlockPool& blocks, observe::ErrorLog& log,
                         http::client::ClientOptions client, std::string user_agent,
                         Publish publish)
    : loop_(loop),
      blocks_(blocks),
      log_(log),
      client_options_(std::move(client)),
      user_agent_(std::move(user_agent)),
      publish_(std::move(publish)) {}

AcmeManager::~AcmeManager() = default;

namespace {

// The acme blocks of `cfg`, one per first domain, and whether it has a plain listener.
std::vector<const proxy::AcmeConfig*> acme_blocks(const proxy::Config& cfg, bool& plain) {
  std::vector<const proxy::AcmeConfig*> out;
  plain = false;
  for (const auto& l : cfg.listeners) {
    if (!l.tls) {
      plain = true;
      continue;
    }
    if (!l.tls->acme) continue;
    bool seen = false;
    for (const auto* a : out) seen = seen || a->domains.front() == l.tls->acme->domains.front();
    if (!seen) out.push_back(&*l.tls->acme);
  }
  return out;
}

}  // namespace

core::Result<std::shared_ptr<const proxy::AcmeState>> AcmeManager::prepare(
    const proxy::Config& cfg) {
  bool plain = false;
  auto blocks = acme_blocks(cfg, plain);
  auto next = std::make_shared<proxy::AcmeState>(*state_);
  bool changed = false;
  for (const auto* a : blocks) {
    const std::string key = a->key();
    auto job = jobs_.find(a->domains.front());
    if (job != jobs_.end() && job->second->same(*a, plain, cfg.data_dir) &&
        next->certificates.count(key) != 0) {
      continue;  // its job goes on with what it has
    }
    // A stored certificate that is still valid is served (even when it misses a domain the
    // config now names: the job orders a new one at once).
    const std::string dir = acme_certificate_dir(cfg.data_dir, *a);
    http::TlsCertificateFiles files;
    bool stored = core::read_file(dir + "/cert.pem", files.cert_pem) == 0 &&
                  core::read_file(dir + "/key.pem", files.key_pem) == 0;
    if (stored) {
      auto info = acme::certificate_info(files.cert_pem);
      stored = info.ok() && info.value().not_after > wall_now() &&
               info.value().not_before <= wall_now() + kClockSkewS &&
               acme::key_matches(files.cert_pem, files.key_pem);
      if (!stored) {
        log_.log(observe::LogLevel::kWarn,
                 "ACME: the stored certificate in %s is expired, not yet valid, unreadable or "
                 "not for its key; ordering a new one",
                 dir.c_str());
      }
    }
    if (!stored) {
      auto it = next->certificates.find(key);
      if (it != next->certificates.end()) continue;  // keep serving what this process has
      auto p = acme::placeholder_certificate(a->domains);
      if (!p.ok()) return p.error();
      files = std::move(p.value());
    }
    next->certificates[key] = std::move(files);
    changed = true;
  }
  if (changed) state_ = next;
  return state_;
}

void AcmeManager::start(const proxy::Config& cfg) {
  bool plain = false;
  auto blocks = acme_blocks(cfg, plain);
  std::map<std::string, std::unique_ptr<Job>> next;
  std::vector<std::unique_ptr<Job>> gone;
  for (const auto* a : blocks) {
    const std::string& first = a->domains.front();
    auto it = jobs_.find(first);
    if (it != jobs_.end() && it->second->same(*a, plain, cfg.data_dir)) {
      next[first] = std::move(it->second);
      continue;
    }
    auto cert = state_->certificates.find(a->key());
    if (cert == state_->certificates.end()) continue;  // not prepared (cannot happen)
    auto job = std::make_unique<Job>(*this, cfg.data_dir, *a, plain);
    job->begin(cert->second);
    next[first] = std::move(job);
  }
  for (auto& [_, job] : jobs_) {
    if (job) gone.push_back(std::move(job));
  }
  jobs_ = std::move(next);
  // The answers of jobs that stopped mid-order go with them; their certificates stay in the
  // state (a block put back serves its certificate at once), unused by the snapshots.
  std::vector<std::string> tokens;
  std::vector<std::string> names;
  for (const auto& job : gone) {
    tokens.insert(tokens.end(), job->http01_tokens().begin(), job->http01_tokens().end());
    names.insert(names.end(), job->alpn_names().begin(), job->alpn_names().end());
  }
  gone.clear();  // their requests and timers are cancelled
  if (!tokens.empty() || !names.empty()) {
    update([&](proxy::AcmeState& s) { withdraw(s, tokens, names); });
  }
}

bool AcmeManager::update(const std::function<void(proxy::AcmeState&)>& change) {
  auto next = std::make_shared<proxy::AcmeState>(*state_);
  change(*next);
  state_ = next;
  return publish_(state_);
}

void AcmeManager::collect(std::string& out) const {
  out += "# HELP citadel_acme_certificate_expiry_seconds When the ACME certificate expires (Unix "
         "time; absent until one is issued)\n"
         "# TYPE citadel_acme_certificate_expiry_seconds gauge\n";
  for (const auto& [first, job] : jobs_) {
    if (!job->issued()) continue;
    out += "citadel_acme_certificate_expiry_seconds{domain=\"" + first + "\"} " +
           std::to_string(job->not_after()) + "\n";
  }
  out += "# HELP citadel_acme_orders_total ACME orders, by outcome\n"
         "# TYPE citadel_acme_orders_total counter\n";
  out += "citadel_acme_orders_total{result=\"ok\"} " + std::to_string(orders_ok_) + "\n";
  out += "citadel_acme_orders_total{result=\"failed\"} " + std::to_string(orders_failed_) + "\n";
  out += "# HELP citadel_acme_bad_nonces_total Requests the ACME server refused for their nonce "
         "(each retried with a fresh one)\n"
         "# TYPE citadel_acme_bad_nonces_total counter\n";
  out += "citadel_acme_bad_nonces_total " + std::to_string(bad_nonces_) + "\n";
}

}  // namespace citadel::cli
