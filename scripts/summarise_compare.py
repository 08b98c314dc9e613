"""Summarises `tributary ask --compare --json` lines from stdin: one row per run, then medians against targets."""
import json
import statistics
import sys

rows = [json.loads(line) for line in sys.stdin if line.strip()]
print("run  sequential  concurrent  speed-up   ideal  efficiency")
for number, row in enumerate(rows, 1):
    print(
        f"{number:>3}  {row['sequential']['elapsed_ms']:>8.0f}ms  {row['concurrent']['elapsed_ms']:>8.0f}ms"
        f"  {row['speedup']:>7.2f}x  {row['ideal_speedup']:>5.2f}x  {row['concurrent']['efficiency']:>10.3f}"
    )
speedup = statistics.median(row["speedup"] for row in rows)
ideal = statistics.median(row["ideal_speedup"] for row in rows)
efficiency = statistics.median(row["concurrent"]["efficiency"] for row in rows)
lowest = min(row["concurrent"]["efficiency"] for row in rows)
print(
    f"median speed-up {speedup:.2f}x (target >= 2.5x), ideal {ideal:.2f}x, "
    f"efficiency {efficiency:.3f} (target >= 0.95), lowest efficiency {lowest:.3f}"
)
