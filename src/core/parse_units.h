// Parsing of the config language's durations ("500ms", "1s", "5m") and sizes ("64KiB", "10MiB").
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace citadel::core {

// Returns milliseconds, or nullopt when `text` is not a duration. Units: ms, s, m, h.
std::optional<uint64_t> parse_duration_ms(std::string_view text);

// Returns bytes, or nullopt when `text` is not a size. Units: B, KiB, MiB, GiB (and bare numbers).
std::optional<uint64_t> parse_size_bytes(std::string_view text);

}  // namespace citadel::core
