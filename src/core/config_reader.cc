#include "core/config_reader.h"

#include "core/parse_units.h"

namespace citadel::core {

ConfigNode ConfigNode::operator[](const std::string& key) const {
  std::string p = path_.empty() ? key : path_ + "." + key;
  if (!node_.IsMap()) return ConfigNode(YAML::Node(YAML::NodeType::Undefined), p, file_, errors_);
  return ConfigNode(node_[key], p, file_, errors_);
}

ConfigNode ConfigNode::at(size_t i) const {
  return ConfigNode(node_[i], path_ + "[" + std::to_string(i) + "]", file_, errors_);
}

std::vector<std::string> ConfigNode::keys() const {
  std::vector<std::string> out;
  if (!node_.IsMap()) return out;
  for (const auto& kv : node_) out.push_back(kv.first.as<std::string>());
  return out;
}

void ConfigNode::error(const std::string& msg) const {
  int line = node_.IsDefined() ? node_.Mark().line + 1 : 0;
  std::string where = *file_;
  if (line > 0) where += ":" + std::to_string(line);
  errors_->add(where + ": " + path_ + ": " + msg);
}

void ConfigNode::allow_keys(std::initializer_list<const char*> allowed) const {
  if (!node_.IsMap()) return;
  for (const auto& kv : node_) {
    std::string key = kv.first.as<std::string>();
    bool ok = false;
    for (const char* a : allowed) ok = ok || key == a;
    if (!ok) {
      std::string list;
      for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      int line = kv.first.Mark().line + 1;
      errors_->add(*file_ + ":" + std::to_string(line) + ": " +
                   (path_.empty() ? key : path_ + "." + key) + ": unknown key (expected one of " +
                   list + ")");
    }
  }
}

bool ConfigNode::expect_map() const {
  if (node_.IsMap()) return true;
  error("expected a mapping");
  return false;
}

bool ConfigNode::expect_seq() const {
  if (node_.IsSequence()) return true;
  error("expected a list");
  return false;
}

std::string ConfigNode::str(const std::string& fallback) const {
  if (!defined()) return fallback;
  if (!node_.IsScalar()) {
    error("expected a string");
    return fallback;
  }
  return node_.Scalar();
}

bool ConfigNode::boolean(bool fallback) const {
  if (!defined()) return fallback;
  if (node_.IsScalar()) {
    const std::string& s = node_.Scalar();
    if (s == "true") return true;
    if (s == "false") return false;
  }
  error("expected true or false");
  return fallback;
}

int64_t ConfigNode::integer(int64_t fallback, int64_t min, int64_t max) const {
  if (!defined()) return fallback;
  if (node_.IsScalar()) {
    const std::string& s = node_.Scalar();
    char* end = nullptr;
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (!s.empty() && end != nullptr && *end == '\0' && v >= min && v <= max) return v;
  }
  error("expected an integer from " + std::to_string(min) + " to " + std::to_string(max));
  return fallback;
}

uint64_t ConfigNode::duration_ms(uint64_t fallback) const {
  if (!defined()) return fallback;
  if (node_.IsScalar()) {
    if (auto v = parse_duration_ms(node_.Scalar())) return *v;
  }
  error("expected a duration such as 500ms, 1s, 5m or 1h");
  return fallback;
}

uint64_t ConfigNode::size_bytes(uint64_t fallback) const {
  if (!defined()) return fallback;
  if (node_.IsScalar()) {
    if (auto v = parse_size_bytes(node_.Scalar())) return *v;
  }
  error("expected a size such as 512B, 64KiB, 10MiB or 1GiB");
  return fallback;
}

std::string ConfigNode::choice(const std::string& fallback,
                               std::initializer_list<const char*> choices) const {
  if (!defined()) return fallback;
  std::string v = node_.IsScalar() ? node_.Scalar() : std::string();
  for (const char* c : choices) {
    if (v == c) return v;
  }
  std::string list;
  for (const char* c : choices) list += (list.empty() ? "" : ", ") + std::string(c);
  error("unknown value \"" + v + "\" (expected " + list + ")");
  return fallback;
}

std::vector<std::string> ConfigNode::str_list() const {
  std::vector<std::string> out;
  if (!defined()) return out;
  if (node_.IsScalar()) {
    out.push_back(node_.Scalar());
    return out;
  }
  if (!expect_seq()) return out;
  for (size_t i = 0; i < node_.size(); ++i) out.push_back(at(i).str());
  return out;
}

std::optional<YAML::Node> load_yaml_file(const std::string& file, ConfigErrors& errors) {
  try {
    return YAML::LoadFile(file);
  } catch (const YAML::BadFile&) {
    errors.add(file + ": cannot read the file");
  } catch (const YAML::ParserException& e) {
    errors.add(file + ":" + std::to_string(e.mark.line + 1) + ": YAML syntax error: " + e.msg);
  }
  return std::nullopt;
}

}  // namespace citadel::core
