#!/usr/bin/env bash
# Fan-out (issue: hardening): `tributary ask` with a sources file of N sources, all on one simulated server,
# must answer within --deadline + 100 ms of wall clock from the process start, at memory that follows the
# in-flight bound (64 sources per question), not N. Prints, per N: wall seconds (GNU time, process start to
# exit), peak RSS, and how the sources ended.
#
# Usage: scripts/bench-fanout.sh [N...]   (default: 1000 3000 10000). Needs GNU time (/usr/bin/time).
# DEADLINE (default 4s) is the --deadline given. Set TRIBUTARY=path/to/tributary to skip the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${TRIBUTARY:-target/release/tributary}
if [ -z "${TRIBUTARY:-}" ]; then
  cargo build --release --quiet -p tributary-cli
fi
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1000 3000 10000)
deadline=${DEADLINE:-4s}
work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" sources --listen "127.0.0.1:$port" > "$work/sources.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.1)" 2>/dev/null && break
  sleep 0.1
done

echo "deadline: $deadline; simulated services at 127.0.0.1:$port (default latencies)"
printf '%8s  %10s  %12s  %s\n' sources "wall s" "peak RSS MB" "sources: status counts"
for count in "${counts[@]}"; do
  config="$work/sources-$count.toml"
  python3 - "$count" "$port" > "$config" <<'PY'
import sys
count, port = int(sys.argv[1]), sys.argv[2]
kinds = ["weather", "news", "kb"]
for i in range(count):
    print(f'[[source]]\nname = "s{i}"\nkind = "{kinds[i % 3]}"\nbase_url = "http://127.0.0.1:{port}/"\n')
PY
  /usr/bin/time -f '%M %e' -o "$work/time" "$bin" ask "Weather in Paris and news about rust?" \
    --config "$config" --deadline "$deadline" --json > "$work/report.json" || true
  read -r peak_kb seconds < "$work/time"
  python3 - "$count" "$peak_kb" "$seconds" "$work/report.json" <<'PY'
import collections, json, sys
count, peak_kb, seconds, path = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
report = json.load(open(path))
statuses = collections.Counter(source["status"] for source in report["sources"])
print(f"{count:8d}  {seconds:10.2f}  {peak_kb / 1024:12.1f}  {dict(statuses)}")
PY
done
