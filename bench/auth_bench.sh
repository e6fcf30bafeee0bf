#!/usr/bin/env bash
# Identity and the jwt filter against their baselines (see bench/auth_bench.py).
# Usage: bench/auth_bench.sh [--duration 6] [--rounds 3] [--scenarios "jwt login refresh"]
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec /usr/bin/python3 bench/auth_bench.py "$@"
