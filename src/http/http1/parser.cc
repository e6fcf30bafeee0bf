#include "http/http1/parser.h"

#include <array>
#include <cstring>

namespace citadel::http::http1 {
namespace {

enum CharClass : uint8_t {
  kTchar = 1,        // token characters (RFC 9110 5.6.2)
  kTargetChar = 2,   // characters allowed in a request-target (RFC 3986, plus '%' checked apart)
  kFieldVchar = 4,   // VCHAR / obs-text / SP / HTAB inside a field value
  kHostChar = 8,     // reg-name / IP literal / port characters in Host
};

constexpr std::array<uint8_t, 256> make_table() {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    bool digit = c >= '0' && c <= '9';
    uint8_t v = 0;
    if (alpha || digit || (c != 0 && std::string_view("!#$%&'*+-.^_`|~").find(char(c)) !=
                                         std::string_view::npos)) {
      v |= kTchar;
    }
    if (alpha || digit ||
        (c != 0 && std::string_view("-._~%!$&'()*+,;=:@/?[]").find(char(c)) !=
                       std::string_view::npos)) {
      v |= kTargetChar;
    }
    if ((c >= 0x21 && c <= 0x7e) || c >= 0x80 || c == ' ' || c == '\t') v |= kFieldVchar;
    if (alpha || digit ||
        (c != 0 && std::string_view("-._~%!$&'()*+,;=:[]").find(char(c)) !=
                       std::string_view::npos)) {
      v |= kHostChar;
    }
    t[c] = v;
  }
  return t;
}

constexpr std::array<uint8_t, 256> kTable = make_table();

inline bool has(char c, CharClass k) { return (kTable[static_cast<unsigned char>(c)] & k) != 0; }

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// Validates a request-target's characters, including that every '%' starts a %XX triplet.
bool valid_target_chars(std::string_view s) {
  bool in_query = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    in_query = in_query || c == '?';
    // Browsers send some characters RFC 3986 leaves out raw in a query (search boxes: "a|b",
    // "{json}", "x^2"), and nginx takes them; they mean nothing to routing, so the query may
    // carry them. The path stays strict.
    const bool lenient = in_query && (c == '{' || c == '}' || c == '|' || c == '^' || c == '`');
    if (!has(c, kTargetChar) && !lenient) return false;
    if (c == '%') {
      if (i + 2 >= s.size() + 0 || !is_hex(s[i + 1]) || !is_hex(s[i + 2])) return false;
      i += 2;
    }
  }
  return true;
}

bool valid_host(std::string_view h) {
  if (h.empty()) return false;
  for (char c : h) {
    if (!has(c, kHostChar)) return false;
  }
  return true;
}

// Parses header field lines from `p` up to and including the empty line. Shared by requests
// and responses. Returns 0 on success or the status to answer with; `end_out` is set past the
// empty line.
struct FieldError {
  int status;
  std::string_view reason;
};

bool parse_fields(const char*& p, const char* end, const ParseLimits& limits, HeaderMap& headers,
                  FieldError& err, int bad_status) {
  while (true) {
    if (p >= end) {
      err = {bad_status, "truncated head"};
      return false;
    }
    if (*p == '\r') {
      if (p + 1 < end && p[1] == '\n') {
        p += 2;
        return true;
      }
      err = {bad_status, "bare CR"};
      return false;
    }
    if (*p == ' ' || *p == '\t') {
      err = {bad_status, "obs-fold or leading whitespace in field line"};
      return false;
    }
    const char* name_start = p;
    while (p < end && has(*p, kTchar)) ++p;
    if (p >= end || p == name_start) {
      err = {bad_status, "invalid field name"};
      return false;
    }
    if (*p != ':') {
      err = {bad_status, (*p == ' ' || *p == '\t') ? std::string_view("whitespace before colon")
                                                    : std::string_view("invalid field name")};
      return false;
    }
    std::string_view name(name_start, static_cast<size_t>(p - name_start));
    ++p;
    while (p < end && (*p == ' ' || *p == '\t')) ++p;
    const char* value_start = p;
    const char* cr = static_cast<const char*>(std::memchr(p, '\r', static_cast<size_t>(end - p)));
    if (cr == nullptr || cr + 1 >= end || cr[1] != '\n') {
      err = {bad_status, "bare CR or missing CRLF"};
      return false;
    }
    for (const char* q = value_start; q < cr; ++q) {
      if (!has(*q, kFieldVchar)) {
        err = {bad_status, *q == '\n' ? std::string_view("bare LF")
                                      : std::string_view("control character in field value")};
        return false;
      }
    }
    const char* value_end = cr;
    while (value_end > value_start && (value_end[-1] == ' ' || value_end[-1] == '\t')) --value_end;
    if (headers.size() >= limits.max_header_count) {
      err = {bad_status == 400 ? 431 : bad_status, "too many header fields"};
      return false;
    }
    headers.add(name, std::string_view(value_start, static_cast<size_t>(value_end - value_start)));
    p = cr + 2;
  }
}

// Parses a Content-Length value: digits only, no sign, no list, no overflow.
bool parse_content_length(std::string_view v, uint64_t& out) {
  if (v.empty() || v.size() > 19) return false;
  uint64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  out = n;
  return true;
}

struct Framing {
  bool has_cl = false;
  bool has_te = false;
  bool chunked = false;
  bool te_other = false;      // a coding other than chunked appears
  bool chunked_not_last = false;
  bool chunked_twice = false;
  bool cl_invalid = false;
  bool cl_duplicate = false;
  uint64_t cl = 0;
  bool conn_close = false;
  bool conn_keep_alive = false;
  bool conn_upgrade = false;
};

Framing scan_framing(const HeaderMap& headers) {
  Framing f;
  for (const auto& h : headers.fields()) {
    if (iequals(h.name, "content-length")) {
      if (f.has_cl) f.cl_duplicate = true;
      f.has_cl = true;
      if (!parse_content_length(h.value, f.cl)) f.cl_invalid = true;
    } else if (iequals(h.name, "transfer-encoding")) {
      f.has_te = true;
      bool any = false;
      for_each_list_element(h.value, [&](std::string_view e) {
        any = true;
        if (f.chunked) f.chunked_not_last = true;  // anything after chunked
        if (iequals(e, "chunked")) {
          if (f.chunked) f.chunked_twice = true;
          f.chunked = true;
        } else {
          f.te_other = true;
        }
      });
      if (!any) f.te_other = true;  // empty Transfer-Encoding value
    } else if (iequals(h.name, "connection")) {
      for_each_list_element(h.value, [&](std::string_view e) {
        if (iequals(e, "close")) f.conn_close = true;
        else if (iequals(e, "keep-alive")) f.conn_keep_alive = true;
        else if (iequals(e, "upgrade")) f.conn_upgrade = true;
      });
    }
  }
  // "chunked" followed by another coding: chunked is not last.
  return f;
}

// Parses "HTTP/x.y"; returns false on garbage. Sets major/minor.
bool parse_version(std::string_view v, int& major, int& minor) {
  if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || v[6] != '.') return false;
  if (v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9') return false;
  major = v[5] - '0';
  minor = v[7] - '0';
  return true;
}

}  // namespace

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!has(c, kTchar)) return false;
  }
  return true;
}

size_t find_head_end(std::string_view data, size_t from) {
  if (from > 3) from -= 3;
  else from = 0;
  if (data.size() < 4 || from >= data.size()) return std::string_view::npos;
  const void* hit = memmem(data.data() + from, data.size() - from, "\r\n\r\n", 4);
  if (hit == nullptr) return std::string_view::npos;
  return static_cast<size_t>(static_cast<const char*>(hit) - data.data()) + 4;
}

ParseOutcome parse_request(std::string_view data, const ParseLimits& limits, RequestHead& out) {
  const char* begin = data.data();
  const char* end = begin + data.size();
  const char* p = begin;
  // RFC 9112 2.2: ignore at least one empty line before the request line.
  int empty_lines = 0;
  while (end - p >= 2 && p[0] == '\r' && p[1] == '\n' && empty_lines < 4) {
    p += 2;
    ++empty_lines;
  }
  // The request line must end within the limit; otherwise 414 without waiting for the rest.
  const size_t avail = static_cast<size_t>(end - p);
  const char* line_end =
      static_cast<const char*>(std::memchr(p, '\n', avail < limits.max_request_line + 1
                                                        ? avail
                                                        : limits.max_request_line + 1));
  if (line_end == nullptr) {
    if (avail > limits.max_request_line) return ParseOutcome::error(414, "request line too long");
    // Early rejection of garbage so that a peer cannot hold a connection with junk.
    for (const char* q = p; q < end && *q != ' '; ++q) {
      if (!has(*q, kTchar)) return ParseOutcome::error(400, "invalid method");
    }
    // A CR not followed by LF can never end the line (RFC 9112 section 2.2: bare CR is invalid).
    const char* cr = static_cast<const char*>(std::memchr(p, '\r', avail));
    if (cr != nullptr && cr + 1 < end && cr[1] != '\n') return ParseOutcome::error(400, "bare CR");
    return {};
  }
  // The request line is checked as soon as it is complete, before the rest of the head
  // arrives: input that cannot become HTTP/1.x (an HTTP/0.9 "GET /", a stray protocol) is
  // refused at once instead of holding the connection until the header timeout.
  if (line_end == p || line_end[-1] != '\r') return ParseOutcome::error(400, "bare LF");
  const char* cr = line_end - 1;
  const char* const line_start = p;

  // method SP request-target SP HTTP-version CRLF
  const char* m = p;
  while (p < cr && has(*p, kTchar)) ++p;
  if (p == m || p >= cr || *p != ' ') return ParseOutcome::error(400, "invalid method");
  out.method = std::string_view(m, static_cast<size_t>(p - m));
  ++p;
  const char* t = p;
  while (p < cr && *p != ' ') ++p;
  if (p == t || p >= cr) return ParseOutcome::error(400, "invalid request line");
  std::string_view target(t, static_cast<size_t>(p - t));
  ++p;
  int major = 0;
  int minor = 0;
  if (!parse_version(std::string_view(p, static_cast<size_t>(cr - p)), major, minor)) {
    return ParseOutcome::error(400, "invalid HTTP version");
  }
  if (major != 1) return ParseOutcome::error(505, "unsupported HTTP version");
  out.version_minor = minor == 0 ? 0 : 1;
  if (!valid_target_chars(target)) return ParseOutcome::error(400, "invalid request target");
  out.target = target;
  p = line_end + 1;

  const size_t head_end = find_head_end(data, static_cast<size_t>(line_end - begin));
  if (head_end == std::string_view::npos) {
    if (data.size() > limits.max_head_bytes) {
      return ParseOutcome::error(431, "request head too large");
    }
    return {};
  }
  if (head_end > limits.max_head_bytes + static_cast<size_t>(line_start - begin)) {
    return ParseOutcome::error(431, "request head too large");
  }

  FieldError ferr{};
  if (!parse_fields(p, begin + head_end, limits, out.headers, ferr, 400)) {
    return ParseOutcome::error(ferr.status, ferr.reason);
  }

  // Target form (RFC 9112 3.2).
  std::string_view authority_from_target;
  if (out.method == "CONNECT") {
    // Only authority-form belongs to CONNECT (RFC 9112 section 3.2.3), and Citadel tunnels
    // nothing through CONNECT: any other form is malformed, this one unsupported.
    if (target.front() == '/' || target == "*" || target.find("://") != std::string_view::npos) {
      return ParseOutcome::error(400, "CONNECT needs an authority-form target");
    }
    return ParseOutcome::error(501, "CONNECT is not supported");
  }
  if (target.front() == '/') {
    // origin-form
  } else if (target == "*") {
    if (out.method != "OPTIONS") return ParseOutcome::error(400, "asterisk-form outside OPTIONS");
  } else if (out.method == "CONNECT") {
    return ParseOutcome::error(501, "CONNECT is not supported");
  } else {
    size_t colon = target.find("://");
    if (colon == std::string_view::npos) return ParseOutcome::error(400, "invalid request target");
    std::string_view scheme = target.substr(0, colon);
    if (!iequals(scheme, "http") && !iequals(scheme, "https")) {
      return ParseOutcome::error(400, "invalid request target scheme");
    }
    std::string_view rest = target.substr(colon + 3);
    size_t slash = rest.find_first_of("/?");
    authority_from_target = rest.substr(0, slash);
    if (authority_from_target.empty() || authority_from_target.find('@') != std::string_view::npos) {
      return ParseOutcome::error(400, "invalid request target authority");
    }
    target = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
    if (target.front() == '?') return ParseOutcome::error(400, "invalid request target");
  }
  size_t q = target.find('?');
  out.path = target.substr(0, q);
  out.query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);

  // Host (RFC 9112 3.2): exactly one in HTTP/1.1.
  size_t hosts = 0;
  std::string_view host;
  for (const auto& h : out.headers.fields()) {
    if (iequals(h.name, "host")) {
      ++hosts;
      host = h.value;
    }
  }
  if (hosts > 1) return ParseOutcome::error(400, "more than one Host");
  if (hosts == 0 && out.version_minor == 1) return ParseOutcome::error(400, "missing Host");
  if (hosts == 1 && !host.empty() && !valid_host(host)) return ParseOutcome::error(400, "invalid Host");
  if (!authority_from_target.empty()) {
    if (!valid_host(authority_from_target)) return ParseOutcome::error(400, "invalid Host");
    out.authority = authority_from_target;
  } else {
    out.authority = host;
  }

  // Framing (RFC 9112 6).
  Framing f = scan_framing(out.headers);
  if (f.has_te) {
    if (out.version_minor == 0) return ParseOutcome::error(400, "Transfer-Encoding in HTTP/1.0");
    if (f.has_cl) return ParseOutcome::error(400, "both Content-Length and Transfer-Encoding");
    if (f.chunked_twice || f.chunked_not_last || !f.chunked) {
      return ParseOutcome::error(400, "Transfer-Encoding is not a final chunked");
    }
    if (f.te_other) return ParseOutcome::error(501, "unsupported transfer coding");
    out.framing = BodyFraming::kChunked;
  } else if (f.has_cl) {
    if (f.cl_duplicate) return ParseOutcome::error(400, "duplicate Content-Length");
    if (f.cl_invalid) return ParseOutcome::error(400, "invalid Content-Length");
    out.content_length = f.cl;
    out.framing = f.cl == 0 ? BodyFraming::kNone : BodyFraming::kContentLength;
  } else {
    out.framing = BodyFraming::kNone;
  }
  out.keep_alive = out.version_minor == 1 ? !f.conn_close : (f.conn_keep_alive && !f.conn_close);

  if (const HeaderField* e = out.headers.find("expect")) {
    if (!iequals(e->value, "100-continue")) return ParseOutcome::error(417, "unsupported expectation");
    out.expect_continue = out.version_minor == 1;
  }
  // A server must ignore Upgrade in an HTTP/1.0 request (RFC 9110 section 7.8).
  out.upgrade = out.version_minor == 1 && f.conn_upgrade && out.headers.find("upgrade") != nullptr;
  out.is_head = out.method == "HEAD";
  return {ParseOutcome::kComplete, head_end, 0, {}};
}

ParseOutcome parse_response(std::string_view data, const ParseLimits& limits,
                            bool request_method_head, ResponseHead& out) {
  const size_t head_end = find_head_end(data, 0);
  if (head_end == std::string_view::npos) {
    if (data.size() > limits.max_head_bytes) return ParseOutcome::error(502, "response head too large");
    if (data.size() >= 5 && data.substr(0, 5) != "HTTP/") {
      return ParseOutcome::error(502, "invalid status line");
    }
    return {};
  }
  if (head_end > limits.max_head_bytes) return ParseOutcome::error(502, "response head too large");
  const char* begin = data.data();
  const char* end = begin + head_end;
  const char* p = begin;
  const char* lf = static_cast<const char*>(std::memchr(p, '\n', head_end));
  if (lf == nullptr || lf == p || lf[-1] != '\r') return ParseOutcome::error(502, "invalid status line");
  const char* cr = lf - 1;
  // HTTP-version SP 3DIGIT [SP reason-phrase]
  if (cr - p < 12 || p[8] != ' ') return ParseOutcome::error(502, "invalid status line");
  int major = 0;
  int minor = 0;
  if (!parse_version(std::string_view(p, 8), major, minor) || major != 1) {
    return ParseOutcome::error(502, "invalid response version");
  }
  out.version_minor = minor == 0 ? 0 : 1;
  const char* s = p + 9;
  if (s[0] < '1' || s[0] > '5' || s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9') {
    return ParseOutcome::error(502, "invalid status code");
  }
  out.status = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
  const char* r = s + 3;
  if (r < cr) {
    if (*r != ' ') return ParseOutcome::error(502, "invalid status line");
    ++r;
  }
  for (const char* q = r; q < cr; ++q) {
    if (!has(*q, kFieldVchar)) return ParseOutcome::error(502, "invalid reason phrase");
  }
  out.reason = std::string_view(r, static_cast<size_t>(cr - r));
  p = lf + 1;
  FieldError ferr{};
  if (!parse_fields(p, end, limits, out.headers, ferr, 502)) {
    return ParseOutcome::error(502, ferr.reason);
  }

  Framing f = scan_framing(out.headers);
  out.keep_alive = out.version_minor == 1 ? !f.conn_close : (f.conn_keep_alive && !f.conn_close);
  const bool no_body = request_method_head || (out.status >= 100 && out.status < 200) ||
                       out.status == 204 || out.status == 304;
  if (f.has_te && f.has_cl) return ParseOutcome::error(502, "both Content-Length and Transfer-Encoding");
  if (f.has_cl && (f.cl_duplicate || f.cl_invalid)) {
    return ParseOutcome::error(502, "invalid Content-Length");
  }
  if (no_body) {
    out.framing = BodyFraming::kNone;
    out.content_length = f.has_cl ? f.cl : 0;  // HEAD: the length the GET would have had
  } else if (f.has_te) {
    if (f.chunked && !f.chunked_not_last && !f.chunked_twice && !f.te_other) {
      out.framing = BodyFraming::kChunked;
    } else if (f.chunked_twice || f.chunked_not_last) {
      return ParseOutcome::error(502, "invalid Transfer-Encoding");
    } else if (f.chunked) {
      // "gzip, chunked": framed by chunks, but a transfer coding inside them that Citadel would
      // have to undo or pass on to a client that never asked for it (TE). Refused, as nginx
      // does; it was read as close-delimited and hung until the upstream closed.
      return ParseOutcome::error(502, "unsupported transfer coding");
    } else {
      out.framing = BodyFraming::kUntilClose;  // RFC 9112 6.3 item 4
      out.keep_alive = false;
    }
  } else if (f.has_cl) {
    out.framing = f.cl == 0 ? BodyFraming::kNone : BodyFraming::kContentLength;
    out.content_length = f.cl;
  } else {
    out.framing = BodyFraming::kUntilClose;
    out.keep_alive = false;
  }
  return {ParseOutcome::kComplete, head_end, 0, {}};
}

bool valid_request_target(std::string_view s) { return !s.empty() && valid_target_chars(s); }
bool valid_host_value(std::string_view s) { return valid_host(s); }

}  // namespace citadel::http::http1
