// Reading the YAML config with precise errors: every message names file:line and the key path,
// and says what was expected. Unknown keys are errors. Used on the control thread only.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

namespace citadel::core {

// Collects every error of one load so that `citadel validate` can print them all, in the order
// of their lines in the file (checks run key by key, not line by line).
class ConfigErrors {
 public:
  // `msg` already names file:line; `line` orders it. Line 0 (no line: the file cannot be read)
  // sorts first; errors on one line keep the order they were found in.
  void add(std::string msg, int line = 0);
  bool empty() const { return errors_.empty(); }
  const std::vector<std::string>& all() const { return errors_; }

 private:
  std::vector<std::string> errors_;
  std::vector<int> lines_;  // parallel to errors_, ascending
};

// A YAML node with its key path ("clusters[0].lb") and source file, for error messages.
class ConfigNode {
 public:
  // `fallback_line`: the line of the node's key, which an absent or empty node reports (an absent
  // key: its parent's key), so that every error names a line.
  ConfigNode(YAML::Node node, std::string path, const std::string* file, ConfigErrors* errors,
             int fallback_line = 0)
      : node_(std::move(node)),
        path_(std::move(path)),
        file_(file),
        errors_(errors),
        fallback_line_(fallback_line) {}

  bool defined() const { return node_.IsDefined() && !node_.IsNull(); }
  bool is_map() const { return node_.IsMap(); }
  bool is_seq() const { return node_.IsSequence(); }
  bool is_scalar() const { return node_.IsScalar(); }
  const std::string& path() const { return path_; }
  // The config file the node comes from ("" when none was given).
  const std::string& file() const;
  // The node's line; for an absent or empty node, the fallback line.
  int line() const;
  const YAML::Node& yaml() const { return node_; }

  // Child by key; errors if this node is not a map.
  ConfigNode operator[](const std::string& key) const;
  // Sequence element.
  ConfigNode at(size_t i) const;
  size_t size() const { return node_.size(); }
  std::vector<std::string> keys() const;

  // Reports an error at this node: "file:line: path: msg".
  void error(const std::string& msg) const;
  // Errors for every key not in `allowed`.
  void allow_keys(std::initializer_list<const char*> allowed) const;
  // Requires a map (errors otherwise); returns whether it is one.
  bool expect_map() const;
  bool expect_seq() const;

  // Typed reads. Each returns `fallback` (and records an error) when the value is malformed;
  // an absent node returns `fallback` silently.
  std::string str(const std::string& fallback = "") const;
  bool boolean(bool fallback) const;
  int64_t integer(int64_t fallback, int64_t min, int64_t max) const;
  uint64_t duration_ms(uint64_t fallback) const;
  // A duration where 0 makes no sense (an interval: 0 would spin); 0 is an error.
  uint64_t nonzero_duration_ms(uint64_t fallback) const;
  uint64_t size_bytes(uint64_t fallback) const;
  // One of `choices`; errors list the choices.
  std::string choice(const std::string& fallback, std::initializer_list<const char*> choices) const;
  std::vector<std::string> str_list() const;

 private:
  YAML::Node node_;
  std::string path_;
  const std::string* file_;
  ConfigErrors* errors_;
  int fallback_line_;
};

// Loads `file` into a root node; a YAML syntax error is reported with its line, and so is every
// key repeated in one mapping (yaml-cpp keeps both and a lookup silently takes one of them).
std::optional<YAML::Node> load_yaml_file(const std::string& file, ConfigErrors& errors);

}  // namespace citadel::core
