#!/usr/bin/env python3
"""Open-loop load on `tributary serve` and on its Python peer (benches/peers/python_agent): how many asks a
second each answers within the deadline, and how each behaves at twice that.

Modes:

    capacity URL   steps the offered rate (5, 10, 15, 20, ... asks/s, --step-seconds each) and reports per step
                   the asks/s answered (200), the p50/p99 latency of those, and the shares rejected (503) and
                   failed. The capacity is the highest rate at which the p99 of the answered asks stays within
                   the deadline, fewer than 1% are rejected and fewer than 1% fail (a degraded answer, a 502,
                   another status, an error). Stepping stops at the first rate that misses.
    overload URL   drives one rate (say twice the capacity) for --duration seconds and reports the answered
                   asks/s and their p50/p99, the rejections and how fast they came back, every other status and
                   error, and with --pid the server's resident memory each second (first, max, last).
    compare        starts `tributary sources` with fixed latencies, then `tributary serve --config` and the
                   Python peer on those services with the same deadline, per-source timeout, inference cost,
                   workers and in-flight bound, one after the other; runs capacity on each, then overload on
                   each at --overload-factor times tributary's capacity; prints asks/s at the same p99.

Open loop: asks start on a fixed schedule whatever the responses do (a slow server does not slow the load
down, as real users would not), at most --max-outstanding at once (an ask due beyond that is counted as not
sent), each with a timeout of the deadline plus 5 s. Every ask is one of a fixed list of questions that make all
three sources apply, the same for both servers. The generator's own lag behind its schedule is reported: when
its p99 passes 50 ms the offered rate was not really offered.

Exit codes: 0 done; 1 the environment failed (a server did not start or died); 2 a usage error, or the target
is unreachable or is not an ask server.

Needs aiohttp (scripts/requirements-bench.txt; scripts/bench-serve.sh makes a virtual environment with it).
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

REPOSITORY = Path(__file__).resolve().parent.parent
PEER_SERVER = REPOSITORY / "benches" / "peers" / "python_agent" / "server.py"

# Weather for a city the gazetteer knows, news on a topic the generated corpus covers, and a concept the
# knowledge base explains: every question makes all three sources apply (see plan.rs), and each one differs, so
# that no source answers from a cache (the compare mode configures none anyway).
CITIES = ("Paris", "Tokyo", "Lagos", "Lima", "Berlin", "Sydney", "Toronto", "Delhi", "Cairo", "Madrid", "Seoul",
          "Nairobi")
TOPICS = ("energy", "transport", "health", "technology", "climate", "housing", "economy", "sport", "science",
          "agriculture", "culture", "tourism")
CONCEPTS = ("structured concurrency", "the GIL", "deadlines", "the event loop", "task groups", "timeouts",
            "thread pools", "backpressure", "cancellation", "process pools", "retries", "async I/O")
QUESTIONS = tuple(
    f"What is the weather in {city}, and what is the news about {topic} and {concept}?"
    for city, topic, concept in zip(CITIES, TOPICS, CONCEPTS)
)

DEFAULT_RATES = (5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 120, 160, 200)

# Each ask's client timeout is the deadline plus this: a server keeping its deadline never meets it.
REQUEST_TIMEOUT_GRACE_SECONDS = 5.0

# A step passes with fewer than this share of its asks rejected, and fewer than this share failed.
MAX_REJECTED_SHARE = 0.01
MAX_FAILED_SHARE = 0.01

# Past this p99 lag behind its schedule, the generator did not offer the rate it reports.
GENERATOR_LAG_WARNING_SECONDS = 0.05

# Past this ratio between the two servers' idle inference times, a comparison is not like for like.
MAX_INFERENCE_COST_RATIO = 1.25

# Asks sent one at a time before a run, to check the target and measure its inference cost when idle.
PROBE_ASKS = 5

# Rest between two capacity steps, after the first one's asks have all ended.
STEP_PAUSE_SECONDS = 1.0

# How often the server's memory is read during an overload.
MEMORY_SAMPLE_SECONDS = 1.0

# How long a started server may take to print its URL (the Python peer calibrates and starts its workers).
STARTUP_TIMEOUT_SECONDS = 60.0

# How long a server may take to stop after SIGTERM (its asks in flight finish within their deadline first).
STOP_GRACE_SECONDS = 10.0

EXIT_ENVIRONMENT = 1
EXIT_USAGE = 2


class BenchError(Exception):
    """Why the benchmark cannot go on, what the user can do about it, and the exit code that says so."""

    def __init__(self, message: str, exit_code: int, hint: str | None = None):
        super().__init__(message)
        self.exit_code = exit_code
        self.hint = hint


@dataclass(frozen=True)
class AskOutcome:
    """One ask as the client saw it."""

    latency: float
    http_status: int | None = None
    # The answer object's `status` (`ok`, `degraded`, `failed`) for a 200 or a 502.
    answer_status: str | None = None
    # The exception's class for an ask that got no response (a refused connection, the client timeout).
    error: str | None = None


@dataclass
class Load:
    """What one open-loop run sent and got back."""

    rate: float
    duration: float
    outcomes: list[AskOutcome] = field(default_factory=list)
    # Asks due while --max-outstanding were already outstanding.
    not_sent: int = 0
    # How late each ask started against its schedule (the generator's own lag).
    start_lags: list[float] = field(default_factory=list)


def percentile(values: list[float], rank: float) -> float | None:
    """The nearest-rank percentile (`rank` from 0 to 100) of `values`, or None for none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(rank / 100.0 * len(ordered)) - 1)]


def milliseconds(seconds: float | None) -> float | None:
    """Seconds as milliseconds rounded to 0.1, None kept."""
    return None if seconds is None else round(seconds * 1000.0, 1)


async def send_ask(session: aiohttp.ClientSession, url: str, question: str, deadline_ms: int,
                   timeout: aiohttp.ClientTimeout) -> AskOutcome:
    """POSTs one ask; never raises for what the server or the network does, so one ask cannot stop a run."""
    started = time.perf_counter()
    try:
        async with session.post(f"{url}/v1/ask", json={"question": question, "deadline_ms": deadline_ms},
                                timeout=timeout) as response:
            body = await response.read()
            latency = time.perf_counter() - started
            answer_status = None
            if response.status in (200, 502):
                with contextlib.suppress(ValueError, AttributeError):
                    answer_status = json.loads(body).get("status")
            return AskOutcome(latency=latency, http_status=response.status, answer_status=answer_status)
    except Exception as error:  # noqa: BLE001 - any failure of one ask is counted by its class, never fatal
        return AskOutcome(latency=time.perf_counter() - started, error=type(error).__name__)


async def drive(session: aiohttp.ClientSession, url: str, rate: float, duration: float, deadline_ms: int,
                max_outstanding: int) -> Load:
    """Starts round(rate x duration) asks on a fixed schedule (open loop), then waits for every one to end."""
    loop = asyncio.get_running_loop()
    timeout = aiohttp.ClientTimeout(total=deadline_ms / 1000.0 + REQUEST_TIMEOUT_GRACE_SECONDS)
    load = Load(rate=rate, duration=duration)
    outstanding: set[asyncio.Task] = set()
    tasks = []
    begin = loop.time()
    for index in range(round(rate * duration)):
        scheduled = begin + index / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        load.start_lags.append(max(0.0, loop.time() - scheduled))
        if len(outstanding) >= max_outstanding:
            load.not_sent += 1
            continue
        task = asyncio.create_task(send_ask(session, url, QUESTIONS[index % len(QUESTIONS)], deadline_ms, timeout))
        outstanding.add(task)
        task.add_done_callback(outstanding.discard)
        tasks.append(task)
    load.outcomes = list(await asyncio.gather(*tasks))
    return load


def summarise(load: Load, deadline_ms: int) -> dict:
    """The figures of one run, and whether it passes the capacity criteria."""
    answered = [outcome for outcome in load.outcomes if outcome.http_status == 200]
    rejected = [outcome for outcome in load.outcomes if outcome.http_status == 503]
    answered_ok = sum(outcome.answer_status == "ok" for outcome in answered)
    asked = len(load.outcomes) + load.not_sent
    failed = asked - answered_ok - len(rejected)
    other_statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    for outcome in load.outcomes:
        if outcome.error is not None:
            errors[outcome.error] = errors.get(outcome.error, 0) + 1
        elif outcome.http_status not in (200, 503):
            key = str(outcome.http_status)
            other_statuses[key] = other_statuses.get(key, 0) + 1
    answered_latencies = [outcome.latency for outcome in answered]
    rejected_latencies = [outcome.latency for outcome in rejected]
    p99 = percentile(answered_latencies, 99)
    rejected_share = len(rejected) / asked if asked else 0.0
    failed_share = failed / asked if asked else 0.0
    lag_p99 = percentile(load.start_lags, 99) or 0.0
    return {
        "offered_per_s": load.rate,
        "duration_s": load.duration,
        "asked": asked,
        "not_sent": load.not_sent,
        "answered": len(answered),
        "answered_per_s": round(len(answered) / load.duration, 2),
        "answered_ok": answered_ok,
        "answered_degraded": sum(outcome.answer_status == "degraded" for outcome in answered),
        "answered_p50_ms": milliseconds(percentile(answered_latencies, 50)),
        "answered_p99_ms": milliseconds(p99),
        "rejected": len(rejected),
        "rejected_share": round(rejected_share, 4),
        "rejected_p50_ms": milliseconds(percentile(rejected_latencies, 50)),
        "rejected_p99_ms": milliseconds(percentile(rejected_latencies, 99)),
        "failed": failed,
        "failed_share": round(failed_share, 4),
        "other_statuses": other_statuses,
        "errors": errors,
        "generator_lag_p99_ms": milliseconds(lag_p99),
        "generator_fell_behind": lag_p99 > GENERATOR_LAG_WARNING_SECONDS,
        "passes": bool(answered) and p99 is not None and p99 * 1000.0 <= deadline_ms
        and rejected_share < MAX_REJECTED_SHARE and failed_share < MAX_FAILED_SHARE,
    }


def raise_open_files_limit(max_outstanding: int) -> None:
    """Lifts the soft limit on open files to the hard one: each outstanding ask holds a connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < max_outstanding + 64:
        print(f"warning: at most {hard} open files (ulimit -n): past that, asks fail with OSError rather than "
              f"reach the {max_outstanding} outstanding asks allowed", file=sys.stderr)


def new_session() -> aiohttp.ClientSession:
    """A client session without a connection limit (aiohttp's default is 100): the open loop sets the bound."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


async def preflight(session: aiohttp.ClientSession, url: str, deadline_ms: int) -> float | None:
    """Checks that an ask server answers at `url` (a BenchError saying what is wrong otherwise), and measures
    what one inference costs it when idle: the median `infer_ms` of the sources of PROBE_ASKS asks sent one at
    a time. Both servers report it, so a comparison shows whether they really spend the same CPU per response
    (each calibrates its own kernel at start-up, and a busy machine then can skew one of them)."""
    timeout = aiohttp.ClientTimeout(total=deadline_ms / 1000.0 + REQUEST_TIMEOUT_GRACE_SECONDS)
    infer_ms = []
    for question in QUESTIONS[:PROBE_ASKS]:
        try:
            async with session.post(f"{url}/v1/ask", json={"question": question, "deadline_ms": deadline_ms},
                                    timeout=timeout) as response:
                status, text = response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise BenchError(f"cannot reach {url}/v1/ask: {type(error).__name__}: {error}", EXIT_USAGE,
                             hint="start `tributary serve` or benches/peers/python_agent/server.py and pass the "
                                  "URL it prints on its first line") from error
        try:
            report = json.loads(text)
        except ValueError:
            report = None
        is_report = isinstance(report, dict) and "status" in report
        if status not in (200, 502, 503) or (status != 503 and not is_report):
            raise BenchError(f"{url}/v1/ask answered HTTP {status} without an answer object: {text[:200]!r}",
                             EXIT_USAGE, hint="is the URL that of `tributary serve` or of the Python peer?")
        if is_report:
            infer_ms.extend(source["infer_ms"] for source in report.get("sources", [])
                            if isinstance(source.get("infer_ms"), (int, float)))
    median = percentile(infer_ms, 50)
    return None if median is None else round(median, 1)


async def measure_capacity(url: str, rates: list[float], step_seconds: float, deadline_ms: int,
                           max_outstanding: int) -> dict:
    """Steps the rate up until a step misses the criteria; every step's figures, and the capacity."""
    steps = []
    async with new_session() as session:
        idle_infer_ms = await preflight(session, url, deadline_ms)
        for rate in rates:
            load = await drive(session, url, rate, step_seconds, deadline_ms, max_outstanding)
            step = summarise(load, deadline_ms)
            steps.append(step)
            print(f"  {url}: {format_step(step)}", file=sys.stderr)
            if not step["passes"]:
                break
            await asyncio.sleep(STEP_PAUSE_SECONDS)
    passing = [step for step in steps if step["passes"]]
    best = passing[-1] if passing else None
    return {
        "url": url,
        "deadline_ms": deadline_ms,
        "idle_infer_ms": idle_infer_ms,
        "step_seconds": step_seconds,
        "steps": steps,
        "capacity_per_s": best["offered_per_s"] if best else None,
        "capacity_answered_per_s": best["answered_per_s"] if best else None,
        "capacity_p99_ms": best["answered_p99_ms"] if best else None,
    }


def resident_kilobytes(pid: int) -> int | None:
    """VmRSS of a process in kB, or None when it has gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (the Python peer's forkserver and workers are its grandchildren)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as stat:
                # The command name may hold spaces and parentheses: the fields after its last ')' are plain.
                parent = int(stat.read().rpartition(")")[2].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, frontier = [], [pid]
    while frontier:
        below = children.get(frontier.pop(), [])
        found.extend(below)
        frontier.extend(below)
    return found


async def sample_memory(pid: int, samples: list[dict], stop: asyncio.Event) -> None:
    """Appends the server's VmRSS, and its process tree's, every MEMORY_SAMPLE_SECONDS until `stop` or its
    exit."""
    loop = asyncio.get_running_loop()
    begin = loop.time()
    while not stop.is_set():
        main = resident_kilobytes(pid)
        if main is None:
            samples.append({"at_s": round(loop.time() - begin, 1), "exited": True})
            return
        tree = [resident_kilobytes(child) for child in descendants(pid)]
        samples.append({"at_s": round(loop.time() - begin, 1), "rss_kb": main,
                        "tree_rss_kb": main + sum(kb for kb in tree if kb), "processes": 1 + len(tree)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), MEMORY_SAMPLE_SECONDS)


def memory_summary(pid: int, samples: list[dict]) -> dict:
    """First, max and last of the samples, for judging whether memory stays flat."""
    alive = [sample for sample in samples if "rss_kb" in sample]
    summary = {"pid": pid, "samples": samples, "exited": any(sample.get("exited") for sample in samples)}
    for key in ("rss_kb", "tree_rss_kb"):
        values = [sample[key] for sample in alive]
        summary[key] = {"first": values[0], "max": max(values), "last": values[-1]} if values else None
    return summary


async def measure_overload(url: str, rate: float, duration: float, deadline_ms: int, max_outstanding: int,
                           pid: int | None) -> dict:
    """One rate for `duration`, with the server's memory sampled when its pid is known."""
    if pid is not None and resident_kilobytes(pid) is None:
        raise BenchError(f"no process {pid} to sample (from --pid)", EXIT_USAGE,
                         hint="pass the server's process id, e.g. `pgrep -f 'tributary serve'`")
    samples: list[dict] = []
    stop = asyncio.Event()
    async with new_session() as session:
        idle_infer_ms = await preflight(session, url, deadline_ms)
        sampler = asyncio.create_task(sample_memory(pid, samples, stop)) if pid is not None else None
        load = await drive(session, url, rate, duration, deadline_ms, max_outstanding)
        stop.set()
        if sampler is not None:
            await sampler
    result = {"url": url, "deadline_ms": deadline_ms, "idle_infer_ms": idle_infer_ms,
              **summarise(load, deadline_ms)}
    result["memory"] = memory_summary(pid, samples) if pid is not None else None
    return result


def format_ms(value: float | None) -> str:
    """A latency for a table: `-` for none."""
    return "-" if value is None else f"{value:.1f}"


def format_step(step: dict) -> str:
    """One capacity step on one line (the progress lines on stderr)."""
    return (f"{step['offered_per_s']:g}/s offered: {step['answered_per_s']:g}/s answered, "
            f"p50 {format_ms(step['answered_p50_ms'])} ms, p99 {format_ms(step['answered_p99_ms'])} ms, "
            f"{step['rejected_share']:.1%} rejected, {step['failed_share']:.1%} failed: "
            f"{'pass' if step['passes'] else 'miss'}")


def capacity_table(result: dict) -> str:
    """The steps of a capacity run as a table, and the capacity."""
    lines = [f"capacity of {result['url']} (deadline {result['deadline_ms']} ms, {result['step_seconds']:g} s a step; "
             f"one inference when idle: {format_ms(result['idle_infer_ms'])} ms)",
             f"{'offered/s':>9} {'asked':>6} {'200/s':>7} {'ok':>6} {'degr.':>6} {'p50 ms':>8} {'p99 ms':>8} "
             f"{'503':>6} {'failed':>6} {'lag p99':>8}  verdict"]
    for step in result["steps"]:
        ok_share = step["answered_ok"] / step["answered"] if step["answered"] else 0.0
        degraded_share = step["answered_degraded"] / step["answered"] if step["answered"] else 0.0
        lines.append(
            f"{step['offered_per_s']:>9g} {step['asked']:>6} {step['answered_per_s']:>7.1f} {ok_share:>6.1%} "
            f"{degraded_share:>6.1%} {format_ms(step['answered_p50_ms']):>8} {format_ms(step['answered_p99_ms']):>8} "
            f"{step['rejected_share']:>6.1%} {step['failed_share']:>6.1%} {format_ms(step['generator_lag_p99_ms']):>8}  "
            f"{'pass' if step['passes'] else 'miss'}{'  (generator fell behind)' if step['generator_fell_behind'] else ''}")
    if result["capacity_per_s"] is None:
        lines.append("capacity: none of the rates tried (the lowest already missed)")
    else:
        lines.append(f"capacity: {result['capacity_per_s']:g} asks/s offered, {result['capacity_answered_per_s']:g}/s "
                     f"answered, p99 {format_ms(result['capacity_p99_ms'])} ms (within {result['deadline_ms']} ms, "
                     f"<{MAX_REJECTED_SHARE:.0%} rejected, <{MAX_FAILED_SHARE:.0%} failed)")
    return "\n".join(lines)


def format_megabytes(kilobytes: dict | None) -> str:
    """first/max/last in MB."""
    if kilobytes is None:
        return "no sample"
    return ", ".join(f"{name} {kilobytes[name] / 1024:.1f} MB" for name in ("first", "max", "last"))


def overload_report(result: dict) -> str:
    """An overload run in a few lines."""
    lines = [
        f"overload of {result['url']}: {result['offered_per_s']:g} asks/s for {result['duration_s']:g} s "
        f"(deadline {result['deadline_ms']} ms; one inference when idle: {format_ms(result['idle_infer_ms'])} ms)",
        f"  asked {result['asked']} (not sent, over the outstanding cap: {result['not_sent']}); generator lag p99 "
        f"{format_ms(result['generator_lag_p99_ms'])} ms{' (fell behind)' if result['generator_fell_behind'] else ''}",
        f"  answered (200): {result['answered']} = {result['answered_per_s']:g}/s ({result['answered_ok']} ok, "
        f"{result['answered_degraded']} degraded), p50 {format_ms(result['answered_p50_ms'])} ms, "
        f"p99 {format_ms(result['answered_p99_ms'])} ms",
        f"  rejected (503): {result['rejected']} ({result['rejected_share']:.1%}), p50 "
        f"{format_ms(result['rejected_p50_ms'])} ms, p99 {format_ms(result['rejected_p99_ms'])} ms",
        f"  other statuses: {result['other_statuses'] or 'none'}; errors: {result['errors'] or 'none'}",
    ]
    memory = result["memory"]
    if memory is not None:
        processes = max((sample.get("processes", 1) for sample in memory["samples"]), default=1)
        lines.append(f"  RSS of pid {memory['pid']}: {format_megabytes(memory['rss_kb'])}"
                     f"{'; the process exited during the run' if memory['exited'] else ''}")
        if processes > 1:
            lines.append(f"  RSS of its {processes} processes together: {format_megabytes(memory['tree_rss_kb'])}")
    return "\n".join(lines)


class ManagedProcess:
    """A server this script starts: the first line it prints on stdout, its stderr in a log file, and a stop
    (SIGTERM or SIGINT, then SIGKILL after STOP_GRACE_SECONDS) when the `with` block ends."""

    def __init__(self, name: str, command: list[str], log_path: Path, stop_signal: int):
        self.name = name
        self.log_path = log_path
        self.stop_signal = stop_signal
        self.log = open(log_path, "w", encoding="utf-8")
        try:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log, text=True)
        except OSError as error:
            self.log.close()
            raise BenchError(f"failed to start the {name} ({command[0]}): {error}", EXIT_ENVIRONMENT) from error
        self.first_line = self._read_first_line()

    def __enter__(self) -> "ManagedProcess":
        return self

    def __exit__(self, *_exception) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """The process id, for sampling its memory."""
        return self.process.pid

    def _read_first_line(self) -> str:
        """The first stdout line, within STARTUP_TIMEOUT_SECONDS; stops the process and raises when none."""
        ready, _, _ = select.select([self.process.stdout], [], [], STARTUP_TIMEOUT_SECONDS)
        line = self.process.stdout.readline().strip() if ready else ""
        if not line:
            self.stop()
            raise BenchError(f"the {self.name} printed no URL within {STARTUP_TIMEOUT_SECONDS:g} s (exit code "
                             f"{self.process.returncode}); {self._log_tail()}", EXIT_ENVIRONMENT)
        return line

    def _log_tail(self) -> str:
        """The end of the process's log, to show why it failed."""
        log = self.log_path.read_text(encoding="utf-8", errors="replace").strip()
        return f"its log, {self.log_path}:\n{log[-2000:]}"

    def check_running(self) -> None:
        """Raises when the process has ended on its own: whatever was measured since is not a server's figure."""
        if self.process.poll() is not None:
            raise BenchError(f"the {self.name} exited during the run (exit code {self.process.returncode}); "
                             f"{self._log_tail()}", EXIT_ENVIRONMENT)

    def stop(self) -> None:
        """Asks the process to stop, waits, kills it if it does not."""
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        self.log.close()


def check_tributary(binary: Path) -> None:
    """Fails early when the binary is missing or predates `serve`."""
    if not binary.is_file():
        raise BenchError(f"no tributary binary at {binary}", EXIT_USAGE,
                         hint="build it: cargo build --release -p tributary-cli (or pass --tributary PATH)")
    completed = subprocess.run([str(binary), "serve", "--help"], capture_output=True, text=True)
    if completed.returncode != 0:
        raise BenchError(f"{binary} has no `serve` command (an older build)", EXIT_USAGE,
                         hint="rebuild it: cargo build --release -p tributary-cli")


def sources_file(path: Path, sources_url: str, per_source_timeout_ms: int) -> Path:
    """A sources file for tributary serve on the simulated services: each attempt gets the whole per-source
    timeout, no retry and no cache, as the Python peer fetches (one attempt, nothing cached)."""
    entries = "\n".join(
        f'[[source]]\nname = "{name}"\nkind = "{name}"\nbase_url = "{sources_url}"\n'
        f'timeout = "{per_source_timeout_ms}ms"\nretries = 0\n'
        for name in ("weather", "news", "kb"))
    path.write_text(entries, encoding="utf-8")
    return path


def default_max_in_flight(workers: int, deadline_ms: int, per_source_timeout_ms: int,
                          inference_cost_ms: int) -> int:
    """tributary serve's default bound: what the workers can infer in the time an ask has left after its
    sources, workers x (deadline - per-source timeout) / (3 sources x inference cost), between 1 and 1024
    (half the deadline when the per-source timeout is not shorter)."""
    cpu_ms = deadline_ms - per_source_timeout_ms if per_source_timeout_ms < deadline_ms else deadline_ms / 2
    return max(1, min(1024, int(workers * cpu_ms / (3 * inference_cost_ms))))


def compare(options: argparse.Namespace) -> dict:
    """Both servers on the same simulated services and settings: capacity of each, then overload of each at
    --overload-factor times tributary's capacity."""
    binary = Path(options.tributary).resolve()
    check_tributary(binary)
    latencies = dict(zip(("weather", "news", "kb"), options.latencies_ms))
    max_in_flight = options.max_in_flight or default_max_in_flight(
        options.workers, options.deadline_ms, options.per_source_timeout_ms, options.inference_cost_ms)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    print(f"logs and the sources file in {log_dir}", file=sys.stderr)
    sources_command = [str(binary), "sources", "--listen", "127.0.0.1:0"]
    for name, latency in latencies.items():
        sources_command += ["--fault", f"{name}=latency:{latency}ms"]
    with ManagedProcess("simulated services", sources_command, log_dir / "sources.log", signal.SIGINT) as sources:
        found = re.search(r"(http://\S+?)/weather", sources.first_line)
        if found is None:
            raise BenchError(f"unexpected first line from `tributary sources`: {sources.first_line!r}",
                             EXIT_ENVIRONMENT)
        sources_url = found.group(1)
        config = sources_file(log_dir / "sources.toml", sources_url, options.per_source_timeout_ms)
        commands = {
            "tributary": [str(binary), "serve", "--listen", "127.0.0.1:0", "--config", str(config),
                          "--deadline", f"{options.deadline_ms}ms",
                          "--per-source-timeout", f"{options.per_source_timeout_ms}ms",
                          "--inference-cost", f"{options.inference_cost_ms}ms",
                          "--workers", str(options.workers), "--max-in-flight", str(max_in_flight)],
            "python": [options.peer_python, str(PEER_SERVER), "--listen", "127.0.0.1:0", "--sources", sources_url,
                       "--deadline-ms", str(options.deadline_ms),
                       "--per-source-timeout-ms", str(options.per_source_timeout_ms),
                       "--inference-cost-ms", str(options.inference_cost_ms),
                       "--workers", str(options.workers), "--max-in-flight", str(max_in_flight)],
        }
        results = {}
        overload_rate = None
        for name, command in commands.items():
            print(f"{name}: {' '.join(command)}", file=sys.stderr)
            with ManagedProcess(f"{name} server", command, log_dir / f"{name}.log", signal.SIGTERM) as server:
                capacity = asyncio.run(measure_capacity(server.first_line, options.rates, options.step_seconds,
                                                        options.deadline_ms, options.max_outstanding))
                if overload_rate is None:
                    # Both servers get the same overload: a multiple of tributary's capacity (or of the lowest
                    # rate when tributary passed none).
                    overload_rate = options.overload_factor * (capacity["capacity_per_s"] or options.rates[0])
                print(f"  {name}: overload at {overload_rate:g}/s for {options.overload_seconds:g} s", file=sys.stderr)
                overload = asyncio.run(measure_overload(server.first_line, overload_rate, options.overload_seconds,
                                                        options.deadline_ms, options.max_outstanding, server.pid))
                server.check_running()
                sources.check_running()
            results[name] = {"command": command, "capacity": capacity, "overload": overload}
    idle_infer_ms = {name: result["capacity"]["idle_infer_ms"] for name, result in results.items()}
    tributary_rate = results["tributary"]["capacity"]["capacity_answered_per_s"]
    python_rate = results["python"]["capacity"]["capacity_answered_per_s"]
    return {
        "settings": {"deadline_ms": options.deadline_ms, "per_source_timeout_ms": options.per_source_timeout_ms,
                     "inference_cost_ms": options.inference_cost_ms, "workers": options.workers,
                     "max_in_flight": max_in_flight, "source_latencies_ms": latencies,
                     "overload_rate_per_s": overload_rate, "log_dir": str(log_dir)},
        "servers": results,
        "idle_infer_ms": idle_infer_ms,
        "asks_per_s_at_same_p99": {
            "p99_within_ms": options.deadline_ms,
            "tributary": tributary_rate,
            "python": python_rate,
            "ratio": round(tributary_rate / python_rate, 2) if tributary_rate and python_rate else None,
        },
    }


def compare_report(result: dict) -> str:
    """Both servers' tables, their overloads, and the comparison line."""
    settings = result["settings"]
    parts = [
        "settings: deadline {deadline_ms} ms, per-source timeout {per_source_timeout_ms} ms, inference cost "
        "{inference_cost_ms} ms, {workers} workers, at most {max_in_flight} asks in flight; the sources at fixed "
        "latencies: {latencies}".format(**settings, latencies=", ".join(
            f"{name} {latency} ms" for name, latency in settings["source_latencies_ms"].items()))]
    for name, server in result["servers"].items():
        parts.append(f"== {name}\n{capacity_table(server['capacity'])}\n{overload_report(server['overload'])}")
    idle = result["idle_infer_ms"]
    parts.append(f"one inference when idle (median infer_ms of {PROBE_ASKS} asks): tributary "
                 f"{format_ms(idle['tributary'])} ms, python {format_ms(idle['python'])} ms, configured "
                 f"{settings['inference_cost_ms']} ms")
    if idle["tributary"] and idle["python"] and not (
            1 / MAX_INFERENCE_COST_RATIO <= idle["tributary"] / idle["python"] <= MAX_INFERENCE_COST_RATIO):
        parts.append("warning: the two servers do not spend the same CPU per response: the comparison is not like "
                     "for like (a debug build of tributary, or a busy machine skewing a start-up calibration: run it again "
                     "with a release build on a quiet machine)")
    same = result["asks_per_s_at_same_p99"]
    ratio = f": tributary {same['ratio']:g}x" if same["ratio"] else ""
    parts.append(f"asks/s at the same p99 (within {same['p99_within_ms']} ms, <{MAX_REJECTED_SHARE:.0%} rejected, "
                 f"<{MAX_FAILED_SHARE:.0%} failed): tributary {same['tributary'] or 'none'}, "
                 f"python {same['python'] or 'none'}{ratio}")
    return "\n\n".join(parts)


def positive_number(text: str) -> float:
    """A number above 0 (a rate, a duration)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def rate_list(text: str) -> list[float]:
    """Comma-separated rates in increasing order, e.g. 5,10,20,40."""
    rates = [positive_number(part) for part in text.split(",")]
    if rates != sorted(set(rates)):
        raise argparse.ArgumentTypeError(f"expected increasing rates such as 5,10,20, got {text!r}")
    return rates


def latency_list(text: str) -> list[int]:
    """WEATHER,NEWS,KB fixed latencies in milliseconds."""
    parts = text.split(",")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected three latencies WEATHER,NEWS,KB in ms, got {text!r}")
    return [positive_int(part) for part in parts]


def target_url(text: str) -> str:
    """The server's base URL, without a trailing slash."""
    if not re.match(r"^https?://[^/\s]+/?$", text):
        raise argparse.ArgumentTypeError(f"expected a base URL such as http://127.0.0.1:8000, got {text!r}")
    return text.rstrip("/")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line; argparse exits with code 2 and the reason on a bad one."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Exit codes: 0 done, 1 the environment failed, 2 usage error or the "
                                            "target unreachable.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--deadline-ms", type=positive_int, default=2000,
                        help="each ask's deadline, sent as deadline_ms and judged against (default 2000)")
    common.add_argument("--max-outstanding", type=positive_int, default=10000,
                        help="asks outstanding at once at most; one due beyond that is not sent (default 10000)")
    common.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    stepping = argparse.ArgumentParser(add_help=False)
    stepping.add_argument("--rates", type=rate_list, default=list(DEFAULT_RATES),
                          help=f"offered rates to step through, asks/s (default {','.join(map(str, DEFAULT_RATES))})")
    stepping.add_argument("--step-seconds", type=positive_number, default=10.0,
                          help="how long each rate is offered (default 10)")
    modes = parser.add_subparsers(dest="mode", required=True)

    capacity = modes.add_parser("capacity", parents=[common, stepping], help="step the rate; find the capacity")
    capacity.add_argument("url", type=target_url, help="the server, e.g. http://127.0.0.1:8000")

    overload = modes.add_parser("overload", parents=[common], help="drive one rate; watch rejections and memory")
    overload.add_argument("url", type=target_url, help="the server, e.g. http://127.0.0.1:8000")
    overload.add_argument("--rate", type=positive_number, required=True, help="asks/s, e.g. twice the capacity")
    overload.add_argument("--duration", type=positive_number, default=30.0, help="seconds (default 30)")
    overload.add_argument("--pid", type=positive_int, help="the server's process id: sample its VmRSS each second")

    both = modes.add_parser("compare", parents=[common, stepping],
                            help="start the simulated services and both servers; capacity and overload of each")
    both.add_argument("--tributary", default=str(REPOSITORY / "target" / "release" / "tributary"),
                      help="the tributary binary (default target/release/tributary)")
    both.add_argument("--peer-python", default=sys.executable,
                      help="the Python that runs the peer, with its requirements installed (default: this one)")
    both.add_argument("--per-source-timeout-ms", type=positive_int, default=1000, help="(default 1000)")
    both.add_argument("--inference-cost-ms", type=positive_int, default=20, help="CPU per inference (default 20)")
    both.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1,
                      help="inference workers of each server (default: the number of CPUs)")
    both.add_argument("--max-in-flight", type=positive_int,
                      help="asks in flight at most, for both (default: tributary's, workers x deadline / "
                           "(3 x inference cost))")
    both.add_argument("--latencies-ms", type=latency_list, default=[400, 700, 250],
                      help="fixed latencies of the weather, news and kb services (default 400,700,250: the "
                           "medians of the simulator's default scenario)")
    both.add_argument("--overload-factor", type=positive_number, default=2.0,
                      help="overload rate as a multiple of tributary's capacity (default 2)")
    both.add_argument("--overload-seconds", type=positive_number, default=30.0, help="(default 30)")
    return parser.parse_args(argv)


def run(options: argparse.Namespace) -> tuple[dict, str]:
    """Runs the mode: its result, and the same as text for people."""
    raise_open_files_limit(options.max_outstanding)
    if options.mode == "capacity":
        result = asyncio.run(measure_capacity(options.url, options.rates, options.step_seconds,
                                              options.deadline_ms, options.max_outstanding))
        return result, capacity_table(result)
    if options.mode == "overload":
        result = asyncio.run(measure_overload(options.url, options.rate, options.duration, options.deadline_ms,
                                              options.max_outstanding, options.pid))
        return result, overload_report(result)
    result = compare(options)
    return result, compare_report(result)


def main(argv: list[str]) -> int:
    """Runs, prints the result (JSON or text) on stdout, and returns the exit code."""
    options = parse_args(argv)
    try:
        result, text = run(options)
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        if error.hint:
            print(f"hint: {error.hint}", file=sys.stderr)
        return error.exit_code
    print(json.dumps(result, indent=2) if options.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
