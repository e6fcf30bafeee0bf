// TicketKeys: rotation keeps the previous keys able to open tickets, for a while. TLS-ALPN-01
// challenge certificates, handshakes over memory BIOs.
#include "http/transport/tls_context.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "http/transport/acme_crypto.h"

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

namespace citadel::http {
namespace {

// A client and a server SSL joined by memory BIOs, run until both finish or one fails.
struct MemoryHandshake {
  SSL* client = nullptr;
  SSL* server = nullptr;
  SSL_CTX* client_ctx = nullptr;
  std::string error;
  MemoryHandshake(SSL* server_ssl, const char* sni, const std::vector<std::string>& alpn,
                  SSL_SESSION* resume = nullptr)
      : server(server_ssl) {
    client_ctx = SSL_CTX_new(TLS_client_method());
    client = SSL_new(client_ctx);
    if (resume != nullptr) SSL_set_session(client, resume);
    SSL_set_connect_state(client);
    if (sni != nullptr) SSL_set_tlsext_host_name(client, sni);
    std::string wire;
    for (const auto& p : alpn) wire += static_cast<char>(p.size()) + p;
    if (!wire.empty()) {
      SSL_set_alpn_protos(client, reinterpret_cast<const unsigned char*>(wire.data()),
                          static_cast<unsigned>(wire.size()));
    }
    SSL_set_accept_state(server);
    BIO* client_end = nullptr;
    BIO* server_end = nullptr;
    BIO_new_bio_pair(&client_end, 0, &server_end, 0);
    SSL_set_bio(client, client_end, client_end);
    SSL_set_bio(server, server_end, server_end);
  }
  ~MemoryHandshake() {
    SSL_free(client);
    SSL_free(server);
    SSL_CTX_free(client_ctx);
  }
  // True when both sides finished.
  bool run() {
    for (int i = 0; i < 20; ++i) {
      int c = SSL_do_handshake(client);
      int s = SSL_do_handshake(server);
      if (c == 1 && s == 1) return true;
      auto fatal = [](SSL* ssl, int r) {
        int e = SSL_get_error(ssl, r);
        return r != 1 && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE;
      };
      if (fatal(client, c) || fatal(server, s)) {
        error = tls_error_string("handshake failed") + " (client " +
                std::to_string(SSL_get_error(client, c)) + ", server " +
                std::to_string(SSL_get_error(server, s)) + ")";
        return false;
      }
    }
    return false;
  }
  // The session the client would resume with (after reading what the server sent once the
  // handshake was done: TLS 1.3 tickets); the caller frees it.
  SSL_SESSION* session() {
    char buf[64];
    SSL_read(client, buf, sizeof buf);
    ERR_clear_error();
    return SSL_get1_session(client);
  }
  std::string alpn() const {
    const unsigned char* p = nullptr;
    unsigned n = 0;
    SSL_get0_alpn_selected(client, &p, &n);
    return std::string(reinterpret_cast<const char*>(p), n);
  }
  // The DER of the certificate the server presented.
  std::string peer_der() const {
    X509* x = SSL_get1_peer_certificate(client);
    if (x == nullptr) return "";
    unsigned char* der = nullptr;
    int n = i2d_X509(x, &der);
    std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(n));
    OPENSSL_free(der);
    X509_free(x);
    return out;
  }
};

std::string der_of(const std::string& pem) {
  BIO* in = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* x = PEM_read_bio_X509(in, nullptr, nullptr, nullptr);
  BIO_free(in);
  unsigned char* der = nullptr;
  int n = i2d_X509(x, &der);
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(n));
  OPENSSL_free(der);
  X509_free(x);
  return out;
}

class TlsAlpnChallenge : public ::testing::Test {
 protected:
  void SetUp() override {
    auto site = acme::placeholder_certificate({"a.example", "b.example"});
    ASSERT_TRUE(site.ok());
    site_pem = site.value().cert_pem;
    auto key = acme::EcKey::generate();
    ASSERT_TRUE(key.ok());
    auto cert = acme::self_signed(key.value(), {"a.example"}, 7, acme::sha256("token.thumb"));
    ASSERT_TRUE(cert.ok());
    challenge_pem = cert.value();
    TlsServerOptions o;
    o.certificates.push_back(site.value());
    o.acme_challenges.push_back({"a.example", challenge_pem, key.value().private_pem()});
    o.alpn = {"h2", "http/1.1"};
    o.session_tickets = false;
    o.session_cache = 0;
    auto ctx = TlsServerContext::create(o);
    ASSERT_TRUE(ctx.ok()) << ctx.error().message();
    context = ctx.value();
  }
  std::string site_pem;
  std::string challenge_pem;
  std::shared_ptr<TlsServerContext> context;
};

TEST_F(TlsAlpnChallenge, AValidationHandshakeGetsTheChallengeCertificate) {
  MemoryHandshake h(context->new_ssl(), "A.Example.", {"acme-tls/1"});
  ASSERT_TRUE(h.run()) << h.error;
  EXPECT_EQ(h.alpn(), "acme-tls/1");
  EXPECT_EQ(h.peer_der(), der_of(challenge_pem));
}

TEST_F(TlsAlpnChallenge, OtherHandshakesAreUnaffectedOrRefused) {
  {
    MemoryHandshake h(context->new_ssl(), "a.example", {"h2", "http/1.1"});
    ASSERT_TRUE(h.run());
    EXPECT_EQ(h.alpn(), "h2");
    EXPECT_EQ(h.peer_der(), der_of(site_pem));
  }
  {
    // acme-tls/1 among other protocols: an ordinary client, even for the challenged name.
    MemoryHandshake mixed(context->new_ssl(), "a.example", {"h2", "acme-tls/1"});
    ASSERT_TRUE(mixed.run()) << mixed.error;
    EXPECT_EQ(mixed.alpn(), "h2");
    EXPECT_EQ(mixed.peer_der(), der_of(site_pem));
  }
  {
    // acme-tls/1 alone for a name with no challenge, or without a name: refused.
    MemoryHandshake other(context->new_ssl(), "b.example", {"acme-tls/1"});
    EXPECT_FALSE(other.run());
    MemoryHandshake none(context->new_ssl(), nullptr, {"acme-tls/1"});
    EXPECT_FALSE(none.run());
  }
}

TEST_F(TlsAlpnChallenge, AHandshakeOutlivesItsContext) {
  // A reload or an ACME publication drops the snapshot while a handshake is half done: the
  // connection's SSL keeps the context (and the certificates its callbacks use) alive.
  MemoryHandshake h(context->new_ssl(), "a.example", {"acme-tls/1"});
  std::weak_ptr<TlsServerContext> weak = context;
  context.reset();
  EXPECT_FALSE(weak.expired());
  ASSERT_TRUE(h.run());
  EXPECT_EQ(h.peer_der(), der_of(challenge_pem));
}

TEST(TlsAlpnChallengeSessions, AChallengeSessionNeverResumesPastClientAuth) {
  // From an outside attack: a client that made the challenge handshake (no client certificate
  // asked) resumed its session on an ordinary handshake and got past client_auth: required.
  auto site = acme::placeholder_certificate({"a.example"});
  ASSERT_TRUE(site.ok());
  const std::string ca = ::testing::TempDir() + "citadel_acme_ca_" + std::to_string(getpid());
  {
    FILE* f = std::fopen(ca.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(site.value().cert_pem.c_str(), f);
    std::fclose(f);
  }
  auto key = acme::EcKey::generate();
  ASSERT_TRUE(key.ok());
  auto cert = acme::self_signed(key.value(), {"a.example"}, 7, acme::sha256("t.x"));
  ASSERT_TRUE(cert.ok());
  for (bool tls13 : {true, false}) {
    TlsServerOptions o;
    o.certificates.push_back(site.value());
    o.acme_challenges.push_back({"a.example", cert.value(), key.value().private_pem()});
    o.alpn = {"http/1.1"};
    o.client_auth = ClientAuth::kRequired;
    o.client_ca = ca;
    o.ticket_keys = std::make_shared<TicketKeys>();
    o.session_context = "listener:test";
    auto ctx = TlsServerContext::create(o);
    ASSERT_TRUE(ctx.ok()) << ctx.error().message();
    SSL* first = ctx.value()->new_ssl();
    if (!tls13) SSL_set_max_proto_version(first, TLS1_2_VERSION);
    MemoryHandshake challenge(first, "a.example", {"acme-tls/1"});
    ASSERT_TRUE(challenge.run()) << challenge.error;
    SSL_SESSION* session = challenge.session();
    SSL* second = ctx.value()->new_ssl();
    if (!tls13) SSL_set_max_proto_version(second, TLS1_2_VERSION);
    MemoryHandshake again(second, "a.example", {"http/1.1"}, session);
    EXPECT_FALSE(again.run()) << (tls13 ? "TLS 1.3" : "TLS 1.2");
    EXPECT_EQ(SSL_session_reused(again.client), 0);
    SSL_SESSION_free(session);
  }
  std::remove(ca.c_str());
}

TEST(ClientHelloParsing, BoundsAndForms) {
  const unsigned char sni[] = {0, 14, 0, 0, 11, 'A', '.', 'E', 'x', 'a', 'm', 'p', 'l', 'e', '.',
                               'c'};
  EXPECT_EQ(client_hello_server_name(sni, 16), "a.example.c");
  EXPECT_EQ(client_hello_server_name(sni, 15), "");  // the name runs past the input
  const unsigned char dots[] = {0, 6, 0, 0, 3, 'a', '.', '.'};
  EXPECT_EQ(client_hello_server_name(dots, sizeof dots), "");  // no host
}

}  // namespace
}  // namespace citadel::http
