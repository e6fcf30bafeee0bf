// HeaderMap: an ordered list of header fields whose strings are views (into the parsed head or a
// request arena). Names keep the case they arrived with; lookups are case-insensitive.
//
// Owned by one stream; single-threaded. The storage behind the views must outlive the map.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace citadel::http {

bool iequals(std::string_view a, std::string_view b);

struct HeaderField {
  std::string_view name;
  std::string_view value;
};

// A field value that can be written as it is: no control characters but tab (a CR LF would end
// the field and start another). For values that come from config, not from the wire (the parser
// checks those).
bool safe_field_value(std::string_view value);

class HeaderMap {
 public:
  HeaderMap() = default;

  void add(std::string_view name, std::string_view value) {
    if (fields_.capacity() == 0) fields_.reserve(16);
    fields_.push_back({name, value});
  }
  // Replaces every field named `name` with one field (appended when absent).
  void set(std::string_view name, std::string_view value);
  // Removes every field named `name`; returns how many were removed.
  size_t remove(std::string_view name);
  // The first value of `name`, or an empty view with found=false.
  const HeaderField* find(std::string_view name) const;
  size_t count(std::string_view name) const;

  const std::vector<HeaderField>& fields() const { return fields_; }
  std::vector<HeaderField>& fields() { return fields_; }
  size_t size() const { return fields_.size(); }
  void clear() { fields_.clear(); }

 private:
  std::vector<HeaderField> fields_;
};

// Iterates the comma-separated elements of a list-valued header (trimmed, empties skipped).
template <class Fn>
void for_each_list_element(std::string_view value, Fn&& fn) {
  size_t i = 0;
  while (i <= value.size()) {
    size_t comma = value.find(',', i);
    if (comma == std::string_view::npos) comma = value.size();
    std::string_view e = value.substr(i, comma - i);
    while (!e.empty() && (e.front() == ' ' || e.front() == '\t')) e.remove_prefix(1);
    while (!e.empty() && (e.back() == ' ' || e.back() == '\t')) e.remove_suffix(1);
    if (!e.empty()) fn(e);
    i = comma + 1;
  }
}

}  // namespace citadel::http
