#include "proxy/extension_registry.h"

#include <utility>

namespace citadel::proxy {

// The BuildContext of one parse: a real build (kept state, the snapshot's metrics) or a check
// (scratch metrics, nothing kept).
class ExtensionRegistry::Context final : public pipeline::BuildContext {
 public:
  // A build for a snapshot.
  Context(const ExtensionRegistry& registry, std::string scope, const BuildSite& site)
      : registry_(&registry), scope_(std::move(scope)), metrics_(&site.metrics),
        workers_(site.workers), route_(site.route) {}
  // A check: one worker's worth of everything, thrown away after.
  explicit Context(std::string scope)
      : scope_(std::move(scope)), scratch_(std::make_unique<observe::Registry>(1)),
        metrics_(scratch_.get()), workers_(1) {}

  size_t workers() const override { return workers_; }
  observe::Registry& metrics() override { return *metrics_; }
  bool checking() const override { return registry_ == nullptr; }
  std::string_view route() const override { return route_; }

 protected:
  std::shared_ptr<void> find_state(std::string_view key, std::type_index type) override {
    if (registry_ == nullptr) return nullptr;
    return registry_->find_state(scope_ + "/" + std::string(key), type);
  }
  void keep_state(std::string_view key, std::type_index type,
                  std::shared_ptr<void> object) override {
    if (registry_ != nullptr) registry_->keep_state(scope_ + "/" + std::string(key), type, object);
  }

 private:
  const ExtensionRegistry* registry_ = nullptr;  // nullptr: checking
  std::string scope_;
  std::unique_ptr<observe::Registry> scratch_;
  observe::Registry* metrics_;
  size_t workers_;
  std::string_view route_;
};

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
  Context check("filter:" + entry.name);
  p->parse(node, check);
}

std::unique_ptr<pipeline::FilterFactory> ExtensionRegistry::build(const FilterEntry& entry,
                                                                  const std::string& file,
                                                                  core::ConfigErrors& errors,
                                                                  const BuildSite& site) const {
  const pipeline::FilterConfigParser* p = find(entry.name);
  core::ConfigNode node(entry.options, entry.path, &file, &errors);
  if (p == nullptr) {
    node.error("unknown filter \"" + entry.name + "\"");
    return nullptr;
  }
  Context ctx(*this, "filter:" + entry.name, site);
  const size_t before = errors.all().size();
  auto factory = p->parse(node, ctx);
  // A filter that is not built must never be skipped silently: a route without its WAF or its
  // authentication would serve everything.
  if (!factory && errors.all().size() == before) {
    node.error("filter \"" + entry.name + "\" failed to build");
  }
  return factory;
}

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
  if (it == services_.end()) return;
  Context check("service:" + name);
  it->second->parse(node, check);
}

std::unique_ptr<pipeline::HandlerFactory> ExtensionRegistry::build_service(
    const FilterEntry& entry, const std::string& file, core::ConfigErrors& errors,
    const BuildSite& site) const {
  auto it = services_.find(entry.name);
  if (it == services_.end()) return nullptr;
  core::ConfigNode node(entry.options, entry.path, &file, &errors);
  Context ctx(*this, "service:" + entry.name, site);
  const size_t before = errors.all().size();
  auto factory = it->second->parse(node, ctx);
  if (!factory && errors.all().size() == before) {
    node.error("service \"" + entry.name + "\" failed to build");
  }
  return factory;
}

std::shared_ptr<void> ExtensionRegistry::find_state(const std::string& key,
                                                    std::type_index type) const {
  std::lock_guard<std::mutex> lock(state_mu_);
  auto it = state_.find(key);
  if (it == state_.end() || it->second.type != type) return nullptr;
  return it->second.object.lock();
}

void ExtensionRegistry::keep_state(const std::string& key, std::type_index type,
                                   std::shared_ptr<void> obj) const {
  std::lock_guard<std::mutex> lock(state_mu_);
  // Forget what no snapshot holds any more, so the map stays as small as the live state.
  for (auto it = state_.begin(); it != state_.end();) {
    it = it->second.object.expired() ? state_.erase(it) : std::next(it);
  }
  state_.insert_or_assign(key, Kept{type, obj});
}

size_t ExtensionRegistry::live_state() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  size_t n = 0;
  for (const auto& [_, kept] : state_) n += kept.object.expired() ? 0 : 1;
  return n;
}

}  // namespace citadel::proxy
