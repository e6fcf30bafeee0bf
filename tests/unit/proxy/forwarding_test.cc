#include "proxy/forwarding.h"

#include <gtest/gtest.h>

namespace citadel::proxy {
namespace {

TEST(StripHopByHop, RemovesHopByHopAndListedFieldsButKeepsTeTrailers) {
  http::HeaderMap h;
  h.add("Connection", "keep-alive, X-Private, TE");
  h.add("Keep-Alive", "timeout=5");
  h.add("X-Private", "secret");
  h.add("TE", " trailers ");
  h.add("Content-Type", "application/grpc");
  strip_hop_by_hop(h, false);
  EXPECT_EQ(h.find("connection"), nullptr);
  EXPECT_EQ(h.find("keep-alive"), nullptr);
  EXPECT_EQ(h.find("x-private"), nullptr);
  ASSERT_NE(h.find("te"), nullptr);  // gRPC needs it end to end
  EXPECT_NE(h.find("content-type"), nullptr);

  http::HeaderMap other;
  other.add("TE", "gzip, trailers");
  strip_hop_by_hop(other, false);
  EXPECT_EQ(other.find("te"), nullptr);  // any other TE is hop-by-hop and goes
}

}  // namespace
}  // namespace citadel::proxy
