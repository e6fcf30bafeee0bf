// What a listener allows its clients, for every protocol's codec: head limits, timeouts, send
// buffer watermarks (HTTP/1.1 and HTTP/2), and HTTP/2's own limits. Built per listener with each
// snapshot; a connection keeps the settings it was accepted with.
#pragma once

#include <cstddef>
#include <cstdint>

#include "http/http1/parser.h"

namespace citadel::http {

// What a listener with `http2: true` allows an HTTP/2 client (http2/server_connection.h). The
// head limits (limits.max_head_bytes, max_header_count) bound a stream's header list too.
struct Http2Limits {
  uint32_t max_concurrent_streams = 128;
  uint32_t stream_window = 256 * 1024;     // request body bytes a stream may send unread
  uint32_t connection_window = 1 << 20;    // and all streams together
  uint32_t max_frame_size = 16384;
  // Streams a client may reset (token bucket: burst, then per second) before the connection
  // gets GOAWAY (rapid reset, CVE-2023-44487).
  uint32_t reset_burst = 200;
  uint32_t reset_rate = 50;
  // PING, SETTINGS, PRIORITY and WINDOW_UPDATE frames the same way (a DATA frame sent gives
  // two more WINDOW_UPDATEs), and empty DATA frames in a row: floods end with GOAWAY.
  uint32_t control_burst = 1000;
  uint32_t control_rate = 200;
  uint32_t max_empty_frames = 16;
  uint32_t max_continuations = 8;  // CONTINUATION frames after one HEADERS (CVE-2024-27316)
};

struct ServerSettings {
  Http2Limits http2;
  http1::ParseLimits limits;  // the request head, whatever the protocol
  uint64_t header_timeout_ms = 10'000;
  uint64_t body_idle_timeout_ms = 30'000;
  uint64_t keepalive_timeout_ms = 60'000;
  uint64_t request_timeout_ms = 0;  // 0: none
  size_t high_watermark = 256 * 1024;
  size_t low_watermark = 64 * 1024;
};

}  // namespace citadel::http
