// The `compress` filter: responses compressed with gzip (zlib), brotli or zstd, chosen from the
// client's Accept-Encoding q-values and the server's order of preference, streamed piece by
// piece (the body is never held whole).
//
//   filters:
//     - compress:
//         encodings: [zstd, br, gzip]          # server preference, best first (default)
//         min_length: 1KiB                     # smaller known-length bodies go as they are
//         types: [text/*, application/json]    # content types that are compressed
//         levels: { gzip: 5, br: 4, zstd: 3 }
//
// A response is compressed when it may carry a body (not HEAD, 1xx, 204, 206, 304), has no
// Content-Encoding yet, its Cache-Control lacks no-transform, its type is listed, its length is
// unknown or at least min_length, and no trailer fields are announced (the last compressed bytes
// must come before them). Such a response gets Content-Encoding, loses Content-Length (it goes
// chunked), and a strong ETag becomes weak (the bytes differ from the identity ones). Every
// response of a compressible type gets `Vary: Accept-Encoding`, compressed or not, so that a
// cache keeps the variants apart.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "http/pipeline/filter.h"

namespace citadel::filters {

enum class Encoding : uint8_t { kIdentity, kGzip, kBrotli, kZstd };
std::string_view encoding_token(Encoding e);

// The encoding to use for `accept_encoding` (an Accept-Encoding value, "" when absent): the
// first of `preference` whose q-value is above 0 (a `*` covers those not named), else identity.
Encoding negotiate(std::string_view accept_encoding, const std::vector<Encoding>& preference);

struct CompressOptions {
  std::vector<Encoding> preference{Encoding::kZstd, Encoding::kBrotli, Encoding::kGzip};
  uint64_t min_length = 1024;
  std::vector<std::string> types{"text/*",
                                 "application/json",
                                 "application/javascript",
                                 "application/xml",
                                 "application/xhtml+xml",
                                 "application/rss+xml",
                                 "application/atom+xml",
                                 "application/wasm",
                                 "image/svg+xml",
                                 "font/ttf",
                                 "font/otf"};
  int gzip_level = 5;
  int brotli_level = 4;
  int zstd_level = 3;
  // True when `content_type` (parameters ignored, case-insensitive) is listed.
  bool compressible(std::string_view content_type) const;
};

class CompressFilterFactory final : public pipeline::FilterFactory {
 public:
  explicit CompressFilterFactory(CompressOptions options) : options_(std::move(options)) {}
  pipeline::Filter* create(core::Arena& arena) const override;

 private:
  CompressOptions options_;
};

class CompressFilterConfig final : public pipeline::FilterConfigParser {
 public:
  std::string_view name() const override { return "compress"; }
  std::unique_ptr<pipeline::FilterFactory> parse(const core::ConfigNode& node,
                                                 pipeline::BuildContext& ctx) const override;
};

}  // namespace citadel::filters
