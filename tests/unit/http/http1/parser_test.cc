#include "http/http1/parser.h"

#include <gtest/gtest.h>

#include <string>

namespace citadel::http::http1 {
namespace {

struct Case {
  const char* name;
  const char* raw;
  int status;  // 0: parses completely
};

ParseOutcome parse(const std::string& raw, RequestHead& head, ParseLimits limits = {}) {
  return parse_request(raw, limits, head);
}

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class RequestRejectTest : public ::testing::TestWithParam<Case> {};

TEST_P(RequestRejectTest, AnswersExpectedStatus) {
  const Case& c = GetParam();
  RequestHead head;
  ParseOutcome r = parse(c.raw, head);
  if (c.status == 0) {
    EXPECT_EQ(r.kind, ParseOutcome::kComplete) << c.name << ": " << r.reason;
  } else {
    ASSERT_EQ(r.kind, ParseOutcome::kError) << c.name;
    EXPECT_EQ(r.status, c.status) << c.name << ": " << r.reason;
  }
}

const Case kCases[] = {
    {"simple_get", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0},
    {"leading_empty_line", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0},
    {"cl_and_te", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
    {"te_and_cl", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400},
    {"duplicate_cl_same", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", 400},
    {"duplicate_cl_differ", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400},
    {"cl_list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n", 400},
    {"cl_sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", 400},
    {"cl_negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400},
    {"cl_hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400},
    {"cl_overflow", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
    {"te_not_final_chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400},
    {"te_identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 400},
    {"te_chunked_twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
    {"te_gzip_chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
    {"te_xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400},
    {"te_empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", 400},
    {"te_http10", "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
    {"te_chunked_ok", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", 0},
    {"obs_fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400},
    {"obs_fold_tab", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n", 400},
    {"space_before_colon", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 3\r\n\r\n", 400},
    {"tab_before_colon", "GET / HTTP/1.1\r\nHost: a\r\nX\t: 3\r\n\r\n", 400},
    {"bare_cr_in_value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400},
    {"bare_lf_in_value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\nb\r\n\r\n", 400},
    {"bare_lf_request_line", "GET / HTTP/1.1\nHost: a\r\n\r\n", 400},
    {"ctl_in_value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01" "b\r\n\r\n", 400},
    {"del_in_value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f" "b\r\n\r\n", 400},
    {"invalid_method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"empty_method", " / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"two_spaces", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"target_space", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"target_fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"target_bad_pct", "GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"target_trunc_pct", "GET /a% HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"target_not_slash", "GET a HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"target_high_bit", "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"asterisk_get", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"asterisk_options", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 0},
    {"connect", "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 501},
    {"connect_origin_form", "CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"connect_absolute_form", "CONNECT http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"absolute_form", "GET http://b.example/x HTTP/1.1\r\nHost: a\r\n\r\n", 0},
    {"absolute_userinfo", "GET http://u@b.example/x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"bad_version", "GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400},
    {"lower_version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400},
    {"version_2", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
    {"missing_host", "GET / HTTP/1.1\r\nX: a\r\n\r\n", 400},
    {"http10_no_host", "GET / HTTP/1.0\r\n\r\n", 0},
    {"two_hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
    {"bad_host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
    {"host_slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
    {"empty_name", "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 400},
    {"expect_other", "GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", 417},
};

INSTANTIATE_TEST_SUITE_P(Framing, RequestRejectTest, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(RequestParser, NulInValueRejected) {
  std::string raw("GET / HTTP/1.1\r\nHost: a\r\nX: a");
  raw.push_back('\0');
  raw += "b\r\n\r\n";
  RequestHead head;
  auto r = parse(raw, head);
  ASSERT_EQ(r.kind, ParseOutcome::kError);
  EXPECT_EQ(r.status, 400);
}

TEST(RequestParser, FieldsAndFraming) {
  RequestHead head;
  std::string raw =
      "POST /api/v1/users?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nContent-Length: 12\r\n"
      "Connection: close\r\nX-Empty:\r\nX-Pad:  padded \t\r\n\r\nbody";
  auto r = parse(raw, head);
  ASSERT_EQ(r.kind, ParseOutcome::kComplete);
  EXPECT_EQ(r.consumed, raw.size() - 4);
  EXPECT_EQ(head.method, "POST");
  EXPECT_EQ(head.target, "/api/v1/users?x=1");
  EXPECT_EQ(head.path, "/api/v1/users");
  EXPECT_EQ(head.query, "x=1");
  EXPECT_EQ(head.authority, "example.com:8080");
  EXPECT_EQ(head.framing, BodyFraming::kContentLength);
  EXPECT_EQ(head.content_length, 12u);
  EXPECT_FALSE(head.keep_alive);
  ASSERT_NE(head.headers.find("x-pad"), nullptr);
  EXPECT_EQ(head.headers.find("x-pad")->value, "padded");
  ASSERT_NE(head.headers.find("X-EMPTY"), nullptr);
  EXPECT_EQ(head.headers.find("X-EMPTY")->value, "");
}

TEST(RequestParser, AbsoluteFormOverridesHost) {
  RequestHead head;
  const std::string raw = "GET http://b.example:81/x?y HTTP/1.1\r\nHost: a\r\n\r\n";
  auto r = parse(raw, head);
  ASSERT_EQ(r.kind, ParseOutcome::kComplete);
  EXPECT_EQ(head.authority, "b.example:81");
  EXPECT_EQ(head.path, "/x");
  EXPECT_EQ(head.query, "y");
}

TEST(RequestParser, KeepAliveDefaults) {
  RequestHead a, b, c;
  parse("GET / HTTP/1.0\r\n\r\n", a);
  EXPECT_FALSE(a.keep_alive);
  parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", b);
  EXPECT_TRUE(b.keep_alive);
  parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n", c);
  EXPECT_TRUE(c.keep_alive);
}

TEST(RequestParser, UpgradeAndExpect) {
  RequestHead head;
  parse("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        "Expect: 100-Continue\r\n\r\n", head);
  EXPECT_TRUE(head.upgrade);
  EXPECT_TRUE(head.expect_continue);
  // Ignored from an HTTP/1.0 client (RFC 9110 section 7.8; it was tunnelled, from an attack).
  RequestHead old;
  parse("GET /ws HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", old);
  EXPECT_FALSE(old.upgrade);
}

TEST(RequestParser, IncompleteUntilEmptyLine) {
  std::string raw = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  for (size_t n = 0; n < raw.size(); ++n) {
    RequestHead head;
    auto r = parse(raw.substr(0, n), head);
    EXPECT_EQ(r.kind, ParseOutcome::kIncomplete) << n;
  }
}

TEST(RequestParser, EarlyRejectsGarbageMethod) {
  RequestHead head;
  auto r = parse("\x16\x03\x01\x02", head);  // a TLS ClientHello on a plain port
  ASSERT_EQ(r.kind, ParseOutcome::kError);
  EXPECT_EQ(r.status, 400);
}

TEST(RequestParser, Limits) {
  ParseLimits limits;
  limits.max_request_line = 64;
  limits.max_header_count = 3;
  limits.max_head_bytes = 256;
  RequestHead h1, h2, h3, h4;
  auto r = parse("GET /" + std::string(100, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n", h1, limits);
  EXPECT_EQ(r.status, 414);
  r = parse("GET /" + std::string(100, 'a'), h2, limits);  // incomplete but already too long
  EXPECT_EQ(r.status, 414);
  r = parse("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", h3, limits);
  EXPECT_EQ(r.status, 431);
  r = parse("GET / HTTP/1.1\r\nHost: a\r\nA: " + std::string(300, 'x'), h4, limits);
  EXPECT_EQ(r.status, 431);
}

TEST(ResponseParser, Framing) {
  struct R {
    const char* raw;
    bool head;
    int status;
    BodyFraming framing;
    bool keep_alive;
  } cases[] = {
      {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, 200, BodyFraming::kContentLength, true},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, 200, BodyFraming::kChunked, true},
      {"HTTP/1.1 200 OK\r\n\r\n", false, 200, BodyFraming::kUntilClose, false},
      {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, 200, BodyFraming::kNone, true},
      {"HTTP/1.1 204 No Content\r\n\r\n", false, 204, BodyFraming::kNone, true},
      {"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", false, 304, BodyFraming::kNone, true},
      {"HTTP/1.1 101 Switching Protocols\r\n\r\n", false, 101, BodyFraming::kNone, true},
      {"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false, 200, BodyFraming::kContentLength, false},
      {"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false, 200, BodyFraming::kNone, true},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, 200, BodyFraming::kUntilClose, false},
  };
  for (const auto& c : cases) {
    ResponseHead head;
    auto r = parse_response(c.raw, {}, c.head, head);
    ASSERT_EQ(r.kind, ParseOutcome::kComplete) << c.raw << r.reason;
    EXPECT_EQ(head.status, c.status) << c.raw;
    EXPECT_EQ(head.framing, c.framing) << c.raw;
    EXPECT_EQ(head.keep_alive, c.keep_alive) << c.raw;
  }
}

TEST(ResponseParser, RejectsAmbiguous) {
  const char* bad[] = {
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
      "HTTP/1.1 2000 OK\r\n\r\n",
      "HTTP/2.0 200 OK\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
      // Chunked last with another coding inside: refused (it was read until close and hung).
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
      "ICY 200 OK\r\n\r\n",
  };
  for (const char* raw : bad) {
    ResponseHead head;
    auto r = parse_response(raw, {}, false, head);
    EXPECT_EQ(r.kind, ParseOutcome::kError) << raw;
    EXPECT_EQ(r.status, 502) << raw;
  }
}

}  // namespace
}  // namespace citadel::http::http1
