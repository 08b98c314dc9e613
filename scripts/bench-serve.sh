#!/usr/bin/env bash
# The serve benchmark (docs/BENCHMARKS.md): `tributary serve` against the Python peer
# (benches/peers/python_agent) on the same simulated services with fixed latencies and the same settings:
# capacity of each, then overload of each at twice tributary's capacity; prints asks/s at the same p99.
# Usage: scripts/bench-serve.sh [compare options...]   e.g. --json, --rates 5,10,20, --inference-cost-ms 20
#   (scripts/bench-serve.py compare --help lists them). TRIBUTARY=path uses that binary instead of building one.
# Makes a virtual environment with the pinned requirements on first use: target/bench-serve-venv, or
# $BENCH_SERVE_VENV.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${BENCH_SERVE_VENV:-target/bench-serve-venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r scripts/requirements-bench.txt -r benches/peers/python_agent/requirements.txt
fi
if [ -z "${TRIBUTARY:-}" ]; then
  cargo build --release --quiet -p tributary-cli
  TRIBUTARY=target/release/tributary
fi
exec "$venv/bin/python" scripts/bench-serve.py compare --tributary "$TRIBUTARY" "$@"
