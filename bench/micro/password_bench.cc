// The raw Argon2id rate on one thread with the identity service's default parameters (OWASP's
// 19 MiB, 2 passes): what bench/auth_bench.py compares Citadel's logins per second with.
#include <benchmark/benchmark.h>

#include "crypto/password.h"

namespace {

void BM_Argon2idVerify(benchmark::State& state) {
  citadel::crypto::PasswordParams params;  // the service's defaults
  auto hash = citadel::crypto::password_hash("correct horse battery", params);
  for (auto _ : state) {
    benchmark::DoNotOptimize(citadel::crypto::password_verify("correct horse battery",
                                                              hash.value()));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Argon2idVerify)->Unit(benchmark::kMillisecond);

}  // namespace
