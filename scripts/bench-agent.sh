#!/usr/bin/env bash
# The agent benchmark (issue: the agent): runs `tributary ask --compare` on the embedded default scenario several
# times and prints, per run and as medians, the measured speed-up over the sequential baseline, the ideal
# speed-up, and the concurrent run's efficiency (ideal schedule / measured time).
# Usage: scripts/bench-agent.sh [RUNS]   (default 5). Needs python3 to summarise the JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
question="What's the weather in Paris, and why does the GIL matter?"
cargo build --release --quiet -p tributary-cli
for _ in $(seq "$runs"); do
  target/release/tributary ask "$question" --compare --json
done | python3 scripts/summarise_compare.py
