#include "proxy/extension_registry.h"

namespace citadel::proxy {

void ExtensionRegistry::add(std::unique_ptr<pipeline::FilterConfigParser> parser) {
  std::string name(parser->name());
  parsers_[name] = std::move(parser);
}

const pipeline::FilterConfigParser* ExtensionRegistry::find(const std::string& name) const {
  auto it = parsers_.find(name);
  return it == parsers_.end() ? nullptr : it->second.get();
}

void ExtensionRegistry::validate(const FilterEntry& entry, const core::ConfigNode& node) const {
  const pipeline::FilterConfigParser* p = find(entry.name);
  if (p == nullptr) {
    std::string known;
    for (const auto& [name, _] : parsers_) known += (known.empty() ? "" : ", ") + name;
    node.error("unknown filter \"" + entry.name + "\" (expected " + known + ")");
    return;
  }
  p->parse(node);
}

std::unique_ptr<pipeline::FilterFactory> ExtensionRegistry::build(const FilterEntry& entry,
                                                     const std::string& file,
                                                     core::ConfigErrors& errors) const {
  const pipeline::FilterConfigParser* p = find(entry.name);
  if (p == nullptr) return nullptr;
  core::ConfigNode node(entry.options, entry.path, &file, &errors);
  return p->parse(node);
}

}  // namespace citadel::proxy

namespace citadel::proxy {

void ExtensionRegistry::add_service(std::unique_ptr<pipeline::ServiceConfigParser> parser) {
  std::string name(parser->name());
  services_[name] = std::move(parser);
}

std::string ExtensionRegistry::service_names() const {
  std::string names;
  for (const auto& [name, _] : services_) names += (names.empty() ? "" : ", ") + name;
  return names;
}

void ExtensionRegistry::validate_service(const std::string& name,
                                         const core::ConfigNode& node) const {
  auto it = services_.find(name);
  if (it != services_.end()) it->second->parse(node);
}

std::unique_ptr<pipeline::HandlerFactory> ExtensionRegistry::build_service(
    const FilterEntry& entry, const std::string& file, core::ConfigErrors& errors) const {
  auto it = services_.find(entry.name);
  if (it == services_.end()) return nullptr;
  core::ConfigNode node(entry.options, entry.path, &file, &errors);
  return it->second->parse(node);
}

}  // namespace citadel::proxy
