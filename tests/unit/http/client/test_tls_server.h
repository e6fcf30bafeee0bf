// A TLS server on loopback for the TLS client's tests, on its own thread with an OS-picked port:
// a certificate it makes for itself (P-256, self-signed, for the DNS name localhost and the
// address 127.0.0.1, written as PEM under the test's temporary directory so that a client can
// trust it), one response per connection naming what the handshake saw (the SNI, whether the
// session was resumed, the client certificate's presence), then close.
#pragma once

#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>

namespace citadel::http::client::testing {

class TestTlsServer {
 public:
  explicit TestTlsServer(const std::string& dir) {
    cert_path_ = dir + "tls_server_cert." + std::to_string(::getpid()) + ".pem";
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, nullptr, nullptr, 0);
    for (auto [nid, value] : {std::pair{NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1"},
                              std::pair{NID_basic_constraints, "critical,CA:TRUE"}}) {
      X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
      X509_add_ext(x, ext, -1);
      X509_EXTENSION_free(ext);
    }
    X509_sign(x, key, EVP_sha256());
    if (FILE* f = std::fopen(cert_path_.c_str(), "w")) {
      PEM_write_X509(f, x);
      std::fclose(f);
    }
    ctx_ = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate(ctx_, x);
    SSL_CTX_use_PrivateKey(ctx_, key);
    SSL_CTX_set_session_id_context(ctx_, reinterpret_cast<const unsigned char*>("t"), 1);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 1; });
    X509_free(x);
    EVP_PKEY_free(key);

    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ok_ = ok_ && ::listen(fd_, 64) == 0;
    thread_ = std::thread([this] { run(); });
  }
  ~TestTlsServer() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
    SSL_CTX_free(ctx_);
    std::remove(cert_path_.c_str());
  }

  bool ok() const { return ok_; }
  uint16_t port() const { return port_; }
  const std::string& cert_path() const { return cert_path_; }
  int handshakes() const { return handshakes_.load(); }
  int failed_handshakes() const { return failed_.load(); }

 private:
  void run() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      timeval tv{2, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      SSL* ssl = SSL_new(ctx_);
      SSL_set_fd(ssl, c);
      if (SSL_accept(ssl) == 1) {
        ++handshakes_;
        std::string in;
        char buf[4096];
        int n;
        while (in.find("\r\n\r\n") == std::string::npos &&
               (n = SSL_read(ssl, buf, sizeof buf)) > 0) {
          in.append(buf, static_cast<size_t>(n));
        }
        const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
        std::string body = std::string("sni=") + (sni != nullptr ? sni : "-") +
                           " resumed=" + (SSL_session_reused(ssl) ? "1" : "0") +
                           " client_cert=" + (SSL_get0_peer_certificate(ssl) ? "1" : "0");
        std::string out = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
        SSL_write(ssl, out.data(), static_cast<int>(out.size()));
        SSL_shutdown(ssl);
      } else {
        ++failed_;
      }
      ERR_clear_error();
      SSL_free(ssl);
      ::close(c);
    }
  }

  SSL_CTX* ctx_ = nullptr;
  std::string cert_path_;
  int fd_ = -1;
  bool ok_ = false;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> handshakes_{0};
  std::atomic<int> failed_{0};
  std::thread thread_;
};

}  // namespace citadel::http::client::testing
