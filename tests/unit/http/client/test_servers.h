// Real servers on loopback for the HTTP client's tests, each on its own thread with an
// OS-picked port: a small HTTP/1.1 server whose answers a test scripts per request, and a DNS
// server answering A queries from a table (AAAA: no records; unknown names: NXDOMAIN).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace citadel::http::client::testing {

struct SeenRequest {
  std::string method;
  std::string target;
  std::string head;  // the whole head as received
  std::string body;
  int connection = 0;  // which accepted connection (0, 1, ...)
  int index_on_connection = 0;
};

struct Answer {
  enum Kind { kRespond, kRespondAndClose, kCloseWithoutResponse, kHang };
  Kind kind = kRespond;
  std::string bytes;
};

inline std::string response(int status, const std::string& body, const std::string& extra = "") {
  return "HTTP/1.1 " + std::to_string(status) +
         " X\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body;
}

class TestHttpServer {
 public:
  using Handler = std::function<Answer(const SeenRequest&)>;

  explicit TestHttpServer(Handler handler, bool ipv6 = false) : handler_(std::move(handler)) {
    fd_ = ::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ipv6) {
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_addr = in6addr_loopback;
      ok_ = ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
      socklen_t len = sizeof a;
      ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
      port_ = ntohs(a.sin6_port);
    } else {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      ok_ = ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
      socklen_t len = sizeof a;
      ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
      port_ = ntohs(a.sin_port);
    }
    ok_ = ok_ && ::listen(fd_, 512) == 0;
    thread_ = std::thread([this] { run(); });
  }
  ~TestHttpServer() {
    stop_ = true;
    thread_.join();
    for (auto& c : conns_) {
      if (c.fd >= 0) ::close(c.fd);
    }
    ::close(fd_);
  }

  bool ok() const { return ok_; }
  uint16_t port() const { return port_; }
  int accepted() const { return accepted_.load(); }
  int closed() const { return closed_.load(); }  // connections the peer (the client) closed
  int requests() const { return requests_.load(); }
  std::vector<SeenRequest> seen() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }
  // Answers written so far (kRespond and kRespondAndClose).
  int answered() const { return answered_.load(); }

 private:
  struct Conn {
    int fd;
    int id;
    int served = 0;
    std::string in;
  };

  void run() {
    while (!stop_) {
      std::vector<pollfd> fds;
      fds.push_back({fd_, POLLIN, 0});
      for (auto& c : conns_) fds.push_back({c.fd, static_cast<short>(c.fd >= 0 ? POLLIN : 0), 0});
      ::poll(fds.data(), fds.size(), 20);
      if (fds[0].revents & POLLIN) {
        int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) conns_.push_back({c, accepted_++, 0, {}});
      }
      for (size_t i = 1; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        Conn& c = conns_[i - 1];
        if (c.fd < 0) continue;
        char buf[16384];
        ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
        if (n <= 0) {
          ::close(c.fd);
          c.fd = -1;
          ++closed_;
          continue;
        }
        c.in.append(buf, static_cast<size_t>(n));
        serve(c);
      }
    }
  }

  void serve(Conn& c) {
    while (c.fd >= 0) {
      size_t end = c.in.find("\r\n\r\n");
      if (end == std::string::npos) return;
      SeenRequest r;
      r.head = c.in.substr(0, end + 4);
      size_t sp1 = r.head.find(' ');
      size_t sp2 = r.head.find(' ', sp1 + 1);
      r.method = r.head.substr(0, sp1);
      r.target = r.head.substr(sp1 + 1, sp2 - sp1 - 1);
      size_t len = 0;
      size_t cl = r.head.find("Content-Length: ");
      if (cl != std::string::npos) len = std::stoul(r.head.substr(cl + 16));
      if (c.in.size() < end + 4 + len) return;
      r.body = c.in.substr(end + 4, len);
      c.in.erase(0, end + 4 + len);
      r.connection = c.id;
      r.index_on_connection = c.served++;
      {
        std::lock_guard<std::mutex> lock(mu_);
        seen_.push_back(r);
      }
      ++requests_;
      Answer a = handler_(r);
      if (a.kind == Answer::kHang) continue;
      if (a.kind != Answer::kCloseWithoutResponse) {
        ::send(c.fd, a.bytes.data(), a.bytes.size(), MSG_NOSIGNAL);
        ++answered_;
      }
      if (a.kind != Answer::kRespond) {
        ::close(c.fd);
        c.fd = -1;
      }
    }
  }

  Handler handler_;
  int fd_ = -1;
  bool ok_ = false;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::atomic<int> closed_{0};
  std::atomic<int> requests_{0};
  std::atomic<int> answered_{0};
  std::vector<Conn> conns_;  // server thread only
  std::mutex mu_;
  std::vector<SeenRequest> seen_;
  std::thread thread_;
};

class TestDnsServer {
 public:
  // name -> IPv4 addresses; every answer carries `ttl`.
  explicit TestDnsServer(std::map<std::string, std::vector<std::string>> names, uint32_t ttl = 60)
      : names_(std::move(names)), ttl_(ttl) {
    fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~TestDnsServer() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // A queries seen for `name`.
  int a_queries(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    return a_queries_[name];
  }
  int total_queries() const { return total_.load(); }

 private:
  void run() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      unsigned char q[512];
      sockaddr_storage from{};
      socklen_t flen = sizeof from;
      ssize_t n = ::recvfrom(fd_, q, sizeof q, 0, reinterpret_cast<sockaddr*>(&from), &flen);
      if (n < 17) continue;
      ++total_;
      // Question: labels from offset 12, then type and class.
      std::string name;
      size_t i = 12;
      while (i < static_cast<size_t>(n) && q[i] != 0) {
        size_t l = q[i];
        if (!name.empty()) name += '.';
        name.append(reinterpret_cast<char*>(q) + i + 1, l);
        i += l + 1;
      }
      size_t qend = i + 5;  // zero label, type, class
      if (qend > static_cast<size_t>(n)) continue;
      uint16_t type = static_cast<uint16_t>(q[i + 1] << 8 | q[i + 2]);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::vector<unsigned char> r(q, q + qend);
      r[2] = 0x81;                                    // QR, RD
      r[3] = 0x80;                                    // RA, NOERROR
      r[6] = r[7] = r[8] = r[9] = r[10] = r[11] = 0;  // an, ns, ar counts
      auto it = names_.find(name);
      if (it == names_.end()) {
        r[3] = 0x83;  // NXDOMAIN
      } else if (type == 1) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          ++a_queries_[name];
        }
        r[7] = static_cast<unsigned char>(it->second.size());
        for (const auto& ip : it->second) {
          unsigned char rr[16] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4};
          rr[6] = static_cast<unsigned char>(ttl_ >> 24);
          rr[7] = static_cast<unsigned char>(ttl_ >> 16);
          rr[8] = static_cast<unsigned char>(ttl_ >> 8);
          rr[9] = static_cast<unsigned char>(ttl_);
          inet_pton(AF_INET, ip.c_str(), rr + 12);
          r.insert(r.end(), rr, rr + 16);
        }
      }
      ::sendto(fd_, r.data(), r.size(), 0, reinterpret_cast<sockaddr*>(&from), flen);
    }
  }

  std::map<std::string, std::vector<std::string>> names_;
  uint32_t ttl_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> total_{0};
  std::mutex mu_;
  std::map<std::string, int> a_queries_;
  std::thread thread_;
};

}  // namespace citadel::http::client::testing
