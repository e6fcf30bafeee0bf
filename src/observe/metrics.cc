#include "observe/metrics.h"

#include <functional>

namespace citadel::observe {

void Histogram::snapshot(std::vector<uint64_t>& cumulative, uint64_t& sum_us) const {
  cumulative.assign(kBoundsUs.size() + 1, 0);
  sum_us = 0;
  for (size_t w = 0; w < n_; ++w) {
    for (size_t b = 0; b < cumulative.size(); ++b) {
      cumulative[b] += slots_[w].buckets[b].load(std::memory_order_relaxed);
    }
    sum_us += slots_[w].sum_us.load(std::memory_order_relaxed);
  }
  for (size_t b = 1; b < cumulative.size(); ++b) cumulative[b] += cumulative[b - 1];
}

template <class T, class Map>
static T* get_or_create(Map& families, size_t workers, const std::string& name,
                        const std::string& help, const std::string& labels) {
  auto& fam = families[name];
  if (fam.help.empty()) fam.help = help;
  auto& slot = fam.series[labels];
  if (!slot) slot = std::make_unique<T>(workers);
  return slot.get();
}

Counter* Registry::counter(const std::string& name, const std::string& help,
                           const std::string& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  return get_or_create<Counter>(counters_, workers_, name, help, labels);
}

Gauge* Registry::gauge(const std::string& name, const std::string& help,
                       const std::string& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  return get_or_create<Gauge>(gauges_, workers_, name, help, labels);
}

Histogram* Registry::histogram(const std::string& name, const std::string& help,
                               const std::string& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  return get_or_create<Histogram>(histograms_, workers_, name, help, labels);
}

void Registry::add_collector(Collector c) {
  std::lock_guard<std::mutex> lock(mu_);
  collectors_.push_back(std::move(c));
}

namespace {

std::string with_labels(const std::string& name, const std::string& labels,
                        const std::string& extra = "") {
  std::string all = labels;
  if (!extra.empty()) all += (all.empty() ? "" : ",") + extra;
  return all.empty() ? name : name + "{" + all + "}";
}

std::string fmt_seconds(uint64_t us) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6f", static_cast<double>(us) / 1e6);
  return buf;
}

}  // namespace

std::string Registry::render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  out.reserve(16384);
  for (const auto& [name, fam] : counters_) {
    out += "# HELP " + name + " " + fam.help + "\n# TYPE " + name + " counter\n";
    for (const auto& [labels, c] : fam.series) {
      out += with_labels(name, labels) + " " + std::to_string(c->value()) + "\n";
    }
  }
  for (const auto& [name, fam] : gauges_) {
    out += "# HELP " + name + " " + fam.help + "\n# TYPE " + name + " gauge\n";
    for (const auto& [labels, g] : fam.series) {
      out += with_labels(name, labels) + " " + std::to_string(g->value()) + "\n";
    }
  }
  std::vector<uint64_t> cum;
  for (const auto& [name, fam] : histograms_) {
    out += "# HELP " + name + " " + fam.help + "\n# TYPE " + name + " histogram\n";
    for (const auto& [labels, h] : fam.series) {
      uint64_t sum = 0;
      h->snapshot(cum, sum);
      for (size_t b = 0; b < Histogram::kBoundsUs.size(); ++b) {
        out += with_labels(name + "_bucket", labels,
                           "le=\"" + fmt_seconds(Histogram::kBoundsUs[b]) + "\"") +
               " " + std::to_string(cum[b]) + "\n";
      }
      out += with_labels(name + "_bucket", labels, "le=\"+Inf\"") + " " +
             std::to_string(cum.back()) + "\n";
      out += with_labels(name + "_sum", labels) + " " + fmt_seconds(sum) + "\n";
      out += with_labels(name + "_count", labels) + " " + std::to_string(cum.back()) + "\n";
    }
  }
  for (const auto& c : collectors_) c(out);
  return out;
}

}  // namespace citadel::observe
