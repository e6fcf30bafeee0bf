#include "http/date.h"

namespace citadel::http {

std::string_view DateCache::at(std::time_t t) {
  if (t != second_) {
    second_ = t;
    std::tm tm;
    gmtime_r(&t, &tm);
    // strftime's %a and %b follow the C locale, which a server process keeps.
    len_ = std::strftime(text_, sizeof text_, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  }
  return std::string_view(text_, len_);
}

}  // namespace citadel::http
