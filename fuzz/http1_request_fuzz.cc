// Fuzzes the HTTP/1.1 request head parser and, when the head is complete and chunked, the
// chunked body decoder on the bytes that follow.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "http/http1/chunked.h"
#include "http/http1/parser.h"
#include "http/path.h"

using namespace citadel::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  RequestHead head;
  http1::ParseLimits limits;
  auto r = http1::parse_request(in, limits, head);
  if (r.kind == http1::ParseOutcome::kError) {
    if (r.status < 400 || r.status > 505) std::abort();
    return 0;
  }
  if (r.kind != http1::ParseOutcome::kComplete) return 0;
  if (r.consumed > size) std::abort();
  if (head.framing == BodyFraming::kChunked && head.headers.find("content-length")) std::abort();
  std::string norm;
  for (EscapedSlashes esc : {EscapedSlashes::kReject, EscapedSlashes::kKeep,
                             EscapedSlashes::kDecode, EscapedSlashes::kRedirect}) {
    PathNormalizeOptions opts;
    opts.escaped_slashes = esc;
    PathResult pr = normalize_path(head.path, opts, norm);
    if (pr == PathResult::kEscapedSlash && esc != EscapedSlashes::kReject) std::abort();
    if (pr == PathResult::kRedirect && esc != EscapedSlashes::kRedirect) std::abort();
    if (pr == PathResult::kOk || pr == PathResult::kRedirect) {
      // Absolute, and no dot segment left.
      std::string_view n(norm);
      if (n.empty() || n.front() != '/' || n.find("/../") != std::string_view::npos ||
          n.find("/./") != std::string_view::npos ||
          (n.size() >= 3 && n.substr(n.size() - 3) == "/..") ||
          (n.size() >= 2 && n.substr(n.size() - 2) == "/.")) {
        std::abort();
      }
    }
  }
  if (head.framing == BodyFraming::kChunked) {
    std::string_view rest = in.substr(r.consumed);
    http1::ChunkedDecoder dec;
    std::string_view piece;
    size_t total = 0;
    while (true) {
      auto res = dec.decode(rest, piece);
      if (res == http1::ChunkedDecoder::Result::kData) {
        total += piece.size();
        continue;
      }
      break;
    }
    if (total > size) std::abort();
  }
  return 0;
}
