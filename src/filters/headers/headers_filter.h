// The `headers` filter: add, set and remove request and response header fields.
//
//   filters:
//     - headers:
//         request:  { set: { X-Env: prod }, add: { X-Tag: a }, remove: [X-Debug] }
//         response: { set: { Cache-Control: no-store }, remove: [Server] }
//
// Order within a side: remove, then set, then add. Values are static strings from the config.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "http/pipeline/filter.h"

namespace citadel::filters {

struct HeaderOps {
  std::vector<std::string> remove;
  std::vector<std::pair<std::string, std::string>> set;
  std::vector<std::pair<std::string, std::string>> add;
  bool empty() const { return remove.empty() && set.empty() && add.empty(); }
  void apply(http::HeaderMap& headers) const;
};

class HeadersFilterFactory final : public pipeline::FilterFactory {
 public:
  HeadersFilterFactory(HeaderOps request, HeaderOps response)
      : request_(std::move(request)), response_(std::move(response)) {}
  pipeline::Filter* create(core::Arena& arena) const override;

 private:
  HeaderOps request_;
  HeaderOps response_;
};

class HeadersFilterConfig final : public pipeline::FilterConfigParser {
 public:
  std::string_view name() const override { return "headers"; }
  std::unique_ptr<pipeline::FilterFactory> parse(const core::ConfigNode& node,
                                                 pipeline::BuildContext& ctx) const override;
};

}  // namespace citadel::filters
