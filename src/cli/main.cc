#include <cstdio>
#include <cstring>

#include "citadel/build_info.h"

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--version") == 0) {
    std::printf("citadel %s (%s, %s)\n", citadel::kVersion, citadel::kGitRevision,
                citadel::kBuildType);
    return 0;
  }
  std::printf("usage: citadel [--help] [--version]\n");
  return 0;
}
