// Small pieces shared by the HTTP/1 server and client codecs: writing heads and bodies, moving
// parsed heads out of a read buffer. No state, no I/O (that is the Transport's, in
// http/transport/).
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

#include "core/arena.h"
#include "core/buffer.h"
#include "http/headers.h"
#include "http/http1/chunked.h"

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
