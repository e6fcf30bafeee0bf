// TicketKeys: rotation keeps the previous keys able to open tickets, for a while.
#include "http/transport/tls_context.h"

#include <gtest/gtest.h>

#include <cstring>

namespace citadel::http {
namespace {

TEST(TicketKeys, RotationKeepsTwoOlderKeysThenForgets) {
  TicketKeys keys;
  const TicketKeys::Key first = keys.current();
  TicketKeys::Key found;
  bool current = false;
  ASSERT_TRUE(keys.find(first.name, found, current));
  EXPECT_TRUE(current);

  keys.rotate();
  const TicketKeys::Key second = keys.current();
  EXPECT_NE(std::memcmp(first.name, second.name, 16), 0);
  // A ticket sealed before the rotation still opens (and is replaced: not current).
  ASSERT_TRUE(keys.find(first.name, found, current));
  EXPECT_FALSE(current);
  EXPECT_EQ(std::memcmp(found.aes, first.aes, sizeof found.aes), 0);

  keys.rotate();
  EXPECT_TRUE(keys.find(first.name, found, current));  // two back: still kept
  keys.rotate();
  EXPECT_FALSE(keys.find(first.name, found, current));  // three back: a full handshake
  EXPECT_TRUE(keys.find(second.name, found, current));
  EXPECT_EQ(keys.rotations(), 3u);
}

TEST(TlsServerContext, RefusesWhatItCannotServe) {
  TlsServerOptions none;
  auto r = TlsServerContext::create(none);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("no certificate"), std::string::npos);
  TlsServerOptions missing;
  TlsCertificateFiles files;
  files.cert = "/nonexistent/cert.pem";
  files.key = "/nonexistent/key.pem";
  missing.certificates.push_back(files);
  missing.session_tickets = false;
  r = TlsServerContext::create(missing);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("cannot read certificate /nonexistent/cert.pem"),
            std::string::npos);
}

}  // namespace
}  // namespace citadel::http
