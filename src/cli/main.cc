// citadel: the command line. `serve` (the default) runs the gateway; `validate` checks a config.
#include <signal.h>

#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <cstring>
#include <string>

#include "citadel/build_info.h"
#include "cli/server.h"
#include "filters/auth/jwt_filter.h"
#include "filters/compress/compress_filter.h"
#include "filters/compress/decompress_filter.h"
#include "filters/headers/headers_filter.h"
#include "platform/identity/bootstrap.h"
#include "platform/identity/identity_service.h"
#include "proxy/config.h"
#include "proxy/extension_registry.h"
#include "store/stores.h"

namespace {

constexpr const char* kUsage =
    "usage: citadel [serve] -c FILE      run the gateway with the config FILE\n"
    "       citadel validate -c FILE     check FILE; print every error with file:line\n"
    "       citadel admin create -c FILE --email EMAIL\n"
    "                                    make the first administrator in FILE's store (the\n"
    "                                    password is read from stdin) and print an admin API key\n"
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

// `citadel admin create`: the store the config names, the identity options it gives (or the
// defaults), a password from stdin. Prints the API key once; nothing secret goes elsewhere.
int admin_create(const std::string& config, const citadel::proxy::ExtensionRegistry& filters,
                 citadel::store::Stores& stores, const std::string& email) {
  if (email.empty()) {
    std::fprintf(stderr, "citadel admin create: --email EMAIL is needed\n");
    return 2;
  }
  citadel::core::ConfigErrors errors;
  auto cfg = citadel::proxy::load_config(config, filters, errors);
  if (!cfg) {
    for (const auto& e : errors.all()) std::fprintf(stderr, "%s\n", e.c_str());
    return 1;
  }
  citadel::platform::identity::IdentityOptions options;
  auto it = cfg->services.find("identity");
  if (it != cfg->services.end()) {
    citadel::core::ConfigErrors ignored;  // the config was checked above
    options = citadel::platform::identity::parse_identity_options(citadel::core::ConfigNode(
        it->second.options, "services.identity", &config, &ignored, it->second.line));
  }
  std::string password;
  if (isatty(STDIN_FILENO) != 0) std::fprintf(stderr, "password for %s: ", email.c_str());
  std::getline(std::cin, password);
  stores.configure(citadel::store::StoreOptions{cfg->data_dir});
  auto db = stores.sql();
  if (!db.ok()) {
    std::fprintf(stderr, "citadel admin create: %s\n", db.error().message().c_str());
    return 1;
  }
  auto made = citadel::platform::identity::create_admin(*db.value(), options, email, password);
  stores.close();
  if (!made.ok()) {
    std::fprintf(stderr, "citadel admin create: %s\n", made.error().message().c_str());
    return 1;
  }
  std::fprintf(stderr, "%s %s (user %s) with the admin role.\nIts API key, shown this once:\n",
               made.value().existed ? "Gave" : "Created", email.c_str(),
               made.value().user_id.c_str());
  std::printf("%s\n", made.value().api_key.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string command = "serve";
  std::string config;
  std::string email;
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
    } else if (a == "admin" && i + 1 < argc && std::string(argv[i + 1]) == "create") {
      command = "admin-create";
      ++i;
    } else if (a == "--email" && i + 1 < argc) {
      email = argv[++i];
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

  if (command == "admin-create") return admin_create(config, filters, stores, email);

  // Signals are read through a signalfd on the control thread: block them in every thread.
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGHUP, SIGTERM, SIGINT, SIGUSR1}) sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  citadel::cli::Server server(config, filters, stores);
  return server.run();
}
