// The filters this build knows, by name. Filled once at start-up (cli wiring), read-only after.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "proxy/config.h"
#include "http/pipeline/filter.h"

namespace citadel::proxy {

class FilterRegistry final : public FilterValidator {
 public:
  void add(std::unique_ptr<pipeline::FilterConfigParser> parser);
  const pipeline::FilterConfigParser* find(const std::string& name) const;
  // FilterValidator: parses the options once to report errors at load time.
  void validate(const FilterEntry& entry, const core::ConfigNode& node) const override;
  // Builds the factory for a validated entry.
  std::unique_ptr<pipeline::FilterFactory> build(const FilterEntry& entry, const std::string& file,
                                       core::ConfigErrors& errors) const;

 private:
  std::map<std::string, std::unique_ptr<pipeline::FilterConfigParser>> parsers_;
};

}  // namespace citadel::proxy
