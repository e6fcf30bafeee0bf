#include "core/config_reader.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "core/parse_units.h"

namespace citadel::core {

void ConfigErrors::add(std::string msg, int line) {
  // Stable: after every error on the same line or before it.
  auto pos = std::upper_bound(lines_.begin(), lines_.end(), line);
  errors_.insert(errors_.begin() + (pos - lines_.begin()), std::move(msg));
  lines_.insert(pos, line);
}

const std::string& ConfigNode::file() const {
  static const std::string kNone;
  return file_ != nullptr ? *file_ : kNone;
}

int ConfigNode::line() const {
  // An absent node has no mark (yaml-cpp's null mark has line -1), and an empty value
  // (`address:`) is marked where the next token starts: both report their key's line.
  if (!node_.IsDefined() || node_.IsNull()) return fallback_line_;
  int own = node_.Mark().line + 1;
  return own > 0 ? own : fallback_line_;
}

ConfigNode ConfigNode::operator[](const std::string& key) const {
  std::string p = path_.empty() ? key : path_ + "." + key;
  if (!node_.IsDefined() || !node_.IsMap()) {
    return ConfigNode(YAML::Node(YAML::NodeType::Undefined), p, file_, errors_, line());
  }
  // An absent key reports the line of this mapping's own key (`health_check:`), else its first.
  int key_line = fallback_line_ > 0 ? fallback_line_ : line();
  for (const auto& kv : node_) {
    if (kv.first.IsScalar() && kv.first.Scalar() == key) {
      key_line = kv.first.Mark().line + 1;
      break;
    }
  }
  return ConfigNode(node_[key], p, file_, errors_, key_line);
}

ConfigNode ConfigNode::at(size_t i) const {
  // An element has no key: its own line stands in for one (for its absent keys); an absent
  // or empty element reports the list's.
  ConfigNode e(node_[i], path_ + "[" + std::to_string(i) + "]", file_, errors_,
               fallback_line_ > 0 ? fallback_line_ : line());
  e.fallback_line_ = e.line();
  return e;
}

std::vector<std::string> ConfigNode::keys() const {
  std::vector<std::string> out;
  if (!node_.IsMap()) return out;
  for (const auto& kv : node_) {
    // A key that is itself a mapping or a list (`{ { port: 1 } }`) names nothing: reported
    // where the keys are checked (allow_keys), skipped here.
    if (kv.first.IsScalar()) out.push_back(kv.first.Scalar());
  }
  return out;
}

void ConfigNode::error(const std::string& msg) const {
  int at = line();
  std::string where = *file_;
  if (at > 0) where += ":" + std::to_string(at);
  errors_->add(where + ": " + (path_.empty() ? "" : path_ + ": ") + msg, at);
}

void ConfigNode::allow_keys(std::initializer_list<const char*> allowed) const {
  if (!node_.IsMap()) return;
  for (const auto& kv : node_) {
    if (!kv.first.IsScalar()) {
      int line = kv.first.Mark().line + 1;
      errors_->add(*file_ + ":" + std::to_string(line) + ": " +
                       (path_.empty() ? std::string() : path_ + ": ") +
                       "a key must be a plain name, not a mapping or a list",
                   line);
      continue;
    }
    std::string key = kv.first.Scalar();
    bool ok = false;
    for (const char* a : allowed) ok = ok || key == a;
    if (!ok) {
      std::string list;
      for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      int line = kv.first.Mark().line + 1;
      errors_->add(*file_ + ":" + std::to_string(line) + ": " +
                       (path_.empty() ? key : path_ + "." + key) +
                       ": unknown key (expected one of " + list + ")",
                   line);
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

uint64_t ConfigNode::nonzero_duration_ms(uint64_t fallback) const {
  if (!defined()) return fallback;
  uint64_t v = duration_ms(fallback);
  if (v != 0) return v;
  error("expected a duration greater than 0, such as 500ms or 1s");
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

namespace {

// Deeper than any real config; stops the walk on an alias that contains itself.
constexpr int kMaxDepth = 64;

// A config of any sane size has far fewer nodes.
constexpr size_t kMaxNodes = 100000;

// Reports every key that appears twice in one mapping, anywhere in the document (filter options
// too, which only their filter reads).
// Counts the nodes it visits in `budget` and stops at zero: aliases make a document expand
// (nine levels of ten aliases are a billion nodes from one kilobyte), and every walk of the
// loader would pay for it.
void check_duplicate_keys(const YAML::Node& n, const std::string& path, const std::string& file,
                          ConfigErrors& errors, int depth, size_t& budget) {
  if (depth > kMaxDepth || budget == 0) return;
  --budget;
  if (n.IsSequence()) {
    for (size_t i = 0; i < n.size() && budget > 0; ++i) {
      check_duplicate_keys(n[i], path + "[" + std::to_string(i) + "]", file, errors, depth + 1,
                           budget);
    }
    return;
  }
  if (!n.IsMap()) return;
  std::map<std::string, int> first_line;
  for (const auto& kv : n) {
    if (!kv.first.IsScalar()) continue;
    const std::string& key = kv.first.Scalar();
    std::string key_path = path.empty() ? key : path + "." + key;
    int line = kv.first.Mark().line + 1;
    auto [it, fresh] = first_line.emplace(key, line);
    if (!fresh) {
      errors.add(file + ":" + std::to_string(line) + ": " + key_path +
                     ": duplicate key (first at line " + std::to_string(it->second) + ")",
                 line);
      continue;
    }
    check_duplicate_keys(kv.second, key_path, file, errors, depth + 1, budget);
    if (budget == 0) return;
  }
}

}  // namespace

std::optional<YAML::Node> load_yaml_file(const std::string& file, ConfigErrors& errors) {
  YAML::Node root;
  // A directory (or a device) opens but cannot be read: yaml-cpp then throws an I/O error that
  // is no YAML exception, and a reload must refuse it, not abort the server.
  struct stat st;
  if (::stat(file.c_str(), &st) != 0) {
    errors.add(file + ": cannot read the file (" + std::strerror(errno) + ")");
    return std::nullopt;
  }
  if (!S_ISREG(st.st_mode)) {
    errors.add(file + ": cannot read the file (not a regular file)");
    return std::nullopt;
  }
  try {
    root = YAML::LoadFile(file);
  } catch (const YAML::BadFile&) {
    errors.add(file + ": cannot read the file");
    return std::nullopt;
  } catch (const YAML::ParserException& e) {
    errors.add(file + ":" + std::to_string(e.mark.line + 1) + ": YAML syntax error: " + e.msg,
               e.mark.line + 1);
    return std::nullopt;
  } catch (const std::exception& e) {
    errors.add(file + ": cannot read the file (" + e.what() + ")");
    return std::nullopt;
  }
  size_t budget = kMaxNodes;
  check_duplicate_keys(root, "", file, errors, 0, budget);
  if (budget == 0) {
    errors.add(file + ": the document expands to more than " + std::to_string(kMaxNodes) +
               " nodes (YAML aliases?)");
    return std::nullopt;
  }
  return root;
}

}  // namespace citadel::core
