#!/usr/bin/env bash
# Side-by-side reverse-proxy benchmark: Citadel against nginx and haproxy on one upstream.
# Usage: bench/proxy_bench.sh [--duration 10] [--rounds 3] [--workers "1 2"] [--clients 64] [--quick]
# `make bench` installs the contenders (scripts/install-deps --bench) and builds first.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec /usr/bin/python3 bench/proxy_bench.py "$@"
