// Small pieces shared by the HTTP/1 server and client codecs and their listeners: accepting,
// reading, writing heads and moving parsed heads out of a read buffer. No state.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "core/arena.h"
#include "core/buffer.h"
#include "http/headers.h"
#include "http/http1/chunked.h"
#include "http/stream.h"

namespace citadel::http::http1 {

// `v` moved from [old_base, old_base + len) to the same offset in `nb`; views elsewhere stay.
inline std::string_view rebase(std::string_view v, const char* old_base, size_t len,
                               const char* nb) {
  if (v.data() >= old_base && v.data() < old_base + len) {
    return {nb + (v.data() - old_base), v.size()};
  }
  return v;
}

// Copies [base, base + len) into `arena` and rebases `fields` onto the copy. Returns the copy.
inline const char* move_fields_to_arena(HeaderMap& fields, const char* base, size_t len,
                                        core::Arena& arena) {
  char* nb = arena.allocate(len);
  std::memcpy(nb, base, len);
  for (auto& f : fields.fields()) {
    f.name = rebase(f.name, base, len, nb);
    f.value = rebase(f.value, base, len, nb);
  }
  return nb;
}

inline void append_uint(core::Buffer& b, uint64_t v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  char* w = b.prepare(n);
  for (size_t i = 0; i < n; ++i) w[i] = tmp[n - 1 - i];
  b.commit(n);
}

enum class AcceptResult {
  kAccepted,
  kNone,           // nothing queued, or an error that the next edge retries
  kNoDescriptors,  // out of descriptors or memory (errno says which); the client stays queued
};
// How long a listener waits before accepting again after kNoDescriptors: an edge-triggered
// listening socket does not report the clients still queued.
constexpr uint64_t kAcceptRetryMs = 100;

// Accepts one client from listening socket `lfd` (non-blocking, close-on-exec, TCP_NODELAY) and
// records its address in `info`.
inline AcceptResult accept_client(int lfd, int& fd, ConnectionInfo& info) {
  while (true) {
    sockaddr_storage ss;
    socklen_t len = sizeof ss;
    fd = ::accept4(lfd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        return AcceptResult::kNoDescriptors;
      }
      return AcceptResult::kNone;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (ss.ss_family == AF_INET) {
      const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
      inet_ntop(AF_INET, &a->sin_addr, info.peer_ip, sizeof info.peer_ip);
      info.peer_port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
      inet_ntop(AF_INET6, &a->sin6_addr, info.peer_ip, sizeof info.peer_ip);
      info.peer_port = ntohs(a->sin6_port);
    }
    return AcceptResult::kAccepted;
  }
}

enum class ReadResult { kDrained, kMore, kEof, kError };

// One read() into `in` (at least `chunk` bytes of room). kDrained: the socket had less than the
// room offered (or nothing: EAGAIN), so the next edge will announce more; kMore: the read filled
// the room and more may be waiting, which an edge-triggered socket will not announce again.
// kError leaves errno set.
inline ReadResult read_once(int fd, core::Buffer& in, size_t chunk) {
  while (true) {
    char* w = in.prepare(chunk);
    size_t room = in.writable();
    ssize_t n = ::read(fd, w, room);
    if (n > 0) {
      in.commit(static_cast<size_t>(n));
      return static_cast<size_t>(n) < room ? ReadResult::kDrained : ReadResult::kMore;
    }
    if (n == 0) return ReadResult::kEof;
    if (errno == EINTR) continue;
    return errno == EAGAIN ? ReadResult::kDrained : ReadResult::kError;
  }
}

// "name: value\r\n" for every field.
inline void append_fields(core::Buffer& b, const HeaderMap& headers) {
  for (const auto& f : headers.fields()) {
    b.append(f.name);
    b.append(": ");
    b.append(f.value);
    b.append("\r\n");
  }
}

// Body bytes as the message's framing wants them: a chunk (header, data, CRLF) when `chunked`,
// else the bytes as they are; `end_stream` adds the last chunk, with `trailers` when given (only
// chunked framing can carry them: otherwise they are dropped).
inline void append_body(core::Buffer& b, std::string_view data, bool chunked, bool end_stream,
                        const HeaderMap* trailers = nullptr) {
  if (!chunked) {
    b.append(data);
    return;
  }
  if (!data.empty()) {
    char hdr[20];
    b.append(std::string_view(hdr, format_chunk_header(data.size(), hdr)));
    b.append(data);
    b.append("\r\n");
  }
  if (!end_stream) return;
  if (trailers == nullptr || trailers->size() == 0) {
    b.append("0\r\n\r\n");
    return;
  }
  b.append("0\r\n");
  append_fields(b, *trailers);
  b.append("\r\n");
}

}  // namespace citadel::http::http1
