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
  normalize_path(head.path, {}, norm);
  if (!head.path.empty() && head.path.front() == '/' &&
      (norm.empty() || norm.front() != '/' || norm.find("/../") != std::string::npos)) {
    std::abort();
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
