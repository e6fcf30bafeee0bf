#!/usr/bin/env bash
# HTTP/2 and TLS side by side: Citadel against nginx on one upstream (see bench/h2_bench.py).
# Usage: bench/h2_bench.sh [--duration 8] [--rounds 3] [--scenarios "h2-tls ... grpc gzip br zstd"]
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec /usr/bin/python3 bench/h2_bench.py "$@"
