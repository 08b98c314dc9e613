#!/usr/bin/env python3
"""Scores tributary's answers on the evaluation set (eval/questions.jsonl), one configuration per --model value.

    scripts/eval.py [--binary target/release/tributary] [--label-model LABEL=SPEC ...]

Each configuration runs the whole set as one `tributary batch` on the embedded simulator (default seed), then
each answer is scored against what the simulator's data says:

- fact recall: of the facts a correct answer must state (a city and its temperature, a phrase of the article),
  the share the answer states (case-insensitive);
- relevance: of the sources that contributed a line, the share whose topic the question is about; and for the
  questions nothing in the data answers, the share answered with "no answer" (exit 3, `nothing_found`);
- unsupported numbers: numbers in a weather line that the weather service's response does not contain.

Prints one table row per configuration (markdown), the figures docs/BENCHMARKS.md records.
"""
import argparse
import json
import pathlib
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
QUESTIONS = ROOT / "eval" / "questions.jsonl"
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def weather_numbers(base, city):
    """Every number in the simulated weather service's response for `city`."""
    with urllib.request.urlopen(f"{base}/weather?city={urllib.request.quote(city)}") as response:
        text = response.read().decode()
    return set(NUMBER.findall(text))


def run(binary, spec, items, workdir):
    path = workdir / "questions.jsonl"
    path.write_text("".join(json.dumps({"id": x["id"], "question": x["question"]}) + "\n" for x in items))
    db, export = workdir / f"{len(list(workdir.iterdir()))}.db", workdir / "answers.jsonl"
    command = [binary, "batch", str(path), "--db", str(db), "--export", str(export),
               "--deadline", "60s", "--per-source-timeout", "30s"]
    if spec:
        command += ["--model", spec]
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    answers = {}
    for line in export.read_text().splitlines():
        row = json.loads(line)
        answers[row["id"]] = row
    return answers, seconds


def score(items, answers, numbers, details=False):
    facts_found = facts_total = lines_relevant = lines_total = negatives_right = negatives = 0
    unsupported = 0
    for item in items:
        row = answers[item["id"]]
        text = (row.get("answer") or "").lower()
        contributed = [s for s in row.get("sources", []) if s["status"] == "ok"]
        if not item["topics"]:
            negatives += 1
            negatives_right += row.get("answer") is None
        for fact in item["facts"]:
            facts_total += 1
            facts_found += fact.lower() in text
            if details and fact.lower() not in text:
                print(f"  {item['id']}: missing {fact!r}")
        for source in contributed:
            lines_total += 1
            lines_relevant += source["topic"] in item["topics"]
            if details and source["topic"] not in item["topics"]:
                print(f"  {item['id']}: off-topic {source['name']}: {(source.get('summary') or '')[:100]!r}")
            if source["topic"] == "weather" and item.get("weather_city"):
                stated = NUMBER.findall(source.get("summary") or "")
                unsupported += sum(n not in numbers[item["weather_city"]] for n in stated)
    return {
        "fact recall": facts_found / max(facts_total, 1),
        "relevance": lines_relevant / max(lines_total, 1),
        "no answer when none": negatives_right / max(negatives, 1),
        "unsupported numbers": unsupported,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "tributary"))
    parser.add_argument("--details", action="store_true", help="print each missing fact and off-topic line")
    parser.add_argument("--label-model", action="append", default=[],
                        help="LABEL=SPEC, SPEC as for --model (empty: simulated); repeatable")
    arguments = parser.parse_args()
    configurations = [entry.split("=", 1) for entry in arguments.label_model] or [["simulated", ""]]
    items = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    port = free_port()
    sources = subprocess.Popen([arguments.binary, "sources", "--listen", f"127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        numbers = {x["weather_city"]: weather_numbers(base, x["weather_city"])
                   for x in items if x.get("weather_city")}
    finally:
        sources.terminate()
        sources.wait()
    print(f"{len(items)} questions ({QUESTIONS.relative_to(ROOT)})")
    print("| configuration | fact recall | relevance | no answer when none | unsupported numbers | questions/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, spec in configurations:
        with tempfile.TemporaryDirectory() as workdir:
            answers, seconds = run(arguments.binary, spec, items, pathlib.Path(workdir))
        figures = score(items, answers, numbers, arguments.details)
        print(f"| {label} | {figures['fact recall']:.2f} | {figures['relevance']:.2f} | "
              f"{figures['no answer when none']:.2f} | {figures['unsupported numbers']} | "
              f"{len(items) / seconds:.2f} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
