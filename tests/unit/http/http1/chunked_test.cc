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

TEST(ChunkedDecoder, KeepsTrailerFieldsAcrossAnySlicing) {
  const std::string wire = "3\r\nabc\r\n0\r\nX-Checksum:  sha256=1f\t\r\nServer-Timing: db;dur=53\r\n\r\n";
  for (size_t slice = 1; slice <= wire.size(); ++slice) {
    ChunkedDecoder dec;
    std::string_view in = wire, piece;
    std::string body;
    ChunkedDecoder::Result res;
    while (true) {
      std::string_view part = in.substr(0, slice);
      in.remove_prefix(part.size());
      while ((res = dec.decode(part, piece)) == ChunkedDecoder::Result::kData) body.append(piece);
      if (res != ChunkedDecoder::Result::kNeedMore || in.empty()) break;
    }
    ASSERT_EQ(res, ChunkedDecoder::Result::kDone) << slice;
    ASSERT_TRUE(dec.has_trailers());
    HeaderMap t;
    dec.trailers(t);
    ASSERT_EQ(t.size(), 2u) << slice;
    EXPECT_EQ(t.fields()[0].name, "X-Checksum");
    EXPECT_EQ(t.fields()[0].value, "sha256=1f");
    EXPECT_EQ(t.fields()[1].name, "Server-Timing");
    EXPECT_EQ(t.fields()[1].value, "db;dur=53");
    dec.reset();
    EXPECT_FALSE(dec.has_trailers());
  }
  ChunkedDecoder plain;
  std::string_view in = "0\r\n\r\n", piece;
  EXPECT_EQ(plain.decode(in, piece), ChunkedDecoder::Result::kDone);
  EXPECT_FALSE(plain.has_trailers());
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

TEST(ChunkedDecoder, AcceptsChunkSizesWithLeadingZeros) {
  // chunk-size = 1*HEXDIG: 000000000000000005 is five, and twenty zeros end the body.
  std::string body;
  EXPECT_EQ(decode_all("000000000000000005\r\nhello\r\n00000000000000000000\r\n\r\n", body),
            ChunkedDecoder::Result::kDone);
  EXPECT_EQ(body, "hello");
  // The largest value that fits is fine as a size (the stream's body limit applies later).
  ChunkedDecoder dec;
  std::string_view in = "0000ffffffffffffffff\r\nab", piece;
  EXPECT_EQ(dec.decode(in, piece), ChunkedDecoder::Result::kData);
  EXPECT_EQ(piece, "ab");
  // One more digit of value overflows, however it is padded.
  std::string b2;
  EXPECT_EQ(decode_all("00010000000000000000\r\n", b2), ChunkedDecoder::Result::kError);
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
