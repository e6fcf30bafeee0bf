// Fuzzes the upstream response head parser.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "http/http1/parser.h"

using namespace citadel::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  for (bool head_request : {false, true}) {
    ResponseHead head;
    auto r = http1::parse_response(in, {}, head_request, head);
    if (r.kind == http1::ParseOutcome::kError && r.status != 502) std::abort();
    if (r.kind == http1::ParseOutcome::kComplete) {
      if (r.consumed > size) std::abort();
      if (head.status < 100 || head.status > 599) std::abort();
      if (head_request && head.framing != BodyFraming::kNone) std::abort();
    }
  }
  return 0;
}
