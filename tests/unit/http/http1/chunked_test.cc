#include "http/http1/chunked.h"

#include <gtest/gtest.h>

#include <string>

namespace citadel::http::http1 {
namespace {

// Decodes `in` whole; returns the final result and the body.
ChunkedDecoder::Result decode_all(std::string_view in, std::string& body, size_t slice = 0) {
  ChunkedDecoder dec;
  ChunkedDecoder::Result res = ChunkedDecoder::Result::kNeedMore;
  if (slice == 0) slice = in.size() + 1;
  while (!in.empty()) {
    std::string_view part = in.substr(0, slice);
    in.remove_prefix(part.size());
    std::string_view piece;
    while ((res = dec.decode(part, piece)) == ChunkedDecoder::Result::kData) body.append(piece);
    if (res != ChunkedDecoder::Result::kNeedMore) break;
  }
  return res;
}

TEST(ChunkedDecoder, DecodesBodyAcrossAnySlicing) {
  const std::string wire = "5\r\nhello\r\n1A;ext=1;q=\"a\\\"b\" \r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\n";
  for (size_t slice = 1; slice <= wire.size(); ++slice) {
    std::string body;
    EXPECT_EQ(decode_all(wire, body, slice), ChunkedDecoder::Result::kDone) << slice;
    EXPECT_EQ(body, "helloabcdefghijklmnopqrstuvwxyz") << slice;
  }
}

TEST(ChunkedDecoder, RejectsMalformed) {
  const char* bad[] = {
      "g\r\n",                          // not hex
      "\r\n",                           // empty size
      "-5\r\nhello\r\n0\r\n\r\n",       // sign
      "0x5\r\nhello\r\n0\r\n\r\n",      // prefix
      "5\nhello\r\n0\r\n\r\n",          // bare LF
      "5\r\nhelloXX0\r\n\r\n",          // data not followed by CRLF
      "5\r\nhello\r0\r\n\r\n",          // bare CR after data
      "10000000000000000\r\n",          // 17 hex digits: overflow
      "5 \r\nhello\r\n0\r\n\r\n",       // whitespace after size without extension
      "5;\r\nhello\r\n0\r\n\r\n",       // empty extension
      "5;a=\r\nhello\r\n0\r\n\r\n",     // extension without value
      "5;a=\"x\r\nhello\r\n0\r\n\r\n",  // unterminated quoted value
      "5;a b\r\nhello\r\n0\r\n\r\n",    // junk in extension
      "5;a=b,c\r\nhello\r\n0\r\n\r\n",  // junk in extension value
      "5\r\nhello\r\n0\r\nbad trailer\r\n\r\n",
      "5\r\nhello\r\n0\r\n\r\r",
  };
  for (const char* raw : bad) {
    std::string body;
    EXPECT_EQ(decode_all(raw, body), ChunkedDecoder::Result::kError) << raw;
  }
}

TEST(ChunkedDecoder, NeedsMoreUntilLastChunk) {
  std::string body;
  EXPECT_EQ(decode_all("5\r\nhello\r\n", body), ChunkedDecoder::Result::kNeedMore);
  EXPECT_EQ(body, "hello");
}

TEST(ChunkedDecoder, FormatsHeader) {
  char buf[20];
  EXPECT_EQ(std::string(buf, format_chunk_header(0x1a2b, buf)), "1a2b\r\n");
  EXPECT_EQ(std::string(buf, format_chunk_header(0, buf)), "0\r\n");
}

}  // namespace
}  // namespace citadel::http::http1
