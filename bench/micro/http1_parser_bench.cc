// Citadel's strict HTTP/1.1 request parser against Node's http_parser (Debian's
// libhttp-parser-dev), on the same requests, both producing header name/value views.
// Built by the release preset when Google Benchmark and http_parser are installed
// (scripts/install-deps --bench); run by `make bench`.
#include <benchmark/benchmark.h>
#include <http_parser.h>

#include <string>
#include <string_view>
#include <vector>

#include "http/http1/parser.h"

namespace {

const std::string kSmall = "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\n\r\n";
const std::string kBrowser =
    "GET /api/v1/users/12345?fields=name,email&expand=roles HTTP/1.1\r\n"
    "Host: app.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Safari/537.36\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Cookie: session=9f86d081884c7d659a2feaa0c55ad015; theme=dark; _ga=GA1.2.1234567.1234567\r\n"
    "Referer: https://app.example.com/dashboard\r\n"
    "X-Request-Id: 4bf92f3577b34da6a3ce929d0e0e4736\r\n"
    "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
    "Connection: keep-alive\r\n\r\n";

void citadel_parse(benchmark::State& state, const std::string& req) {
  citadel::http::RequestHead head;
  citadel::http::http1::ParseLimits limits;
  for (auto _ : state) {
    head.reset();
    auto r = citadel::http::http1::parse_request(req, limits, head);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(head.headers.size());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * req.size()));
}

struct Collected {
  std::vector<std::string_view> names;
  std::vector<std::string_view> values;
  std::string_view url;
};

int on_url(http_parser* p, const char* at, size_t n) {
  static_cast<Collected*>(p->data)->url = {at, n};
  return 0;
}
int on_field(http_parser* p, const char* at, size_t n) {
  static_cast<Collected*>(p->data)->names.emplace_back(at, n);
  return 0;
}
int on_value(http_parser* p, const char* at, size_t n) {
  static_cast<Collected*>(p->data)->values.emplace_back(at, n);
  return 0;
}

void node_parse(benchmark::State& state, const std::string& req) {
  http_parser_settings settings;
  http_parser_settings_init(&settings);
  settings.on_url = on_url;
  settings.on_header_field = on_field;
  settings.on_header_value = on_value;
  Collected c;
  c.names.reserve(32);
  c.values.reserve(32);
  http_parser p;
  for (auto _ : state) {
    c.names.clear();
    c.values.clear();
    http_parser_init(&p, HTTP_REQUEST);
    p.data = &c;
    size_t n = http_parser_execute(&p, &settings, req.data(), req.size());
    benchmark::DoNotOptimize(n);
    benchmark::DoNotOptimize(c.names.size());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * req.size()));
}

BENCHMARK_CAPTURE(citadel_parse, small, kSmall);
BENCHMARK_CAPTURE(node_parse, small, kSmall);
BENCHMARK_CAPTURE(citadel_parse, browser, kBrowser);
BENCHMARK_CAPTURE(node_parse, browser, kBrowser);

}  // namespace

BENCHMARK_MAIN();
