// Fuzzes the chunked decoder, feeding the input in slices whose sizes come from the first byte,
// and checks that slicing never changes the outcome, the body or the trailer fields.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "http/http1/chunked.h"

using citadel::http::http1::ChunkedDecoder;

namespace {

// The trailer fields as "name\0value\0" pairs.
std::string trailer_text(const ChunkedDecoder& dec) {
  std::string out;
  if (!dec.has_trailers()) return out;
  citadel::http::HeaderMap fields;
  dec.trailers(fields);
  for (const auto& f : fields.fields()) {
    if (f.name.empty()) std::abort();  // decode() accepts no field without a name
    out.append(f.name).push_back('\0');
    out.append(f.value).push_back('\0');
  }
  return out;
}

ChunkedDecoder::Result run(std::string_view in, size_t slice, std::string& body,
                           std::string& trailers) {
  ChunkedDecoder dec;
  ChunkedDecoder::Result last = ChunkedDecoder::Result::kNeedMore;
  while (!in.empty()) {
    std::string_view part = in.substr(0, slice);
    in.remove_prefix(part.size());
    std::string_view piece;
    while (true) {
      last = dec.decode(part, piece);
      if (last == ChunkedDecoder::Result::kData) {
        body.append(piece);
        continue;
      }
      break;
    }
    if (last == ChunkedDecoder::Result::kDone || last == ChunkedDecoder::Result::kError) break;
  }
  if (last == ChunkedDecoder::Result::kDone) trailers = trailer_text(dec);
  return last;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  size_t slice = (data[0] % 17) + 1;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string whole_body, whole_trailers;
  std::string sliced_body, sliced_trailers;
  auto whole = run(in, in.size() + 1, whole_body, whole_trailers);
  auto sliced = run(in, slice, sliced_body, sliced_trailers);
  if (whole != sliced || whole_body != sliced_body || whole_trailers != sliced_trailers) {
    std::abort();
  }
  return 0;
}
