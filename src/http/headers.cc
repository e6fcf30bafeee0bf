#include "http/headers.h"

#include <algorithm>

namespace citadel::http {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    unsigned char x = static_cast<unsigned char>(a[i]);
    unsigned char y = static_cast<unsigned char>(b[i]);
    if (x == y) continue;
    if ((x | 0x20) != (y | 0x20) || (x | 0x20) < 'a' || (x | 0x20) > 'z') return false;
  }
  return true;
}

void HeaderMap::set(std::string_view name, std::string_view value) {
  remove(name);
  fields_.push_back({name, value});
}

size_t HeaderMap::remove(std::string_view name) {
  auto it = std::remove_if(fields_.begin(), fields_.end(),
                           [&](const HeaderField& f) { return iequals(f.name, name); });
  size_t n = static_cast<size_t>(fields_.end() - it);
  fields_.erase(it, fields_.end());
  return n;
}

const HeaderField* HeaderMap::find(std::string_view name) const {
  for (const auto& f : fields_) {
    if (iequals(f.name, name)) return &f;
  }
  return nullptr;
}

size_t HeaderMap::count(std::string_view name) const {
  size_t n = 0;
  for (const auto& f : fields_) n += iequals(f.name, name) ? 1 : 0;
  return n;
}

bool safe_field_value(std::string_view value) {
  for (char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) return false;
  }
  return true;
}

}  // namespace citadel::http
