// Accept-Encoding negotiation and the content types the compress filter takes.
#include "filters/compress/compress_filter.h"

#include <gtest/gtest.h>

namespace citadel::filters {
namespace {

const std::vector<Encoding> kAll{Encoding::kZstd, Encoding::kBrotli, Encoding::kGzip};

TEST(Negotiate, HighestQValueWinsAndTiesGoToTheServersOrder) {
  EXPECT_EQ(negotiate("gzip, deflate, br", kAll), Encoding::kBrotli);  // tie: server prefers br
  EXPECT_EQ(negotiate("gzip, deflate, br, zstd", kAll), Encoding::kZstd);
  EXPECT_EQ(negotiate("gzip;q=1.0, br;q=0.5", kAll), Encoding::kGzip);
  EXPECT_EQ(negotiate("br;q=0.9, zstd;q=0.8", kAll), Encoding::kBrotli);
  EXPECT_EQ(negotiate("GZIP", kAll), Encoding::kGzip);
  EXPECT_EQ(negotiate("x-gzip", kAll), Encoding::kGzip);
}

TEST(Negotiate, ZeroMissingOrMalformedIsIdentity) {
  EXPECT_EQ(negotiate("", kAll), Encoding::kIdentity);
  EXPECT_EQ(negotiate("identity", kAll), Encoding::kIdentity);
  EXPECT_EQ(negotiate("gzip;q=0", kAll), Encoding::kIdentity);
  EXPECT_EQ(negotiate("gzip;q=0.000", kAll), Encoding::kIdentity);
  EXPECT_EQ(negotiate("gzip;q=2", kAll), Encoding::kIdentity);     // out of range: unacceptable
  EXPECT_EQ(negotiate("gzip;q=abc", kAll), Encoding::kIdentity);
  EXPECT_EQ(negotiate("deflate, compress", kAll), Encoding::kIdentity);
}

TEST(Negotiate, AStarCoversWhatIsNotNamed) {
  EXPECT_EQ(negotiate("*", kAll), Encoding::kZstd);
  EXPECT_EQ(negotiate("*;q=0.5, zstd;q=0", kAll), Encoding::kBrotli);
  EXPECT_EQ(negotiate("*;q=0", kAll), Encoding::kIdentity);
  // The server's list limits what is chosen.
  EXPECT_EQ(negotiate("zstd, br", {Encoding::kGzip}), Encoding::kIdentity);
  EXPECT_EQ(negotiate("*", {Encoding::kGzip}), Encoding::kGzip);
}

TEST(CompressOptions, TypesMatchWithoutParametersAndByMajorType) {
  CompressOptions o;
  EXPECT_TRUE(o.compressible("text/html; charset=utf-8"));
  EXPECT_TRUE(o.compressible("Application/JSON"));
  EXPECT_TRUE(o.compressible("image/svg+xml"));
  EXPECT_FALSE(o.compressible("image/png"));
  EXPECT_FALSE(o.compressible("text/"));
  EXPECT_FALSE(o.compressible("application/octet-stream"));
  EXPECT_FALSE(o.compressible(""));
}

}  // namespace
}  // namespace citadel::filters
