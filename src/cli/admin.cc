#include "cli/admin.h"

namespace citadel::cli {

class AdminStream final : public http::StreamHandler {
 public:
  AdminStream(AdminBackend& backend, AdminStreamFactory& factory)
      : backend_(backend), factory_(factory) {}
  void begin(http::ServerStream& ds) {
    ds_ = &ds;
    req_.reset();
    arena_.reset();
    body_bytes_ = 0;
    done_ = false;
  }
  http::RequestHead& request_head() override { return req_; }
  core::Arena& arena() override { return arena_; }
  void on_request_headers(bool end_stream) override {
    if (end_stream) respond();
  }
  void on_request_data(std::string_view data, bool end_stream) override {
    body_bytes_ += data.size();
    if (end_stream && !done_) respond();
  }
  void on_write_ready() override {}
  void on_reset(std::string_view, int) override { done_ = true; }
  void on_complete() override {
    ds_ = nullptr;
    factory_.recycle(this);
  }

 private:
  void respond() {
    done_ = true;
    AdminResponse r = dispatch();
    resp_.reset();
    resp_.status = r.status;
    resp_.headers.add("Content-Type", r.content_type);
    resp_.headers.add("Cache-Control", "no-store");
    resp_.framing = http::BodyFraming::kContentLength;
    resp_.content_length = r.body.size();
    body_ = std::move(r.body);
    http::ServerStream* ds = ds_;
    ds->send_headers(resp_, false);
    ds->send_data(body_, true);
  }

  AdminResponse dispatch() {
    std::string_view path = req_.path;
    std::string_view m = req_.method;
    bool get = m == "GET" || m == "HEAD";
    if (path == "/metrics" && get) {
      return {200, "text/plain; version=0.0.4; charset=utf-8", backend_.metrics_text()};
    }
    if (path == "/healthz" && get) return {200, "text/plain; charset=utf-8", "ok\n"};
    if (path == "/readyz" && get) {
      return backend_.ready() ? AdminResponse{200, "text/plain; charset=utf-8", "ready\n"}
                              : AdminResponse{503, "text/plain; charset=utf-8", "not ready\n"};
    }
    if (path == "/config" && get) return {200, "application/json", backend_.config_json()};
    if (path == "/clusters" && get) return {200, "application/json", backend_.clusters_json()};
    if (path == "/config/reload") {
      if (m != "POST") return {405, "text/plain; charset=utf-8", "use POST\n"};
      return backend_.reload();
    }
    if (path == "/" && get) {
      return {200, "text/plain; charset=utf-8",
              "citadel admin: /metrics /healthz /readyz /config /clusters "
              "POST /config/reload\n"};
    }
    return {404, "text/plain; charset=utf-8", "not found\n"};
  }

  AdminBackend& backend_;
  AdminStreamFactory& factory_;
  http::ServerStream* ds_ = nullptr;
  http::RequestHead req_;
  http::ResponseHead resp_;
  core::Arena arena_{2048};
  std::string body_;
  uint64_t body_bytes_ = 0;
  bool done_ = false;
};

AdminStreamFactory::~AdminStreamFactory() {
  for (auto* s : free_) delete s;
}

http::StreamHandler* AdminStreamFactory::new_stream(http::ServerStream& downstream) {
  AdminStream* s;
  if (free_.empty()) {
    s = new AdminStream(backend_, *this);
  } else {
    s = free_.back();
    free_.pop_back();
  }
  s->begin(downstream);
  return s;
}

}  // namespace citadel::cli
