// The `decompress` filter: request bodies sent with Content-Encoding gzip, br or zstd reach the
// target decoded, within limits that make a decompression bomb cheap to refuse.
//
//   filters:
//     - decompress: { max_size: 10MiB, max_ratio: 100 }
//
// A request whose Content-Encoding is one of those codings (alone) loses that field and its
// Content-Length (it goes on chunked) and its body is decoded piece by piece as it arrives. Once
// the decoded bytes pass max_size, or max_ratio times the encoded bytes (past the first 64 KiB,
// so that small bodies of repeated bytes pass), the request is answered 413 and nothing more is
// decoded: memory stays at one piece and CPU at what the limit allows. A body that is not valid
// for its coding is answered 400. Other codings pass as they are.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "http/pipeline/filter.h"

namespace citadel::filters {

struct DecompressOptions {
  uint64_t max_size = 10ull << 20;
  uint64_t max_ratio = 100;
};

class DecompressFilterFactory final : public pipeline::FilterFactory {
 public:
  explicit DecompressFilterFactory(DecompressOptions o) : options_(o) {}
  pipeline::Filter* create(core::Arena& arena) const override;

 private:
  DecompressOptions options_;
};

class DecompressFilterConfig final : public pipeline::FilterConfigParser {
 public:
  std::string_view name() const override { return "decompress"; }
  std::unique_ptr<pipeline::FilterFactory> parse(const core::ConfigNode& node,
                                                 pipeline::BuildContext& ctx) const override;
};

}  // namespace citadel::filters
