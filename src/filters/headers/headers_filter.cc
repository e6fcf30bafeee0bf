#include "filters/headers/headers_filter.h"

#include "http/http1/parser.h"

namespace citadel::filters {
namespace {

class HeadersFilter final : public pipeline::Filter {
 public:
  HeadersFilter(const HeaderOps& request, const HeaderOps& response)
      : request_(request), response_(response) {}
  pipeline::FilterStatus on_request_headers(pipeline::FilterContext&, http::RequestHead& head,
                                         bool) override {
    request_.apply(head.headers);
    return pipeline::FilterStatus::kContinue;
  }
  pipeline::FilterStatus on_response_headers(pipeline::FilterContext&, http::ResponseHead& head,
                                          bool) override {
    response_.apply(head.headers);
    return pipeline::FilterStatus::kContinue;
  }

 private:
  const HeaderOps& request_;
  const HeaderOps& response_;
};

// Fields that frame the message or manage the connection belong to the codecs: a filter that
// set them would contradict the framing the codec writes (two Content-Lengths, Content-Length
// with chunked: a desync for whatever sits in front or behind).
bool protocol_field(const std::string& name) {
  static const char* const kFields[] = {"content-length", "transfer-encoding", "connection",
                                        "keep-alive",     "proxy-connection",  "upgrade",
                                        "te",             "trailer"};
  for (const char* f : kFields) {
    if (http::iequals(name, f)) return true;
  }
  return false;
}

HeaderOps parse_side(const core::ConfigNode& n) {
  HeaderOps ops;
  if (!n.defined() || !n.expect_map()) return ops;
  n.allow_keys({"add", "set", "remove"});
  for (const char* kind : {"add", "set"}) {
    core::ConfigNode m = n[kind];
    if (!m.defined() || !m.expect_map()) continue;
    for (const auto& key : m.keys()) {
      std::string value = m[key].str();
      if (!http::http1::is_token(key)) m.error("invalid header name \"" + key + "\"");
      else if (protocol_field(key)) m.error("\"" + key + "\" is managed by Citadel's codecs");
      if (!http::safe_field_value(value)) {
        m[key].error("control characters are not allowed in header values");
      } else if (!value.empty() && (value.front() == ' ' || value.front() == '\t' ||
                                    value.back() == ' ' || value.back() == '\t')) {
        m[key].error("a field value has no leading or trailing whitespace");
      }
      (std::string_view(kind) == "add" ? ops.add : ops.set).emplace_back(key, value);
    }
  }
  for (const auto& name : n["remove"].str_list()) {
    if (!http::http1::is_token(name)) n["remove"].error("invalid header name \"" + name + "\"");
    else if (protocol_field(name)) n["remove"].error("\"" + name + "\" is managed by Citadel's codecs");
    ops.remove.push_back(name);
  }
  return ops;
}

}  // namespace

void HeaderOps::apply(http::HeaderMap& headers) const {
  for (const auto& name : remove) headers.remove(name);
  for (const auto& [name, value] : set) headers.set(name, value);
  for (const auto& [name, value] : add) headers.add(name, value);
}

pipeline::Filter* HeadersFilterFactory::create(core::Arena& arena) const {
  return pipeline::arena_new<HeadersFilter>(arena, request_, response_);
}

std::unique_ptr<pipeline::FilterFactory> HeadersFilterConfig::parse(
    const core::ConfigNode& node, pipeline::BuildContext&) const {
  if (!node.expect_map()) return nullptr;
  node.allow_keys({"request", "response"});
  HeaderOps req = parse_side(node["request"]);
  HeaderOps resp = parse_side(node["response"]);
  return std::make_unique<HeadersFilterFactory>(std::move(req), std::move(resp));
}

}  // namespace citadel::filters
