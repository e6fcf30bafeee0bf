// The filters and services this build knows, by name. Filled once at start-up (the one place
// that wires them: cli/main.cc), read-only after; the loader validates against it and the
// snapshot builds factories from it.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "http/pipeline/filter.h"
#include "http/pipeline/handler.h"
#include "proxy/config.h"

namespace citadel::proxy {

class ExtensionRegistry final : public ExtensionValidator {
 public:
  void add(std::unique_ptr<pipeline::FilterConfigParser> parser);
  void add_service(std::unique_ptr<pipeline::ServiceConfigParser> parser);
  const pipeline::FilterConfigParser* find(const std::string& name) const;

  // ExtensionValidator: parses the options once to report errors at load time.
  void validate(const FilterEntry& entry, const core::ConfigNode& node) const override;
  bool has_service(const std::string& name) const override { return services_.count(name) != 0; }
  std::string service_names() const override;
  void validate_service(const std::string& name, const core::ConfigNode& node) const override;

  // Builds the factory for a validated filter entry.
  std::unique_ptr<pipeline::FilterFactory> build(const FilterEntry& entry, const std::string& file,
                                                 core::ConfigErrors& errors) const;
  // Builds the handler factory of a validated service (`entry.options` may be absent).
  std::unique_ptr<pipeline::HandlerFactory> build_service(const FilterEntry& entry,
                                                          const std::string& file,
                                                          core::ConfigErrors& errors) const;

 private:
  std::map<std::string, std::unique_ptr<pipeline::FilterConfigParser>> parsers_;
  std::map<std::string, std::unique_ptr<pipeline::ServiceConfigParser>> services_;
};

}  // namespace citadel::proxy
