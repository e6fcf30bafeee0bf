#include "platform/form.h"

#include "core/ascii.h"

namespace citadel::platform {
namespace {

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool decode(std::string_view in, std::string& out) {
  out.clear();
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%') {
      const int hi = i + 1 < in.size() ? hex(in[i + 1]) : -1;
      const int lo = i + 2 < in.size() ? hex(in[i + 2]) : -1;
      if (hi < 0 || lo < 0) return false;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return true;
}

}  // namespace

bool parse_form(std::string_view body, std::map<std::string, std::string>& out,
                std::string& error) {
  out.clear();
  size_t count = 0;
  while (!body.empty()) {
    size_t amp = body.find('&');
    std::string_view pair = body.substr(0, amp);
    body = amp == std::string_view::npos ? std::string_view() : body.substr(amp + 1);
    if (pair.empty()) continue;
    if (++count > 64) {
      error = "too many parameters";
      return false;
    }
    size_t eq = pair.find('=');
    std::string name, value;
    if (!decode(pair.substr(0, eq), name) ||
        (eq != std::string_view::npos && !decode(pair.substr(eq + 1), value))) {
      error = "a malformed percent-escape";
      return false;
    }
    if (!out.emplace(std::move(name), std::move(value)).second) {
      error = "a parameter given twice";
      return false;
    }
  }
  return true;
}

bool has_media_type(const http::RequestHead& request, std::string_view type) {
  const http::HeaderField* f = request.headers.find("content-type");
  if (f == nullptr) return false;
  std::string_view v = f->value;
  v = v.substr(0, v.find(';'));
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  return core::ascii_lower(std::string(v)) == type;  // `type` is given in lower case
}

}  // namespace citadel::platform
