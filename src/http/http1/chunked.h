// Incremental, strict decoder for the chunked transfer coding (RFC 9112 section 7.1).
//
// Fed arbitrary slices of the byte stream; yields views of chunk data as they arrive, so a body
// is streamed without being buffered whole. Chunk sizes are hex without sign or overflow;
// extensions must be well-formed tokens or quoted strings; every CRLF must be exact. Trailer
// fields are validated and kept (up to kMaxTrailerBytes) for trailers(). One decoder per body,
// used on one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "http/headers.h"

namespace citadel::http::http1 {

class ChunkedDecoder {
 public:
  enum class Result {
    kData,      // `data` holds the next piece of body; call again with the rest of the input
    kNeedMore,  // all input consumed, body not finished
    kDone,      // the last chunk and trailers have been read
    kError,     // malformed framing; `error()` says why
  };

  // Consumes from `in` (advancing it) until one piece of data is found, input runs out, the
  // body ends or an error occurs.
  Result decode(std::string_view& in, std::string_view& data);

  const char* error() const { return error_; }
  // After kDone: whether the message ended with trailer fields, and those fields (views into
  // this decoder, valid until reset()).
  bool has_trailers() const { return trailer_text_ != nullptr && !trailer_text_->empty(); }
  void trailers(HeaderMap& out) const;
  bool done() const { return state_ == State::kDone; }
  void reset() { *this = ChunkedDecoder(); }

  static constexpr size_t kMaxLineBytes = 4096;       // size line incl. extensions
  static constexpr size_t kMaxTrailerBytes = 16384;

 private:
  enum class State : uint8_t {
    kSize, kExt, kSizeLf, kData, kDataCr, kDataLf, kTrailerStart, kTrailerLine, kTrailerLf,
    kFinalLf, kDone, kError,
  };
  Result fail(const char* why) {
    state_ = State::kError;
    error_ = why;
    return Result::kError;
  }

  uint64_t remaining_ = 0;
  uint32_t size_digits_ = 0;
  uint32_t line_bytes_ = 0;
  uint32_t trailer_bytes_ = 0;
  State state_ = State::kSize;  // here rather than first: no padding (one per connection)
  // Extension sub-state: 0 before name, 1 in name, 2 after name (BWS), 3 before value,
  // 4 in token value, 5 in quoted value, 6 quoted-pair escape, 7 after value.
  uint8_t ext_state_ = 0;
  bool trailer_line_has_colon_ = false;
  bool trailer_line_empty_ = true;
  const char* error_ = nullptr;
  // The trailer lines as received, CRLF included; allocated only for a message that has them
  // (a pointer keeps every idle connection's decoder small).
  std::unique_ptr<std::string> trailer_text_;
  void keep_trailer_byte(char c) {
    if (trailer_text_ == nullptr) trailer_text_ = std::make_unique<std::string>();
    trailer_text_->push_back(c);
  }
};

// Formats a chunk-size line ("1a2b\r\n") into `out` (at least 18 bytes); returns its length.
size_t format_chunk_header(uint64_t size, char* out);

}  // namespace citadel::http::http1
