#include "http/transport/tls_context.h"

#include "core/ascii.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "core/file_io.h"

namespace citadel::http {

std::string tls_error_string(const char* fallback) {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? std::string(fallback) : out;
}

// --- ticket keys -------------------------------------------------------------------------------

namespace {

void random_key(TicketKeys::Key& k) {
  // RAND_bytes fails only when the system has no entropy source at all; the process could not
  // serve TLS anyway, and a zero key would be worse than none: abort loudly.
  if (RAND_bytes(k.name, sizeof k.name) != 1 || RAND_bytes(k.aes, sizeof k.aes) != 1 ||
      RAND_bytes(k.hmac, sizeof k.hmac) != 1) {
    std::abort();
  }
}

}  // namespace

TicketKeys::TicketKeys() {
  random_key(keys_[0]);
  count_ = 1;
}

void TicketKeys::rotate() {
  Key fresh;
  random_key(fresh);
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = kKept - 1; i > 0; --i) keys_[i] = keys_[i - 1];
  keys_[0] = fresh;
  if (count_ < kKept) ++count_;
  ++rotations_;
}

uint64_t TicketKeys::rotations() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rotations_;
}

TicketKeys::Key TicketKeys::current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return keys_[0];
}

bool TicketKeys::find(const unsigned char name[16], Key& key, bool& is_current) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < count_; ++i) {
    if (std::memcmp(keys_[i].name, name, 16) == 0) {
      key = keys_[i];
      is_current = i == 0;
      return true;
    }
  }
  return false;
}

// --- certificates ------------------------------------------------------------------------------

struct TlsServerContext::Certificate {
  X509* x509 = nullptr;
  EVP_PKEY* key = nullptr;
  STACK_OF(X509)* chain = nullptr;
  std::string ocsp;  // DER
  ~Certificate() {
    X509_free(x509);
    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
  }
};

namespace {

// The ex_data slot where a connection's SSL keeps the certificate chosen for it (for OCSP).
int cert_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// The ex_data slot where a connection answering a TLS-ALPN-01 challenge keeps its certificate.
int challenge_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// The ex_data slot where a server SSL keeps its context alive (a heap shared_ptr, freed with
// the SSL): a reload or an ACME publication may drop the snapshot, and with it the context,
// while a handshake is still running its callbacks.
void free_context_ref(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<std::shared_ptr<const TlsServerContext>*>(ptr);
}
int context_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, free_context_ref);
  return index;
}


struct BioFile {
  BIO* bio;
  explicit BioFile(const std::string& path) : bio(BIO_new_file(path.c_str(), "r")) {}
  explicit BioFile(BIO* b) : bio(b) {}
  BioFile(BioFile&& o) noexcept : bio(o.bio) { o.bio = nullptr; }
  BioFile(const BioFile&) = delete;
  ~BioFile() { BIO_free(bio); }
};

// The DNS names a certificate serves: its subject alternative names, or else its common name.
std::vector<std::string> certificate_names(X509* x) {
  std::vector<std::string> names;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr,
                                                            nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
      if (gn->type != GEN_DNS) continue;
      const unsigned char* p = ASN1_STRING_get0_data(gn->d.dNSName);
      int len = ASN1_STRING_length(gn->d.dNSName);
      names.push_back(core::ascii_lower(std::string(reinterpret_cast<const char*>(p),
                                        static_cast<size_t>(len))));
    }
    GENERAL_NAMES_free(sans);
  }
  if (names.empty()) {
    X509_NAME* subject = X509_get_subject_name(x);
    int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (i >= 0) {
      ASN1_STRING* cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
      const unsigned char* p = ASN1_STRING_get0_data(cn);
      names.push_back(core::ascii_lower(std::string(reinterpret_cast<const char*>(p),
                                        static_cast<size_t>(ASN1_STRING_length(cn)))));
    }
  }
  return names;
}

core::Result<std::unique_ptr<TlsServerContext::Certificate>> load_certificate(
    const TlsCertificateFiles& files) {
  auto c = std::make_unique<TlsServerContext::Certificate>();
  const bool in_memory = files.cert.empty();
  const std::string cert_name = in_memory ? "the obtained certificate" : files.cert;
  const std::string key_name = in_memory ? "the obtained key" : files.key;
  {
    BioFile f = in_memory ? BioFile(BIO_new_mem_buf(files.cert_pem.data(),
                                                    static_cast<int>(files.cert_pem.size())))
                          : BioFile(files.cert);
    if (f.bio == nullptr) return core::Status::error("tls: cannot read certificate " + cert_name);
    c->x509 = PEM_read_bio_X509_AUX(f.bio, nullptr, nullptr, nullptr);
    if (c->x509 == nullptr) {
      ERR_clear_error();
      return core::Status::error("tls: " + cert_name + ": no PEM certificate");
    }
    c->chain = sk_X509_new_null();
    while (X509* extra = PEM_read_bio_X509(f.bio, nullptr, nullptr, nullptr)) {
      sk_X509_push(c->chain, extra);
    }
    ERR_clear_error();  // the end of the file reads as an error
  }
  {
    BioFile f = in_memory ? BioFile(BIO_new_mem_buf(files.key_pem.data(),
                                                    static_cast<int>(files.key_pem.size())))
                          : BioFile(files.key);
    if (f.bio == nullptr) return core::Status::error("tls: cannot read key " + key_name);
    // No password callback: OpenSSL's default would prompt on the terminal for an encrypted key.
    c->key = PEM_read_bio_PrivateKey(f.bio, nullptr, [](char*, int, int, void*) { return 0; },
                                     nullptr);
    if (c->key == nullptr) {
      ERR_clear_error();
      return core::Status::error("tls: " + key_name + ": no PEM private key (or it is encrypted)");
    }
  }
  if (X509_check_private_key(c->x509, c->key) != 1) {
    ERR_clear_error();
    return core::Status::error("tls: " + key_name + " does not match the certificate " +
                               cert_name);
  }
  if (files.ocsp.empty()) c->ocsp = files.ocsp_der;
  if (!files.ocsp.empty()) {
    if (int e = core::read_file(files.ocsp, c->ocsp); e != 0) {
      return core::Status::error("tls: cannot read OCSP response " + files.ocsp + ": " +
                                 std::strerror(e));
    }
    if (c->ocsp.empty()) return core::Status::error("tls: " + files.ocsp + " is empty");
  }
  return c;
}

// Mozilla's "intermediate" TLS 1.2 suites, without the finite-field DHE ones.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
constexpr const char* kGroups = "X25519:P-256:P-384";

int on_ticket_key(SSL* ssl, unsigned char key_name[16], unsigned char* iv, EVP_CIPHER_CTX* cipher,
                  EVP_MAC_CTX* mac, int encrypt) {
  auto* keys = static_cast<TicketKeys*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  if (keys == nullptr) return 0;
  TicketKeys::Key key;
  int result = 1;
  if (encrypt != 0) {
    key = keys->current();
    if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1) return -1;
    std::memcpy(key_name, key.name, 16);
    if (EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes, iv) != 1) return -1;
  } else {
    bool is_current = false;
    if (!keys->find(key_name, key, is_current)) return 0;  // unknown: a full handshake
    result = is_current ? 1 : 2;                            // 2: accept, and issue a new one
    if (EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes, iv) != 1) return -1;
  }
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key.hmac, sizeof key.hmac),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end()};
  if (EVP_MAC_CTX_set_params(mac, params) != 1) return -1;
  return result;
}

}  // namespace

core::Result<std::shared_ptr<TlsServerContext>> TlsServerContext::create(
    const TlsServerOptions& options) {
  if (options.certificates.empty()) return core::Status::error("tls: no certificate");
  std::shared_ptr<TlsServerContext> t(new TlsServerContext());
  for (const auto& files : options.certificates) {
    auto c = load_certificate(files);
    if (!c.ok()) return c.error();
    const size_t index = t->certs_.size();
    std::vector<std::string> names = certificate_names(c.value()->x509);
    for (const auto& n : names) {
      if (n.rfind("*.", 0) == 0) t->wildcard_.emplace_back(n.substr(1), index);
      else t->exact_.emplace_back(n, index);
    }
    t->names_.push_back(std::move(names));
    t->certs_.push_back(std::move(c.value()));
  }

  for (const auto& ch : options.acme_challenges) {
    TlsCertificateFiles files;
    files.cert_pem = ch.cert_pem;
    files.key_pem = ch.key_pem;
    auto c = load_certificate(files);
    if (!c.ok()) return c.error();
    t->challenges_.emplace_back(core::ascii_lower(ch.name), std::move(c.value()));
  }

  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return core::Status::error("tls: " + tls_error_string("SSL_CTX_new failed"));
  t->ctx_ = ctx;
  if (!t->challenges_.empty()) SSL_CTX_set_client_hello_cb(ctx, on_client_hello, t.get());
  SSL_CTX_set_min_proto_version(ctx, options.tls13_only ? TLS1_3_VERSION : TLS1_2_VERSION);
  if (SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1 ||
      SSL_CTX_set1_groups_list(ctx, kGroups) != 1) {
    return core::Status::error("tls: " + tls_error_string("cannot set ciphers or groups"));
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                               (options.session_tickets ? 0 : SSL_OP_NO_TICKET));
  // Released buffers keep an idle keep-alive connection small; partial writes and a moving
  // buffer are what Transport::write promises its codecs.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // The session id context (OpenSSL refuses to resume a session, ticket or cached, made under
  // another): SHA-256 of the listener's name, its client-auth mode and its CA bundle, so that
  // sessions never cross listeners and die when the CAs a listener trusts change.
  {
    std::string material = options.session_context;
    material.push_back('\0');
    material.push_back(static_cast<char>('0' + static_cast<int>(options.client_auth)));
    if (options.client_auth != ClientAuth::kNone) {
      std::string bundle;
      if (int e = core::read_file(options.client_ca, bundle); e != 0) {
        return core::Status::error("tls: client_auth.ca " + options.client_ca + ": " +
                                   std::strerror(e));
      }
      material += bundle;
    }
    unsigned char sid[32];
    unsigned int len = 0;
    if (EVP_Digest(material.data(), material.size(), sid, &len, EVP_sha256(), nullptr) != 1 ||
        SSL_CTX_set_session_id_context(ctx, sid, len) != 1) {
      return core::Status::error("tls: " + tls_error_string("cannot set the session context"));
    }
  }
  SSL_CTX_set_session_cache_mode(ctx, options.session_cache > 0 ? SSL_SESS_CACHE_SERVER
                                                                : SSL_SESS_CACHE_OFF);
  if (options.session_cache > 0) SSL_CTX_sess_set_cache_size(ctx, options.session_cache);
  if (options.session_tickets) {
    if (!options.ticket_keys) return core::Status::error("tls: session tickets without keys");
    t->ticket_keys_ = options.ticket_keys;
    SSL_CTX_set_app_data(ctx, t->ticket_keys_.get());
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key);
    SSL_CTX_set_num_tickets(ctx, 1);  // one is enough to resume; each costs an encryption
  } else if (options.session_cache <= 0) {
    SSL_CTX_set_num_tickets(ctx, 0);
  }

  if (options.client_auth != ClientAuth::kNone) {
    if (SSL_CTX_load_verify_locations(ctx, options.client_ca.c_str(), nullptr) != 1) {
      return core::Status::error("tls: client_auth.ca " + options.client_ca + ": " +
                                 tls_error_string("cannot load"));
    }
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(options.client_ca.c_str());
    if (names == nullptr) {
      return core::Status::error("tls: client_auth.ca " + options.client_ca +
                                 ": no certificate in it");
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    int mode = SSL_VERIFY_PEER;
    if (options.client_auth == ClientAuth::kRequired) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, mode, nullptr);
    SSL_CTX_set_verify_depth(ctx, 8);
  }

  for (const auto& p : options.alpn) {
    t->alpn_wire_.push_back(static_cast<char>(p.size()));
    t->alpn_wire_ += p;
  }
  if (!t->alpn_wire_.empty()) SSL_CTX_set_alpn_select_cb(ctx, on_alpn, t.get());
  {
    const Certificate& first = *t->certs_.front();
    if (SSL_CTX_use_cert_and_key(ctx, first.x509, first.key, first.chain, 1) != 1) {
      return core::Status::error("tls: " + tls_error_string("cannot use the certificate"));
    }
  }
  SSL_CTX_set_cert_cb(ctx, on_cert, t.get());
  SSL_CTX_set_tlsext_status_cb(ctx, on_status);
  SSL_CTX_set_tlsext_status_arg(ctx, t.get());
  return t;
}

TlsServerContext::~TlsServerContext() { SSL_CTX_free(ctx_); }

SSL* TlsServerContext::new_ssl() const {
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr) return nullptr;
  auto* ref = new std::shared_ptr<const TlsServerContext>(shared_from_this());
  if (SSL_set_ex_data(ssl, context_index(), ref) != 1) {
    delete ref;
    SSL_free(ssl);
    return nullptr;
  }
  return ssl;
}

const TlsServerContext::Certificate* TlsServerContext::select(const char* server_name) const {
  if (server_name != nullptr && server_name[0] != '\0') {
    std::string name = core::ascii_lower(server_name);
    if (!name.empty() && name.back() == '.') name.pop_back();  // "example.com." is the same host
    for (const auto& [n, i] : exact_) {
      if (n == name) return certs_[i].get();
    }
    // A wildcard covers exactly one label: "*.example.com" serves "a.example.com" only.
    size_t dot = name.find('.');
    if (dot != std::string::npos && dot > 0) {
      std::string_view parent(name.data() + dot, name.size() - dot);
      for (const auto& [n, i] : wildcard_) {
        if (n == parent) return certs_[i].get();
      }
    }
  }
  return certs_.front().get();
}

std::string client_hello_server_name(const unsigned char* p, size_t len) {
  // ServerNameList: a 2-byte length, then entries of a type (0: host_name) and a 2-byte length.
  if (len < 5) return "";
  const size_t list = static_cast<size_t>(p[0]) << 8 | p[1];
  if (list + 2 > len || list < 3 || p[2] != 0) return "";
  const size_t n = static_cast<size_t>(p[3]) << 8 | p[4];
  if (n == 0 || n + 3 > list) return "";
  std::string name = core::ascii_lower(std::string(reinterpret_cast<const char*>(p + 5), n));
  if (name.back() == '.') name.pop_back();  // "a.example." is "a.example"
  if (name.empty() || name.back() == '.') return "";  // "a.." names no host
  return name;
}

int TlsServerContext::on_client_hello(SSL* ssl, int* alert, void* arg) {
  // Only a handshake offering "acme-tls/1" alone is looked at (RFC 8737, 3: what validation
  // servers send); it gets the challenge certificate for its name, or fails. A client offering
  // it among other protocols is an ordinary client: the server's own choice applies.
  const auto* self = static_cast<const TlsServerContext*>(arg);
  const unsigned char* p = nullptr;
  size_t len = 0;
  static const unsigned char kOnlyAcme[] = {0, 11, 10, 'a', 'c', 'm', 'e', '-', 't', 'l', 's',
                                            '/', '1'};
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &p,
                                &len) != 1 ||
      len != sizeof kOnlyAcme || std::memcmp(p, kOnlyAcme, len) != 0) {
    return SSL_CLIENT_HELLO_SUCCESS;
  }
  std::string name;
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) == 1) {
    name = client_hello_server_name(p, len);
  }
  for (const auto& [n, c] : self->challenges_) {
    if (n == name) {
      SSL_set_ex_data(ssl, challenge_index(), c.get());
      // The validation server presents no client certificate: a listener that requires one
      // must not ask this handshake for it. Nor may the handshake leave a session behind: one
      // made without the client certificate would let its client resume past client_auth. No
      // tickets, and a session id context of its own, which no other handshake resumes.
      SSL_set_verify(ssl, SSL_VERIFY_NONE, nullptr);
      SSL_set_options(ssl, SSL_OP_NO_TICKET);
      SSL_set_num_tickets(ssl, 0);
      static const unsigned char kChallengeContext[] = "citadel acme-tls/1 challenge";
      if (SSL_set_session_id_context(ssl, kChallengeContext, sizeof kChallengeContext - 1) != 1) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_CLIENT_HELLO_ERROR;
      }
      return SSL_CLIENT_HELLO_SUCCESS;
    }
  }
  *alert = SSL_AD_NO_APPLICATION_PROTOCOL;
  return SSL_CLIENT_HELLO_ERROR;
}

int TlsServerContext::on_cert(SSL* ssl, void* arg) {
  const auto* self = static_cast<const TlsServerContext*>(arg);
  if (const auto* ch = static_cast<const Certificate*>(SSL_get_ex_data(ssl, challenge_index()))) {
    return SSL_use_cert_and_key(ssl, ch->x509, ch->key, nullptr, 1) == 1 ? 1 : 0;
  }
  const Certificate* c = self->select(SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
  SSL_set_ex_data(ssl, cert_index(), const_cast<Certificate*>(c));
  // The default certificate is the context's own (set once at build): only another one is
  // installed on the connection, which copies OpenSSL's certificate state per handshake.
  if (c == self->certs_.front().get()) return 1;
  return SSL_use_cert_and_key(ssl, c->x509, c->key, c->chain, 1) == 1 ? 1 : 0;
}

int TlsServerContext::on_alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                              const unsigned char* in, unsigned int inlen, void* arg) {
  const auto* self = static_cast<const TlsServerContext*>(arg);
  unsigned char* chosen = nullptr;
  if (SSL_get_ex_data(ssl, challenge_index()) != nullptr) {
    static const unsigned char kWire[] = "\x0a" "acme-tls/1";
    if (SSL_select_next_proto(&chosen, outlen, kWire, sizeof kWire - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED) {
      return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
  }
  // The server's order wins: the first of our protocols that the client offers.
  if (SSL_select_next_proto(&chosen, outlen,
                            reinterpret_cast<const unsigned char*>(self->alpn_wire_.data()),
                            static_cast<unsigned int>(self->alpn_wire_.size()), in,
                            inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;  // no protocol in common: go on without ALPN (HTTP/1.1)
  }
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

int TlsServerContext::on_status(SSL* ssl, void*) {
  const auto* c = static_cast<const Certificate*>(SSL_get_ex_data(ssl, cert_index()));
  if (c == nullptr || c->ocsp.empty()) return SSL_TLSEXT_ERR_NOACK;
  auto* copy = static_cast<unsigned char*>(OPENSSL_malloc(c->ocsp.size()));
  if (copy == nullptr) return SSL_TLSEXT_ERR_NOACK;
  std::memcpy(copy, c->ocsp.data(), c->ocsp.size());
  SSL_set_tlsext_status_ocsp_resp(ssl, copy, static_cast<long>(c->ocsp.size()));
  return SSL_TLSEXT_ERR_OK;
}

// --- the client side ---------------------------------------------------------------------------

namespace {

// The ex_data slot where a client SSL keeps its session key (a heap string freed with the SSL).
void free_session_key(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<std::string*>(ptr);
}

int session_key_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, free_session_key);
  return index;
}

}  // namespace

core::Result<std::shared_ptr<TlsClientContext>> TlsClientContext::create(
    const TlsClientOptions& options) {
  std::shared_ptr<TlsClientContext> t(new TlsClientContext());
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) return core::Status::error("tls: " + tls_error_string("SSL_CTX_new failed"));
  t->ctx_ = ctx;
  t->verify_ = options.verify;
  t->cache_limit_ = options.session_cache;
  SSL_CTX_set_min_proto_version(ctx, options.tls13_only ? TLS1_3_VERSION : TLS1_2_VERSION);
  if (SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1 ||
      SSL_CTX_set1_groups_list(ctx, kGroups) != 1) {
    return core::Status::error("tls: " + tls_error_string("cannot set ciphers or groups"));
  }
  // A peer that closes without close_notify (many servers do) ends the stream like a TCP FIN:
  // HTTP's own framing tells a complete message from a cut one.
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                               SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (options.verify) {
    if (options.ca.empty()) {
      if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        return core::Status::error("tls: " + tls_error_string("cannot load the system CA store"));
      }
    } else {
      if (BioFile(options.ca).bio == nullptr) {
        ERR_clear_error();
        return core::Status::error("tls: cannot read ca " + options.ca);
      }
      if (SSL_CTX_load_verify_locations(ctx, options.ca.c_str(), nullptr) != 1) {
        ERR_clear_error();
        return core::Status::error("tls: ca " + options.ca + ": no PEM certificate in it");
      }
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_verify_depth(ctx, 8);
  }
  if (!options.cert.empty() || !options.key.empty()) {
    TlsCertificateFiles files;
    files.cert = options.cert;
    files.key = options.key;
    auto c = load_certificate(files);
    if (!c.ok()) return c.error();
    const auto& cert = *c.value();
    if (SSL_CTX_use_certificate(ctx, cert.x509) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, cert.key) != 1) {
      return core::Status::error("tls: " + tls_error_string("cannot use the client certificate"));
    }
    for (int i = 0; i < sk_X509_num(cert.chain); ++i) {
      X509* extra = sk_X509_value(cert.chain, i);
      if (SSL_CTX_add1_chain_cert(ctx, extra) != 1) {
        return core::Status::error("tls: " + tls_error_string("cannot add the client chain"));
      }
    }
  }
  std::string wire;
  for (const auto& p : options.alpn) {
    wire.push_back(static_cast<char>(p.size()));
    wire += p;
  }
  if (!wire.empty() &&
      SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(wire.data()),
                              static_cast<unsigned int>(wire.size())) != 0) {
    return core::Status::error("tls: " + tls_error_string("cannot set ALPN"));
  }
  if (options.session_cache > 0) {
    // OpenSSL's own client cache is keyed by nothing useful to us: keep sessions ourselves.
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_set_app_data(ctx, t.get());
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
  } else {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  }
  return t;
}

TlsClientContext::~TlsClientContext() {
  for (auto& [key, session] : sessions_) SSL_SESSION_free(session);
  SSL_CTX_free(ctx_);
}

SSL* TlsClientContext::new_ssl(std::string_view verify_name, std::string_view sni,
                               std::string_view session_key) const {
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr) return nullptr;
  if (!sni.empty()) {
    std::string name(sni);
    if (SSL_set_tlsext_host_name(ssl, name.c_str()) != 1) {
      SSL_free(ssl);
      return nullptr;
    }
  }
  if (verify_ && verify_name.empty()) {  // never a chain without a name: fail closed
    SSL_free(ssl);
    return nullptr;
  }
  if (verify_) {
    std::string name(verify_name);
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    // An IP literal is checked against the certificate's IP addresses, a name against its DNS
    // names (wildcards only as the whole leftmost label).
    // The subject's common name is never taken for a name (RFC 6125 6.4.4: only subject
    // alternative names, which every public certificate carries).
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
                                               X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
    int ok = X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
    if (ok != 1) {
      ERR_clear_error();
      ok = SSL_set1_host(ssl, name.c_str());
    }
    if (ok != 1) {
      SSL_free(ssl);
      return nullptr;
    }
  }
  if (cache_limit_ > 0 && !session_key.empty()) {
    SSL_set_ex_data(ssl, session_key_index(), new std::string(session_key));
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
      if (it->first != session_key) continue;
      SSL_set_session(ssl, it->second);
      // A TLS 1.3 ticket is offered once (RFC 8446, C.4): the server sends a fresh one.
      if (SSL_SESSION_get_protocol_version(it->second) >= TLS1_3_VERSION) {
        SSL_SESSION_free(it->second);
        const_cast<TlsClientContext*>(this)->sessions_.erase(it);
      }
      break;
    }
  }
  return ssl;
}

size_t TlsClientContext::cached_sessions() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sessions_.size();
}

int TlsClientContext::on_new_session(SSL* ssl, SSL_SESSION* session) {
  auto* self = static_cast<TlsClientContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  auto* key = static_cast<std::string*>(SSL_get_ex_data(ssl, session_key_index()));
  if (self == nullptr || key == nullptr || SSL_SESSION_is_resumable(session) != 1) return 0;
  self->keep(*key, session);
  return 1;  // the session's reference is ours now
}

void TlsClientContext::keep(const std::string& key, SSL_SESSION* session) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [k, s] : sessions_) {
    if (k != key) continue;
    SSL_SESSION_free(s);
    s = session;
    return;
  }
  if (sessions_.size() >= cache_limit_) {
    SSL_SESSION_free(sessions_.front().second);
    sessions_.erase(sessions_.begin());
  }
  sessions_.emplace_back(key, session);
}

}  // namespace citadel::http
