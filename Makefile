# The developer's entry points. Each target installs missing Debian packages first.
PRESET ?= release
JOBS ?= $(shell nproc)
# CI (CI=true) builds the release preset with warnings as errors.
CMAKE_EXTRA := $(if $(and $(CI),$(filter release,$(PRESET))),-DCITADEL_WERROR=ON,)

.PHONY: deps build run test bench fuzz asan tsan clean

deps:
	@scripts/install-deps

build: deps
	@cmake --preset $(PRESET) $(CMAKE_EXTRA) >/dev/null
	@cmake --build --preset $(PRESET) -j $(JOBS)

# The quickstart needs only the release binary: no unit tests, benchmarks or fuzzers.
run: deps
	@cmake --preset release $(CMAKE_EXTRA) >/dev/null
	@cmake --build --preset release -j $(JOBS) --target citadel
	@scripts/quickstart

test: build
	@ctest --preset $(PRESET) -j $(JOBS)

bench:
	@scripts/install-deps --bench
	@$(MAKE) --no-print-directory build PRESET=release
	@taskset -c 0 build/release/citadel_micro_bench --benchmark_min_time=0.5
	@bench/proxy_bench.sh
	@bench/h2_bench.sh
	@/usr/bin/python3 bench/per_request.py
	@bench/auth_bench.sh

asan:
	@$(MAKE) --no-print-directory test PRESET=asan

tsan:
	@$(MAKE) --no-print-directory test PRESET=tsan

fuzz: deps
	@cmake --preset fuzz >/dev/null
	@cmake --build --preset fuzz -j $(JOBS) --target fuzz_http1_request fuzz_http1_response fuzz_chunked fuzz_http2_server fuzz_client_hello fuzz_jws
	@scripts/run-fuzzers $(FUZZ_SECONDS)

clean:
	rm -rf build
