#include "proxy/route_regex.h"

namespace citadel::proxy {

core::Result<std::unique_ptr<re2::RE2>> compile_route_regex(std::string_view pattern) {
  re2::RE2::Options options;
  options.set_encoding(re2::RE2::Options::EncodingLatin1);
  // The loader reports the error with file:line; RE2 would also print it to stderr.
  options.set_log_errors(false);
  auto re = std::make_unique<re2::RE2>(re2::StringPiece(pattern.data(), pattern.size()), options);
  if (!re->ok()) return core::Status::error(re->error());
  return re;
}

core::Result<std::string> to_re2_rewrite(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 4);
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '\\') {
      out += "\\\\";  // a literal backslash; RE2 reads `\` as the start of `\N`
      continue;
    }
    if (c != '$' || i + 1 == s.size()) {
      out.push_back(c);
      continue;
    }
    const char next = s[i + 1];
    if (next == '$') {
      out.push_back('$');
      ++i;
    } else if (next == '&') {
      out += "\\0";
      ++i;
    } else if (next == '`' || next == '\'') {
      return core::Status::error(std::string("$") + next +
                                 " (the text around the match) is not supported; match the "
                                 "whole path and use groups $1..$9");
    } else if (next >= '0' && next <= '9') {
      // Like std::regex_replace: `$nn` takes a second digit when there is one.
      int group = next - '0';
      ++i;
      if (i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '9') {
        group = group * 10 + (s[i + 1] - '0');
        ++i;
      }
      if (group > 9) {
        return core::Status::error(std::string(s.substr(i - 2, 3)) +
                                   ": only groups $0..$9 can be named (for group N followed "
                                   "by a digit, write $0N and the digit)");
      }
      out.push_back('\\');
      out.push_back(static_cast<char>('0' + group));
    } else {
      out.push_back('$');  // `$x`: a dollar and the character, as std::regex_replace did
    }
  }
  return out;
}

}  // namespace citadel::proxy
