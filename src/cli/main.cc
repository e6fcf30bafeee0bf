// citadel: the command line. `serve` (the default) runs the gateway; `validate` checks a config.
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "citadel/build_info.h"
#include "cli/server.h"
#include "filters/auth/jwt_filter.h"
#include "filters/compress/compress_filter.h"
#include "filters/compress/decompress_filter.h"
#include "filters/headers/headers_filter.h"
#include "platform/identity/identity_service.h"
#include "proxy/config.h"
#include "proxy/extension_registry.h"
#include "store/stores.h"

namespace {

constexpr const char* kUsage =
    "usage: citadel [serve] -c FILE      run the gateway with the config FILE\n"
    "       citadel validate -c FILE     check FILE; print every error with file:line\n"
    "       citadel --version            print the version\n"
    "       citadel --help               print this help\n"
    "\n"
    "Signals: SIGHUP reloads the config, SIGTERM/SIGINT drain and exit, SIGUSR1 reopens logs.\n"
    "Admin endpoints (admin.address): /metrics /healthz /readyz /config /clusters\n"
    "POST /config/reload.\n";

// The one place that knows every filter this build offers.
void register_extensions(citadel::proxy::ExtensionRegistry& r, citadel::store::Stores& stores) {
  r.add(std::make_unique<citadel::filters::HeadersFilterConfig>());
  r.add(std::make_unique<citadel::filters::CompressFilterConfig>());
  r.add(std::make_unique<citadel::filters::DecompressFilterConfig>());
  r.add(std::make_unique<citadel::filters::JwtFilterConfig>());
  r.add_service(std::make_unique<citadel::platform::identity::IdentityServiceParser>(stores));
}

}  // namespace

int main(int argc, char** argv) {
  std::string command = "serve";
  std::string config;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--version" || a == "-V") {
      std::printf("citadel %s (%s, %s)\n", citadel::kVersion, citadel::kGitRevision,
                  citadel::kBuildType);
      return 0;
    }
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if ((a == "-c" || a == "--config") && i + 1 < argc) {
      config = argv[++i];
    } else if (a == "serve" || a == "validate") {
      command = a;
    } else {
      std::fprintf(stderr, "citadel: unknown argument \"%s\"\n\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (config.empty()) {
    std::fprintf(stderr, "citadel: a config file is needed (-c FILE)\n\n%s", kUsage);
    return 2;
  }
  // The stores outlive the registry's parsers and the server that closes them.
  citadel::store::Stores stores;
  citadel::proxy::ExtensionRegistry filters;
  register_extensions(filters, stores);

  if (command == "validate") {
    citadel::core::ConfigErrors errors;
    auto cfg = citadel::proxy::load_config(config, filters, errors);
    if (!cfg) {
      for (const auto& e : errors.all()) std::fprintf(stderr, "%s\n", e.c_str());
      const size_t n = errors.all().size();
      std::fprintf(stderr, "%zu error%s\n", n, n == 1 ? "" : "s");
      return 1;
    }
    std::printf("%s: ok (%zu listeners, %zu clusters, %zu routes)\n", config.c_str(),
                cfg->listeners.size(), cfg->clusters.size(), cfg->routes.size());
    return 0;
  }

  // Signals are read through a signalfd on the control thread: block them in every thread.
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGHUP, SIGTERM, SIGINT, SIGUSR1}) sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  citadel::cli::Server server(config, filters, stores);
  return server.run();
}
