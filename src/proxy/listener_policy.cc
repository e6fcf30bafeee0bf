#include "proxy/listener_policy.h"

#include <cstdio>

#include "proxy/forwarding.h"

namespace citadel::proxy {
namespace {

class HstsFilter final : public pipeline::Filter {
 public:
  explicit HstsFilter(const std::string& value) : value_(value) {}
  pipeline::FilterStatus on_response_headers(pipeline::FilterContext& ctx,
                                             http::ResponseHead& head, bool) override {
    if (ctx.connection().tls && head.headers.find("strict-transport-security") == nullptr) {
      head.headers.add("Strict-Transport-Security", value_);
    }
    return pipeline::FilterStatus::kContinue;
  }

 private:
  const std::string& value_;
};

class ClientSubjectFilter final : public pipeline::Filter {
 public:
  ClientSubjectFilter(const std::string& field, bool set) : field_(field), set_(set) {}
  pipeline::FilterStatus on_request_headers(pipeline::FilterContext& ctx, http::RequestHead& head,
                                            bool) override {
    head.headers.remove(field_);
    const std::string_view subject = ctx.connection().peer_subject();
    if (set_ && !subject.empty()) head.headers.add(field_, subject);
    return pipeline::FilterStatus::kContinue;
  }

 private:
  const std::string& field_;
  bool set_;
};

class HttpsRedirectFilter final : public pipeline::Filter {
 public:
  explicit HttpsRedirectFilter(uint16_t port) : port_(port) {}
  pipeline::FilterStatus on_request_headers(pipeline::FilterContext& ctx, http::RequestHead& req,
                                            bool) override {
    if (ctx.connection().tls) return pipeline::FilterStatus::kContinue;
    // The host the client asked for (validated before any filter runs), without its port; the
    // target as sent (origin-form), or its path and query (absolute-form).
    std::string_view host = req.authority;
    if (host.empty()) {
      ctx.send_local_reply(400, "a redirect to https needs a Host\n");
      return pipeline::FilterStatus::kStop;
    }
    if (host.front() == '[') {
      host = host.substr(0, host.find(']') + 1);
    } else if (size_t colon = host.rfind(':'); colon != std::string_view::npos) {
      host = host.substr(0, colon);
    }
    char port_text[8] = {0};
    if (port_ != 443) std::snprintf(port_text, sizeof port_text, ":%u", unsigned{port_});
    core::Arena& arena = ctx.arena();
    std::string_view target = req.target;
    if (is_absolute_form(target)) target = arena.concat({req.path, query_part(req)});
    if (target.empty() || target.front() != '/') target = "/";
    http::ResponseHead head;
    // 301 for GET and HEAD (cached, as browsers expect); 308 keeps another method and its body.
    head.status = req.method == "GET" || req.method == "HEAD" ? 301 : 308;
    head.headers.add("Location", arena.concat({"https://", host, std::string_view(port_text),
                                               target}));
    head.framing = http::BodyFraming::kContentLength;
    head.content_length = 0;
    ctx.send_response_headers(head, true);
    return pipeline::FilterStatus::kStop;
  }

 private:
  uint16_t port_;
};

class AcmeHttp01Filter final : public pipeline::Filter {
 public:
  explicit AcmeHttp01Filter(const std::map<std::string, std::string>& answers)
      : answers_(answers) {}
  pipeline::FilterStatus on_request_headers(pipeline::FilterContext& ctx, http::RequestHead& req,
                                            bool) override {
    static constexpr std::string_view kPrefix = "/.well-known/acme-challenge/";
    if (ctx.connection().tls || req.path.substr(0, kPrefix.size()) != kPrefix) {
      return pipeline::FilterStatus::kContinue;
    }
    if (req.method != "GET" && req.method != "HEAD") {
      ctx.send_local_reply(405, "ACME challenges are fetched with GET\n");
      return pipeline::FilterStatus::kStop;
    }
    auto it = answers_.find(std::string(req.path.substr(kPrefix.size())));
    if (it == answers_.end()) {
      ctx.send_local_reply(404, "no such ACME challenge\n");
    } else {
      ctx.send_local_reply(200, it->second, "application/octet-stream");
    }
    return pipeline::FilterStatus::kStop;
  }

 private:
  const std::map<std::string, std::string>& answers_;  // the factory's, which outlives streams
};

}  // namespace

pipeline::Filter* AcmeHttp01FilterFactory::create(core::Arena& arena) const {
  return pipeline::arena_new<AcmeHttp01Filter>(arena, *answers_);
}

pipeline::Filter* HstsFilterFactory::create(core::Arena& arena) const {
  return pipeline::arena_new<HstsFilter>(arena, value_);
}

pipeline::Filter* ClientSubjectFilterFactory::create(core::Arena& arena) const {
  return pipeline::arena_new<ClientSubjectFilter>(arena, field_, set_);
}

pipeline::Filter* HttpsRedirectFilterFactory::create(core::Arena& arena) const {
  return pipeline::arena_new<HttpsRedirectFilter>(arena, port_);
}

}  // namespace citadel::proxy
