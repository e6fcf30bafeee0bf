#include "proxy/filter_registry.h"

namespace citadel::proxy {

void FilterRegistry::add(std::unique_ptr<pipeline::FilterConfigParser> parser) {
  std::string name(parser->name());
  parsers_[name] = std::move(parser);
}

const pipeline::FilterConfigParser* FilterRegistry::find(const std::string& name) const {
  auto it = parsers_.find(name);
  return it == parsers_.end() ? nullptr : it->second.get();
}

void FilterRegistry::validate(const FilterEntry& entry, const core::ConfigNode& node) const {
  const pipeline::FilterConfigParser* p = find(entry.name);
  if (p == nullptr) {
    std::string known;
    for (const auto& [name, _] : parsers_) known += (known.empty() ? "" : ", ") + name;
    node.error("unknown filter \"" + entry.name + "\" (expected " + known + ")");
    return;
  }
  p->parse(node);
}

std::unique_ptr<pipeline::FilterFactory> FilterRegistry::build(const FilterEntry& entry,
                                                     const std::string& file,
                                                     core::ConfigErrors& errors) const {
  const pipeline::FilterConfigParser* p = find(entry.name);
  if (p == nullptr) return nullptr;
  core::ConfigNode node(entry.options, entry.path, &file, &errors);
  return p->parse(node);
}

}  // namespace citadel::proxy
