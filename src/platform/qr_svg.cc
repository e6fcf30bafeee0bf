#include "platform/qr_svg.h"

#include <qrencode.h>

#include <string>

namespace citadel::platform {

std::string qr_svg(std::string_view text, int pixels) {
  const std::string s(text);  // libqrencode reads a NUL-terminated string
  QRcode* qr = QRcode_encodeString(s.c_str(), 0, QR_ECLEVEL_M, QR_MODE_8, 1);
  if (qr == nullptr) return {};
  const int quiet = 4;
  const int size = qr->width + 2 * quiet;
  std::string path;
  for (int y = 0; y < qr->width; ++y) {
    for (int x = 0; x < qr->width; ++x) {
      if ((qr->data[y * qr->width + x] & 1) == 0) continue;  // bit 0: a dark module
      path += "M" + std::to_string(x + quiet) + "," + std::to_string(y + quiet) + "h1v1h-1z";
    }
  }
  QRcode_free(qr);
  const std::string n = std::to_string(size);
  const std::string px = std::to_string(pixels);
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + px + "\" height=\"" + px +
         "\" viewBox=\"0 0 " + n + " " + n + "\" shape-rendering=\"crispEdges\">"
         "<rect width=\"" + n + "\" height=\"" + n + "\" fill=\"#fff\"/>"
         "<path fill=\"#000\" d=\"" + path + "\"/></svg>";
}

}  // namespace citadel::platform
