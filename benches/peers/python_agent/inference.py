"""The simulated LLM of the Python peer: a pure-Python CPU kernel, its calibration, and one inference.

This module is what the worker processes run, so it imports nothing heavy.

tributary turns `--inference-cost` (CPU time) into a fixed number of work units once, by timing its kernel on
this machine (the fastest of several short rounds, crates/tributary-agent/src/infer/work.rs), and every
inference then does exactly that many units. The peer does the same with a pure-Python kernel, so both servers
do a fixed amount of work per response that costs about the configured CPU time on one free core. A loop that
ran until `time.process_time()` had advanced by the cost would instead do *less* work per response when cores
are contended (each unit then costs more CPU time), and would pay a system call per check.
"""

import os
import re
import time
from dataclasses import dataclass

# Rounds of the calibration, and how long each should take: tributary's figures (8 rounds of about 5 ms).
CALIBRATION_ROUNDS = 8
CALIBRATION_ROUND_SECONDS = 0.005
# The first round's size, before the machine's speed is known.
CALIBRATION_FIRST_UNITS = 4096

# Sentences an inference keeps for its summary: tributary's SUMMARY_SENTENCES.
SUMMARY_SENTENCES = 3

_MASK_64 = (1 << 64) - 1
_FNV_OFFSET_BASIS = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[\w'-]+")


@dataclass(frozen=True)
class InferenceJob:
    """What one inference needs: plain data, because it is pickled to a worker process."""

    question: str
    source: str
    document: str
    units: int


@dataclass(frozen=True)
class InferenceResult:
    """A summary of the document, and where and how long the work ran (for the answer's per-source report)."""

    summary: str
    worker_pid: int
    infer_ms: float


def spend(units: int) -> int:
    """Does `units` steps of FNV-style mixing in pure Python bytecode and returns the state, so the loop's work
    is observable and every step depends on the one before."""
    state = _FNV_OFFSET_BASIS
    for unit in range(units):
        state = ((state ^ unit) * _FNV_PRIME) & _MASK_64
    return state


def calibrate() -> float:
    """Work units per millisecond of one core, measured now.

    Like tributary, keeps the fastest of several short rounds: on a busy machine a round can be slowed down by
    other work but never sped up, so the fastest is the best estimate of one free core.
    """
    units = CALIBRATION_FIRST_UNITS
    best_units_per_ms = 0.0
    for _ in range(CALIBRATION_ROUNDS):
        started = time.perf_counter()
        spend(units)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        if elapsed_ms > 0.0:
            best_units_per_ms = max(best_units_per_ms, units / elapsed_ms)
        units = max(CALIBRATION_FIRST_UNITS, int(best_units_per_ms * CALIBRATION_ROUND_SECONDS * 1000.0))
    return max(best_units_per_ms, 1.0)


def units_for(cost_ms: float, units_per_ms: float) -> int:
    """The number of work units that take about `cost_ms` of one core."""
    return round(cost_ms * units_per_ms)


def run_inference(job: InferenceJob) -> InferenceResult:
    """Spends the job's units, then summarises the document: the sentences sharing most words with the
    question, in document order. Runs in a worker process."""
    started = time.perf_counter()
    spend(job.units)
    summary = summarise(job.question, job.document)
    infer_ms = (time.perf_counter() - started) * 1000.0
    return InferenceResult(summary=summary, worker_pid=os.getpid(), infer_ms=infer_ms)


def summarise(question: str, document: str) -> str:
    """Up to SUMMARY_SENTENCES sentences of `document`, the ones sharing most words with `question` first,
    kept in document order."""
    sentences = [sentence for sentence in _SENTENCE_END.split(document.strip()) if sentence]
    question_words = {word.lower() for word in _WORD.findall(question)}
    overlap = [
        (len(question_words & {word.lower() for word in _WORD.findall(sentence)}), -position)
        for position, sentence in enumerate(sentences)
    ]
    chosen = sorted(range(len(sentences)), key=lambda position: overlap[position], reverse=True)
    kept = sorted(chosen[:SUMMARY_SENTENCES])
    return " ".join(sentences[position] for position in kept)
