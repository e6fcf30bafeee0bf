// A QR code as an SVG image (Debian's libqrencode makes the matrix): what a TOTP enrolment hands
// the user to scan with an authenticator app.
#pragma once

#include <string>
#include <string_view>

namespace citadel::platform {

// `text` as a QR code (error correction M, a 4-module quiet zone), one <path> of unit squares
// scaled to `pixels` wide; empty when the text does not fit a QR code.
std::string qr_svg(std::string_view text, int pixels = 256);

}  // namespace citadel::platform
