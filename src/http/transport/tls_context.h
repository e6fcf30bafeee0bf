// TLS contexts (OpenSSL 3): what a TLS listener serves, and the session ticket keys all workers
// share.
//
// A TlsServerContext is built on the control thread for every snapshot (start, reload, and when a
// certificate file changes) from a listener's options, and shared by all workers: OpenSSL's
// SSL_CTX is safe to use from several threads once built. A connection keeps the context it
// started with, so a reload never drops one.
//
// What a listener gets without asking: TLS 1.2 and 1.3 (1.3 only as an option); for 1.2 only
// ECDHE with AES-GCM or ChaCha20-Poly1305 (Mozilla's "intermediate" list); groups X25519, P-256,
// P-384; no renegotiation, no compression; the certificate chosen by SNI among those configured
// (exact names, then wildcards, from the certificates' DNS subject alternative names, or their
// common name when they have none), else the first; ALPN by the server's preference; session
// tickets (keys from a TicketKeys shared by all listeners and rotated by the control thread)
// and a session cache; buffers released while a connection is idle.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

using SSL_CTX = struct ssl_ctx_st;
using SSL = struct ssl_st;
using SSL_SESSION = struct ssl_session_st;

namespace citadel::http {

// Session ticket keys (RFC 5077 style, as OpenSSL uses them): one current key that seals new
// tickets and a few older ones that still open tickets sealed before a rotation, so a client
// resumes on any worker and across reloads. Process-wide; rotate() from the control thread, the
// rest from any thread.
class TicketKeys {
 public:
  static constexpr size_t kKept = 3;  // the current key and two before it
  TicketKeys();
  // A new current key; the oldest is forgotten (its tickets make a full handshake).
  void rotate();
  uint64_t rotations() const;

  struct Key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
  };
  // The key that seals new tickets.
  Key current() const;
  // The key named `name`; `is_current` says whether it is the current one (an older key's
  // ticket is accepted and replaced by a new one).
  bool find(const unsigned char name[16], Key& key, bool& is_current) const;

 private:
  mutable std::mutex mu_;
  Key keys_[kKept];
  size_t count_ = 0;  // keys_[0] is current
  uint64_t rotations_ = 0;
};

enum class ClientAuth : uint8_t { kNone, kOptional, kRequired };

struct TlsCertificateFiles {
  std::string cert;  // PEM: the certificate, then its chain
  std::string key;   // PEM private key
  std::string ocsp;  // optional: a DER OCSP response to staple
  std::string ocsp_der;  // or the response itself (fetched; used when `ocsp` is empty)
  // Or the certificate and key in memory (used when `cert` is empty): what the ACME client
  // obtained.
  std::string cert_pem;
  std::string key_pem;
};

// A TLS-ALPN-01 challenge (RFC 8737) in progress: a handshake for `name` that offers only the
// ALPN protocol "acme-tls/1" gets this self-signed certificate and that protocol, and nothing
// else; every other handshake is unaffected.
struct TlsChallengeCertificate {
  std::string name;  // lowercase DNS name
  std::string cert_pem;
  std::string key_pem;
};

struct TlsServerOptions {
  std::vector<TlsCertificateFiles> certificates;  // the first is the default
  std::vector<TlsChallengeCertificate> acme_challenges;
  bool tls13_only = false;
  std::vector<std::string> alpn;  // in the server's order of preference; empty: no ALPN
  ClientAuth client_auth = ClientAuth::kNone;
  std::string client_ca;  // PEM bundle of the CAs client certificates must chain to
  bool session_tickets = true;
  long session_cache = 20480;  // entries of the stateful cache (TLS 1.2 session ids); 0: off
  // Names the listener: a session (ticket or cache entry) resumes only on a context with the
  // same name, client-auth mode and CA bundle contents. Without it, a session made where no
  // client certificate was asked for would resume where one is required.
  std::string session_context;
  std::shared_ptr<TicketKeys> ticket_keys;  // required when session_tickets
};

class TlsServerContext : public std::enable_shared_from_this<TlsServerContext> {
 public:
  // Loads the certificates and keys and builds the context. Errors name the file and what is
  // wrong with it (unreadable, not PEM, key does not match, expired chain is not checked).
  static core::Result<std::shared_ptr<TlsServerContext>> create(const TlsServerOptions& options);
  ~TlsServerContext();
  TlsServerContext(const TlsServerContext&) = delete;
  TlsServerContext& operator=(const TlsServerContext&) = delete;

  // A new server-side SSL object for one connection (nullptr when out of memory). The SSL holds
  // a reference to this context until it is freed: its callbacks use the context's certificates
  // however many snapshots later the handshake ends.
  SSL* new_ssl() const;
  SSL_CTX* native() const { return ctx_; }

  // The names each certificate serves, in order (for logs and tests).
  const std::vector<std::vector<std::string>>& names() const { return names_; }

  struct Certificate;  // a loaded certificate, key, chain and OCSP response

 private:
  TlsServerContext() = default;
  SSL_CTX* ctx_ = nullptr;
  std::vector<std::unique_ptr<Certificate>> certs_;
  std::vector<std::vector<std::string>> names_;
  std::vector<std::pair<std::string, size_t>> exact_;     // lowercase name -> certificate
  std::vector<std::pair<std::string, size_t>> wildcard_;  // ".example.com" -> certificate
  std::string alpn_wire_;  // the server's ALPN list in wire format
  std::shared_ptr<TicketKeys> ticket_keys_;

  // TLS-ALPN-01 challenge certificates by name.
  std::vector<std::pair<std::string, std::unique_ptr<Certificate>>> challenges_;

  const Certificate* select(const char* server_name) const;
  static int on_client_hello(SSL* ssl, int* alert, void* arg);
  static int on_cert(SSL* ssl, void* arg);
  static int on_alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                     const unsigned char* in, unsigned int inlen, void* arg);
  static int on_status(SSL* ssl, void* arg);
};

// What a TLS client (an upstream connection, the HTTP client) verifies and presents.
struct TlsClientOptions {
  std::string ca;  // PEM bundle the server's chain must reach; empty: the system's store
  bool verify = true;  // false: any certificate is accepted (tests, a known internal peer)
  std::string cert;    // optional client certificate (PEM, with its chain) and its key
  std::string key;
  bool tls13_only = false;
  std::vector<std::string> alpn;  // offered in this order; empty: no ALPN
  size_t session_cache = 1024;    // sessions kept for resumption, by session key; 0: none
};

// The client side: one per upstream cluster with `tls:` (built with its Cluster on the control
// thread) and one for the HTTP client's https URLs, each shared by all workers. It verifies the
// server's chain and its name (RFC 6125: DNS names from subject alternative names, or an IP
// address), sends SNI, and resumes sessions: the last session a server gave for a session key
// (the endpoint) is offered by the next connection with that key, from any worker.
class TlsClientContext {
 public:
  static core::Result<std::shared_ptr<TlsClientContext>> create(const TlsClientOptions& options);
  ~TlsClientContext();
  TlsClientContext(const TlsClientContext&) = delete;
  TlsClientContext& operator=(const TlsClientContext&) = delete;

  // A client SSL for one connection (nullptr when out of memory). `verify_name` is the name or
  // IP literal the certificate must be valid for (ignored when verification is off); `sni` the
  // server name to send (empty: none, as for an IP address); `session_key` names the peer whose
  // sessions are shared (empty: no resumption).
  SSL* new_ssl(std::string_view verify_name, std::string_view sni,
               std::string_view session_key) const;
  // Sessions currently kept (tests).
  size_t cached_sessions() const;

 private:
  TlsClientContext() = default;
  static int on_new_session(SSL* ssl, SSL_SESSION* session);
  void keep(const std::string& key, SSL_SESSION* session);

  SSL_CTX* ctx_ = nullptr;
  bool verify_ = true;
  size_t cache_limit_ = 0;
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, SSL_SESSION*>> sessions_;  // few peers: a flat list
};

// The host name of a ClientHello's server_name extension body (RFC 6066, 3), lowercase, without
// a trailing dot; "" when malformed or absent. For the TLS-ALPN-01 callback (exposed for the
// fuzzer).
std::string client_hello_server_name(const unsigned char* ext, size_t len);

// The OpenSSL error queue as one line ("error:0A000086:SSL routines::certificate verify
// failed"), cleared; `fallback` when the queue is empty.
std::string tls_error_string(const char* fallback);

}  // namespace citadel::http
