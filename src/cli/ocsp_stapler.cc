#include "cli/ocsp_stapler.h"

#include <algorithm>
#include <utility>

#include "http/transport/ocsp.h"

namespace citadel::cli {
namespace {

constexpr uint64_t kMinRefreshMs = 60'000;
constexpr uint64_t kMaxRefreshMs = 12 * 3600'000ull;
constexpr uint64_t kMaxBackoffMs = 3600'000;

}  // namespace

OcspStapler::OcspStapler(core::EventLoop& loop, http::client::HttpClient& client,
                         observe::ErrorLog& log, Publish publish)
    : loop_(loop), client_(client), log_(log), publish_(std::move(publish)) {}

OcspStapler::~OcspStapler() {
  for (auto& [_, e] : entries_) loop_.timers().cancel(e->timer);
}

void OcspStapler::set_certificates(const std::vector<std::string>& files) {
  // Responses to drop are dropped together, published once at the end (publishing builds a
  // snapshot, whose publication calls back here).
  auto next = std::make_shared<OcspStaples>(*staples_);
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (std::find(files.begin(), files.end(), it->first) == files.end()) {
      loop_.timers().cancel(it->second->timer);
      next->erase(it->first);
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& f : files) {
    auto& e = entries_[f];
    if (e == nullptr) {
      e = std::make_unique<Entry>();
      e->owner = this;
      e->file = f;
    } else if (e->stamp == FileStamp::of(f)) {
      continue;  // the same certificate: its schedule stands
    } else {
      next->erase(f);  // a renewed certificate: the old response is not about it
    }
    e->stamp = FileStamp::of(f);
    e->unsupported = false;
    e->backoff_ms = 0;
    e->request.cancel();
    e->expires_ms = 0;
    loop_.arm(e->timer, 0);
  }
  if (next->size() != staples_->size()) {
    staples_ = next;
    publish_(staples_);
  }
}

void OcspStapler::on_timer(void* arg) {
  auto* e = static_cast<Entry*>(arg);
  e->owner->fetch(*e);
}

void OcspStapler::fetch(Entry& e) {
  auto q = http::ocsp_query(e.file);
  if (!q.ok()) {
    // Most often: the certificate names no responder (a private CA). Said once.
    e.unsupported = true;
    log_.log(observe::LogLevel::kDebug, "OCSP stapling off for %s: %s", e.file.c_str(),
             q.error().message().c_str());
    return;
  }
  http::client::ClientRequest req;
  req.method = "POST";
  req.url = q.value().url;
  req.headers = {{"Content-Type", "application/ocsp-request"},
                 {"Accept", "application/ocsp-response"}};
  req.body = q.value().request_der;
  req.timeout_ms = 10'000;
  req.max_response_body = 64 * 1024;
  Entry* entry = &e;
  e.request = client_.send(req, [this, entry](http::client::ClientResponse& r) {
    if (!r.ok()) {
      retry(*entry, std::string(http::client::error_name(r.error)) + ": " + r.error_detail);
      return;
    }
    if (r.status != 200) {
      retry(*entry, "responder answered " + std::to_string(r.status));
      return;
    }
    auto ttl = http::ocsp_check(entry->file, r.body);
    if (!ttl.ok()) {
      retry(*entry, ttl.error().message());
      return;
    }
    entry->backoff_ms = 0;
    const uint64_t ttl_ms = static_cast<uint64_t>(std::max<int64_t>(ttl.value(), 0)) * 1000;
    entry->expires_ms = loop_.now_ms() + ttl_ms;
    store(entry->file, &r.body);
    uint64_t refresh = ttl_ms / 2;
    refresh = std::clamp<uint64_t>(refresh, kMinRefreshMs, kMaxRefreshMs);
    log_.log(observe::LogLevel::kInfo, "OCSP response for %s stapled (next refresh in %llus)",
             entry->file.c_str(), static_cast<unsigned long long>(refresh / 1000));
    loop_.arm(entry->timer, refresh);
  });
}

void OcspStapler::retry(Entry& e, const std::string& why) {
  if (e.expires_ms != 0 && loop_.now_ms() >= e.expires_ms) {
    e.expires_ms = 0;
    store(e.file, nullptr);  // an expired response would make clients refuse the handshake
  }
  e.backoff_ms = e.backoff_ms == 0 ? kMinRefreshMs : std::min(e.backoff_ms * 2, kMaxBackoffMs);
  log_.log(observe::LogLevel::kWarn, "OCSP fetch for %s failed (%s); retry in %llus",
           e.file.c_str(), why.c_str(), static_cast<unsigned long long>(e.backoff_ms / 1000));
  loop_.arm(e.timer, e.backoff_ms);
}

void OcspStapler::store(const std::string& file, const std::string* der) {
  auto it = staples_->find(file);
  if (der == nullptr && it == staples_->end()) return;
  if (der != nullptr && it != staples_->end() && it->second == *der) return;
  auto next = std::make_shared<OcspStaples>(*staples_);
  if (der == nullptr) next->erase(file);
  else (*next)[file] = *der;
  staples_ = next;
  publish_(staples_);
}

}  // namespace citadel::cli
