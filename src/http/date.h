// The HTTP date of the current second (IMF-fixdate, RFC 9110 section 5.6.7:
// "Sun, 06 Nov 1994 08:49:37 GMT"), formatted at most once per second.
//
// One per thread that writes responses (each worker, the control thread for the admin
// listener); not thread-safe. The view stays valid until the next call in a later second.
#pragma once

#include <cstdint>
#include <ctime>
#include <string_view>

namespace citadel::http {

class DateCache {
 public:
  std::string_view now() { return at(std::time(nullptr)); }
  // The date of `t` (seconds since the epoch); for tests.
  std::string_view at(std::time_t t);

 private:
  std::time_t second_ = -1;
  char text_[32] = {0};
  size_t len_ = 0;
};

}  // namespace citadel::http
