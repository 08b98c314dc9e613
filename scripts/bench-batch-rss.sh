#!/usr/bin/env bash
# Peak RSS of `tributary batch` (issue: the batch pipeline) for 100,000 and 1,000,000 input lines with cheap
# simulated work: no simulated latency, no inference budget (extraction and the text pipeline still run). Memory
# must stay flat: about the same for both sizes.
#
# QUESTIONS=repeated (default): every line is the same knowledge-base question, so after the first fetch each line
#   costs one cached lookup, one inference and one row: the cheapest work, to push a million lines through fast.
# QUESTIONS=distinct: every line asks all three sources something new (a city, a unique keyword), so nothing is
#   served from another line's cache and the response cache fills to its bound: the heavier, realistic case.
#
# Usage: scripts/bench-batch-rss.sh [LINES...]   (default: 100000 1000000). Needs GNU time (/usr/bin/time).
# Set TRIBUTARY=path/to/tributary to skip the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${TRIBUTARY:-target/release/tributary}
if [ -z "${TRIBUTARY:-}" ]; then
  cargo build --release --quiet -p tributary-cli
fi
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "questions: ${QUESTIONS:-repeated}"
printf '%10s  %12s  %10s  %12s  %s\n' lines "peak RSS MB" "seconds" "questions/s" "ok/degraded/failed (rows)"
for lines in "${sizes[@]}"; do
  input="$work/questions-$lines.txt"
  if [ "${QUESTIONS:-repeated}" = distinct ]; then
    awk -v n="$lines" 'BEGIN { split("Paris Lyon Tokyo Berlin Madrid London Rome Oslo", c, " ");
      for (i = 1; i <= n; i++) printf "Weather in %s and news about topic%d?\n", c[i % 8 + 1], i }' > "$input"
  else
    awk -v n="$lines" 'BEGIN { for (i = 1; i <= n; i++) print "what is it?" }' > "$input"
  fi
  /usr/bin/time -f '%M %e' -o "$work/time" "$bin" batch "$input" --db "$work/answers-$lines.db" --quiet --json \
    --inference-cost 0ms --fault weather=latency:0ms --fault news=latency:0ms --fault kb=latency:0ms \
    > "$work/summary.json"
  read -r peak_kb seconds < "$work/time"
  python3 - "$lines" "$peak_kb" "$seconds" "$work/summary.json" <<'PY'
import json, sys
lines, peak_kb, seconds, path = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
s = json.load(open(path))
db = s["in_db"]
rows = db["ok"] + db["degraded"] + db["failed"]
flag = "" if rows == lines else "  <-- MISMATCH"
print(f"{lines:10d}  {peak_kb / 1024:12.1f}  {seconds:10.1f}  {s['throughput_per_s']:12.0f}  "
      f"{s['ok']}/{s['degraded']}/{s['failed']} ({rows}){flag}")
PY
done
