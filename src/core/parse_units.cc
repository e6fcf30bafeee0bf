#include "core/parse_units.h"

#include <charconv>
#include <limits>

namespace citadel::core {
namespace {

// Splits "123unit" into number and unit; the number must be a non-empty run of digits.
bool split_number(std::string_view text, uint64_t& number, std::string_view& unit) {
  size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  if (i == 0) return false;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + i, number);
  if (ec != std::errc() || ptr != text.data() + i) return false;
  unit = text.substr(i);
  return true;
}

std::optional<uint64_t> scaled(uint64_t number, uint64_t factor) {
  if (number > std::numeric_limits<uint64_t>::max() / factor) return std::nullopt;
  return number * factor;
}

}  // namespace

std::optional<uint64_t> parse_duration_ms(std::string_view text) {
  uint64_t n = 0;
  std::string_view unit;
  if (!split_number(text, n, unit)) return std::nullopt;
  if (unit == "ms") return n;
  if (unit == "s") return scaled(n, 1000);
  if (unit == "m") return scaled(n, 60'000);
  if (unit == "h") return scaled(n, 3'600'000);
  if (unit == "d") return scaled(n, 86'400'000);
  return std::nullopt;
}

std::optional<uint64_t> parse_size_bytes(std::string_view text) {
  uint64_t n = 0;
  std::string_view unit;
  if (!split_number(text, n, unit)) return std::nullopt;
  if (unit.empty() || unit == "B") return n;
  if (unit == "KiB") return scaled(n, 1ull << 10);
  if (unit == "MiB") return scaled(n, 1ull << 20);
  if (unit == "GiB") return scaled(n, 1ull << 30);
  return std::nullopt;
}

}  // namespace citadel::core
