// The filters and services this build knows, by name. Filled once at start-up (the one place
// that wires them: cli/main.cc), read-only after; the loader validates against it and the
// snapshot builds factories from it.
//
// It also keeps the extensions' state across snapshots (BuildContext::state): by key, weakly, so
// an object lives exactly as long as some snapshot's factory holds it. Builds and checks run on
// the control thread; the store has a lock all the same, since nothing else orders them.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <typeindex>

#include "http/pipeline/build_context.h"
#include "http/pipeline/filter.h"
#include "http/pipeline/handler.h"
#include "observe/metrics.h"
#include "proxy/config.h"

namespace citadel::proxy {

// Where an extension is built: the snapshot's metrics and worker count, and the route.
struct BuildSite {
  observe::Registry& metrics;
  size_t workers;
  std::string_view route;  // "" for listener filters
};

class ExtensionRegistry final : public ExtensionValidator {
 public:
  void add(std::unique_ptr<pipeline::FilterConfigParser> parser);
  void add_service(std::unique_ptr<pipeline::ServiceConfigParser> parser);
  const pipeline::FilterConfigParser* find(const std::string& name) const;

  // ExtensionValidator: parses the options once, checking only (BuildContext::checking()), to
  // report errors at load time.
  void validate(const FilterEntry& entry, const core::ConfigNode& node) const override;
  bool has_service(const std::string& name) const override { return services_.count(name) != 0; }
  std::string service_names() const override;
  void validate_service(const std::string& name, const core::ConfigNode& node) const override;

  // Builds the factory for a validated filter entry.
  std::unique_ptr<pipeline::FilterFactory> build(const FilterEntry& entry, const std::string& file,
                                                 core::ConfigErrors& errors,
                                                 const BuildSite& site) const;
  // Builds the handler factory of a validated service (`entry.options` may be absent).
  std::unique_ptr<pipeline::HandlerFactory> build_service(const FilterEntry& entry,
                                                          const std::string& file,
                                                          core::ConfigErrors& errors,
                                                          const BuildSite& site) const;

  // How many kept objects are still alive (for tests).
  size_t live_state() const;

 private:
  class Context;
  struct Kept {
    std::type_index type;
    std::weak_ptr<void> object;
  };
  std::shared_ptr<void> find_state(const std::string& key, std::type_index type) const;
  void keep_state(const std::string& key, std::type_index type, std::shared_ptr<void> obj) const;

  std::map<std::string, std::unique_ptr<pipeline::FilterConfigParser>> parsers_;
  std::map<std::string, std::unique_ptr<pipeline::ServiceConfigParser>> services_;
  mutable std::mutex state_mu_;
  mutable std::map<std::string, Kept> state_;  // "filter:NAME/KEY" or "service:NAME/KEY"
};

}  // namespace citadel::proxy
