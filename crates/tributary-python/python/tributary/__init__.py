"""tributary from asyncio: ask many slow sources at once, infer on every core, answer within a deadline.

The engine is Rust (the package ``tributary._tributary``, on its own tokio runtime and CPU pool); this module is
its typed face. Every wait is awaited from asyncio, and the GIL is released for all of it: the event loop stays
free while an ask runs.

>>> import asyncio, tributary
>>> async def main():
...     with tributary.Agent() as agent:       # the simulated weather, news and knowledge base
...         answer = await agent.ask("What's the weather in Paris, and why does the GIL matter?")
...         print(answer.text)
>>> asyncio.run(main())  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Dict,
    Generator,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from . import _tributary
from .errors import (
    BatchError,
    ConfigError,
    DeadlineExceeded,
    QuestionError,
    SourceError,
    TributaryError,
)

__all__ = [
    "Agent",
    "Answer",
    "SourceAnswer",
    "Synthesis",
    "Comparison",
    "Event",
    "EventStream",
    "Source",
    "Batch",
    "BatchProgress",
    "BatchSummary",
    "batch",
    "TributaryError",
    "ConfigError",
    "QuestionError",
    "SourceError",
    "DeadlineExceeded",
    "BatchError",
]

__version__: str = _tributary.__version__

PathType = Union[str, "os.PathLike[str]"]
T = TypeVar("T")


@dataclass(frozen=True)
class Source:
    """One source, as a ``[[source]]`` table of a sources file says it (docs/SOURCES.md).

    Durations are seconds. Fields not named here go to the file's parser as they are, so a misspelt one is refused
    with the parser's message, as in a file.
    """

    name: str
    kind: str
    base_url: Optional[str] = None
    timeout: Optional[float] = None
    retries: Optional[int] = None
    cache_ttl: Optional[float] = None
    required: Optional[bool] = None
    max_body_bytes: Optional[int] = None
    rate_limit: Optional[str] = None
    hedge: Optional[Union[str, float]] = None
    command: Optional[Sequence[str]] = None
    url: Optional[str] = None
    env: Optional[Mapping[str, str]] = None
    cwd: Optional[str] = None
    tool: Optional[str] = None
    arguments: Optional[Mapping[str, Any]] = None
    topic: Optional[str] = None
    other: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        """The source as the sources file's table: only the fields given, durations as milliseconds."""
        table: Dict[str, Any] = {}
        for name in (
            "name", "kind", "base_url", "retries", "required", "max_body_bytes", "rate_limit",
            "url", "cwd", "tool", "topic",
        ):
            value = getattr(self, name)
            if value is not None:
                table[name] = value
        for name in ("timeout", "cache_ttl"):
            value = getattr(self, name)
            if value is not None:
                table[name] = _duration(value)
        if self.hedge is not None:
            table["hedge"] = self.hedge if isinstance(self.hedge, str) else _duration(self.hedge)
        if self.command is not None:
            table["command"] = list(self.command)
        if self.env is not None:
            table["env"] = dict(self.env)
        if self.arguments is not None:
            table["arguments"] = dict(self.arguments)
        table.update(self.other)
        return table


@dataclass(frozen=True)
class SourceAnswer:
    """What one source did for a question (one line of ``ask --json``'s ``sources``)."""

    name: str
    kind: str
    topic: str
    #: ``ok``, ``timed_out``, ``failed``, ``circuit_open``, ``skipped`` or ``no_result``.
    status: str
    error: Optional[str]
    #: Why it did not answer, as a kind to act on (``timed_out``, ``deadline``, ``http_status``, ...).
    failure: Optional[str]
    http_status: Optional[int]
    attempts: int
    hedges: int
    cached: bool
    fetch_ms: Optional[float]
    infer_ms: Optional[float]
    arrived_at_ms: Optional[float]
    worker: Optional[int]
    required: bool
    summary: Optional[str]
    generated_by: Optional[str] = None

    @classmethod
    def _from(cls, data: Mapping[str, Any]) -> SourceAnswer:
        fields: Dict[str, Any] = {name: data.get(name) for name in cls.__dataclass_fields__}
        return cls(**fields)


@dataclass(frozen=True)
class Synthesis:
    """The chat model's one answer across the sources' summaries."""

    text: str
    generated_by: str
    sources: Tuple[str, ...]
    infer_ms: float
    worker: Optional[int]
    cut_short: bool


@dataclass(frozen=True)
class Answer:
    """One question's answer and what every source did: ``ask --json``'s report, typed."""

    question: Optional[str]
    #: ``ok``, ``degraded`` (a source asked did not answer) or ``failed`` (no answer).
    status: str
    #: The unified answer; ``None`` when there is none.
    text: Optional[str]
    error: Optional[str]
    failure: Optional[str]
    degraded: bool
    mode: str
    elapsed_ms: float
    #: The best possible time for the measured fetches and inferences on ``workers`` cores.
    ideal_ms: float
    #: ``ideal_ms / elapsed_ms``: 1.0 means nothing was lost to orchestration.
    efficiency: float
    workers: int
    deadline_ms: float
    per_source_timeout_ms: float
    sources: Tuple[SourceAnswer, ...]
    synthesis: Optional[Synthesis]
    _report: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def _from(cls, report: Mapping[str, Any]) -> Answer:
        synthesis = report.get("synthesis")
        return cls(
            question=report["question"],
            status=report["status"],
            text=report["answer"],
            error=report["error"],
            failure=report.get("failure"),
            degraded=report["degraded"],
            mode=report["mode"],
            elapsed_ms=report["elapsed_ms"],
            ideal_ms=report["ideal_ms"],
            efficiency=report["efficiency"],
            workers=report["workers"],
            deadline_ms=report["deadline_ms"],
            per_source_timeout_ms=report["per_source_timeout_ms"],
            sources=tuple(SourceAnswer._from(source) for source in report["sources"]),
            synthesis=None
            if synthesis is None
            else Synthesis(**{**synthesis, "sources": tuple(synthesis["sources"])}),
            _report=report,
        )

    @property
    def ok(self) -> bool:
        """Whether there is an answer (``ok`` or ``degraded``)."""
        return self.text is not None

    def source(self, name: str) -> SourceAnswer:
        """The source called ``name``; ``KeyError`` if there is none."""
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)

    def to_dict(self) -> Dict[str, Any]:
        """The report as ``tributary ask --json`` prints it."""
        copy: Dict[str, Any] = json.loads(json.dumps(self._report))
        return copy

    def __str__(self) -> str:
        return self.text if self.text is not None else f"no answer: {self.error}"


@dataclass(frozen=True)
class Comparison:
    """The chapter's sequential baseline and the concurrent agent on one question."""

    question: str
    sequential: Answer
    concurrent: Answer
    #: ``sequential.elapsed_ms / concurrent.elapsed_ms``.
    speedup: float
    #: The speed-up the ideal schedules allow for the measured times.
    ideal_speedup: float
    _report: Mapping[str, Any] = field(repr=False, compare=False)

    def to_dict(self) -> Dict[str, Any]:
        """The comparison as ``tributary ask --compare --json`` prints it."""
        copy: Dict[str, Any] = json.loads(json.dumps(self._report))
        return copy


@dataclass(frozen=True)
class Event:
    """One event of a run's stream, as ``tributary serve`` sends it (docs/SERVE.md, "The event stream"):
    ``run``, ``span_started``, ``span``, ``mark``, ``span_closed``, ``text``, ``source``, ``answer``, ``done``."""

    name: str
    data: Dict[str, Any]


class EventStream:
    """A run's events as they happen: ``async for event in agent.stream(question)``.

    Leaving the loop early (``break``, an exception, a cancellation) cancels the run; ``aclose()`` (or ``async
    with``) also waits until its steps have ended. After the ``done`` event, ``answer`` holds the answer.
    """

    def __init__(self, run: _tributary.NativeRun) -> None:
        self._run = run
        self.answer: Optional[Answer] = None

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        try:
            item = await self._run.next_event()
        except asyncio.CancelledError:
            await _join_cancelled(self._run)
            raise
        if item is None:
            raise StopAsyncIteration
        name, data = item
        event = Event(name, json.loads(data))
        if name == "answer":
            self.answer = Answer._from(event.data)
        return event

    async def aclose(self) -> None:
        """Cancels the run if it is still going, and waits until its steps have ended."""
        if not self._run.done():
            self._run.cancel()
        await _join(self._run)

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


@dataclass(frozen=True)
class BatchProgress:
    """A batch's live counters (``tributary batch``'s progress line)."""

    total: Optional[int]
    read: int
    skipped: int
    invalid: int
    queued_for_fetch: int
    fetching: int
    queued_for_infer: int
    inferring: int
    queued_for_store: int
    ok: int
    degraded: int
    failed: int
    duplicates: int
    abandoned: int
    #: Lines accounted for: stored now, already stored, or a duplicate.
    done: int

    @classmethod
    def _from(cls, data: Mapping[str, Any]) -> BatchProgress:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class BatchSummary:
    """A finished batch: this run's counters, its time, and the rows in the database by status."""

    stats: BatchProgress
    elapsed_ms: float
    #: Questions answered per second.
    throughput: float
    #: Rows in the database after the run, this run's and earlier ones': ``ok``, ``degraded``, ``failed``.
    in_store: Dict[str, int]


class Batch:
    """A batch of questions into a SQLite database (``tributary.batch``).

    ``async for progress in batch`` yields the counters every ``interval`` seconds and once at the end;
    ``await batch`` waits for the summary. Leaving early abandons the questions in flight (a rerun with the same
    input answers them); what was answered is committed either way.
    """

    def __init__(
        self, native: _tributary.NativeBatch, interval: float, owner: Optional[Agent]
    ) -> None:
        self._native = native
        self._interval = interval
        self._owner = owner
        self.summary: Optional[BatchSummary] = None

    def progress(self) -> BatchProgress:
        """The counters now."""
        return BatchProgress._from(json.loads(self._native.stats()))

    def stop(self) -> None:
        """Stops reading the input; what was read is answered and stored."""
        self._native.stop()

    def __aiter__(self) -> AsyncIterator[BatchProgress]:
        return self._updates()

    def __await__(self) -> Generator[Any, None, BatchSummary]:
        return self._finish().__await__()

    async def _finish(self) -> BatchSummary:
        async for _ in self._updates():
            pass
        assert self.summary is not None
        return self.summary

    async def _updates(self) -> AsyncIterator[BatchProgress]:
        finished = asyncio.ensure_future(self._native.wait())
        try:
            while True:
                done, _ = await asyncio.wait({finished}, timeout=self._interval)
                yield self.progress()
                if done:
                    break
            summary = json.loads(finished.result())
            self.summary = BatchSummary(
                stats=BatchProgress._from(summary["stats"]),
                elapsed_ms=summary["elapsed_ms"],
                throughput=summary["throughput"],
                in_store=dict(summary["in_store"]),
            )
        finally:
            if not finished.done():
                self._native.abandon()
                await asyncio.gather(finished, return_exceptions=True)
            if self._owner is not None:
                await self._owner.aclose()


class Agent:
    """The agent: every applicable source asked at once, inference on each answer on the CPU pool, one answer
    within the deadline.

    ``sources`` is ``None`` (the simulated weather, news and knowledge base, started in-process), a sources file's
    path (the CLI's ``--config``), or a list of :class:`Source` (or their dicts). ``model`` names real models as
    ``--model`` does (a build with the ``models`` feature); ``workers`` and ``executor`` (``threads``, ``inline``,
    ``global-lock``) the CPU pool; ``deadline`` and ``per_source_timeout`` are seconds; ``faults`` injects faults
    into the simulated services (``{"news": "hang"}``).

    Close it with ``close()`` / ``aclose()`` or ``with`` / ``async with``: its runs are cancelled and joined, its
    servers stopped. Raises :class:`ConfigError` for a bad argument or sources file.
    """

    def __init__(
        self,
        sources: Optional[Union[PathType, Sequence[Union[Source, Mapping[str, Any]]]]] = None,
        *,
        model: Optional[Union[str, Sequence[str]]] = None,
        workers: Optional[int] = None,
        executor: str = "threads",
        deadline: Optional[float] = None,
        per_source_timeout: Optional[float] = None,
        inference_cost: Optional[str] = None,
        faults: Optional[Mapping[str, str]] = None,
    ) -> None:
        sources_file: Optional[PathType] = None
        sources_json: Optional[str] = None
        if isinstance(sources, (str, os.PathLike)):
            sources_file = sources
        elif sources is not None:
            sources_json = json.dumps(
                [s.to_dict() if isinstance(s, Source) else dict(s) for s in sources]
            )
        models = [model] if isinstance(model, str) else list(model or [])
        self._native = _tributary.NativeAgent(
            sources_file=sources_file,
            sources_json=sources_json,
            models=models,
            workers=workers,
            executor=executor,
            deadline=deadline,
            per_source_timeout=per_source_timeout,
            inference_cost=inference_cost,
            faults=dict(faults or {}),
        )

    @property
    def sources(self) -> List[str]:
        """The sources' names, in the order they are asked and reported."""
        return self._native.source_names()

    @property
    def services_url(self) -> Optional[str]:
        """The simulated services' base URL (``http://127.0.0.1:PORT``: ``/weather?city=``, ``/news?q=``,
        ``/kb/search?q=``) when the agent runs on them, else ``None``."""
        return self._native.services_url()

    @property
    def workers(self) -> int:
        """CPU workers of the pool."""
        return self._native.workers()

    @property
    def deadline(self) -> float:
        """The deadline of each question, in seconds."""
        return self._native.limits()[0]

    @property
    def per_source_timeout(self) -> float:
        """The time allowed to each source, all its attempts included, in seconds."""
        return self._native.limits()[1]

    async def ask(
        self,
        question: str,
        *,
        deadline: Optional[float] = None,
        per_source_timeout: Optional[float] = None,
        faults: Optional[Mapping[str, str]] = None,
        sequential: bool = False,
    ) -> Answer:
        """Asks every applicable source at once and returns the answer, degraded if some sources failed.

        Raises :class:`SourceError` when there is no answer (its ``answer`` says what each source did), and
        :class:`DeadlineExceeded` (a ``TimeoutError``) when the deadline ended the run with none. Cancelling the
        awaiting task (``task.cancel()``, ``asyncio.timeout``) cancels the run, waits until its steps have ended,
        and re-raises.
        """
        answer = await self._ask(question, deadline, per_source_timeout, faults, sequential)
        if not answer.ok:
            raise _no_answer(answer)
        return answer

    async def ask_many(
        self,
        questions: Iterable[str],
        *,
        concurrency: Optional[int] = None,
        deadline: Optional[float] = None,
        per_source_timeout: Optional[float] = None,
        faults: Optional[Mapping[str, str]] = None,
    ) -> List[Answer]:
        """Asks every question at once (at most ``concurrency`` at a time, if given), in the given order.

        Answers without an answer are returned, not raised (``answer.ok`` is false). A bad question raises
        :class:`QuestionError` before anything is asked; like a ``TaskGroup``, an error or a cancellation
        cancels the other questions and waits for them.
        """
        questions = list(questions)
        gate = asyncio.Semaphore(concurrency) if concurrency else None

        async def one(question: str) -> Answer:
            if gate is None:
                return await self._ask(question, deadline, per_source_timeout, faults, False)
            async with gate:
                return await self._ask(question, deadline, per_source_timeout, faults, False)

        return await _all_or_nothing([one(question) for question in questions])

    async def compare(
        self,
        question: str,
        *,
        deadline: Optional[float] = None,
        per_source_timeout: Optional[float] = None,
        faults: Optional[Mapping[str, str]] = None,
    ) -> Comparison:
        """The sequential baseline, then the concurrent agent, each with a fresh cache: both answers and the
        speed-up."""
        run = self._native.compare(
            question,
            deadline=deadline,
            per_source_timeout=per_source_timeout,
            faults=dict(faults or {}),
        )
        report = json.loads(await _await_run(run))
        return Comparison(
            question=report["question"],
            sequential=Answer._from(report["sequential"]),
            concurrent=Answer._from(report["concurrent"]),
            speedup=report["speedup"],
            ideal_speedup=report["ideal_speedup"],
            _report=report,
        )

    def stream(
        self,
        question: str,
        *,
        deadline: Optional[float] = None,
        per_source_timeout: Optional[float] = None,
        faults: Optional[Mapping[str, str]] = None,
        sequential: bool = False,
    ) -> EventStream:
        """Starts the question and returns its events as they happen: the events ``serve`` streams."""
        run = self._native.ask(
            question,
            mode="sequential" if sequential else "concurrent",
            deadline=deadline,
            per_source_timeout=per_source_timeout,
            faults=dict(faults or {}),
            stream=True,
        )
        return EventStream(run)

    def batch(
        self,
        input: PathType,
        db: PathType,
        *,
        format: Optional[str] = None,
        interval: float = 0.5,
    ) -> Batch:
        """Starts a batch with this agent: see :func:`tributary.batch`."""
        return Batch(self._native.batch(input, db, format=format), interval, None)

    def close(self) -> None:
        """Cancels and joins every run, then stops the agent's servers, workers and simulated services."""
        self._native.close()

    async def aclose(self) -> None:
        """``close()`` without blocking the event loop."""
        await asyncio.get_running_loop().run_in_executor(None, self._native.close)

    @property
    def closed(self) -> bool:
        """Whether the agent was closed."""
        return self._native.closed

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Agent:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _ask(
        self,
        question: str,
        deadline: Optional[float],
        per_source_timeout: Optional[float],
        faults: Optional[Mapping[str, str]],
        sequential: bool,
    ) -> Answer:
        run = self._native.ask(
            question,
            mode="sequential" if sequential else "concurrent",
            deadline=deadline,
            per_source_timeout=per_source_timeout,
            faults=dict(faults or {}),
        )
        return Answer._from(json.loads(await _await_run(run)))


def batch(
    input: PathType,
    db: PathType,
    *,
    agent: Optional[Agent] = None,
    format: Optional[str] = None,
    interval: float = 0.5,
    **agent_options: Any,
) -> Batch:
    """Answers every question of ``input`` into the SQLite database ``db``, as ``tributary batch`` does.

    ``input`` is text (one question per line) or JSON Lines (``{"id": ..., "question": ...}``), by its name or
    ``format`` (``text``, ``jsonl``). Rerunning with the same input and database answers only what is missing.
    With no ``agent``, one is started with ``agent_options`` (``Agent``'s keywords) and closed at the end.
    Raises :class:`BatchError` when the input or the database cannot be opened.

    >>> async for progress in tributary.batch("questions.txt", db="answers.db"):  # doctest: +SKIP
    ...     print(progress.done, "of", progress.total)
    """
    owner = None
    if agent is None:
        agent = owner = Agent(**agent_options)
    elif agent_options:
        raise TypeError(f"agent options given with an agent: {', '.join(agent_options)}")
    try:
        native = agent._native.batch(input, db, format=format)
    except BaseException:
        if owner is not None:
            owner.close()
        raise
    return Batch(native, interval, owner)


def _duration(seconds: float) -> str:
    """Seconds as the sources file writes a duration."""
    return f"{round(seconds * 1000)}ms"


def _no_answer(answer: Answer) -> SourceError:
    """The exception for an answer without one: the deadline's, or the sources'."""
    message = answer.error or "no answer"
    deadline = answer.failure == "no_inference_finished" or any(
        source.failure == "deadline" for source in answer.sources
    )
    return (DeadlineExceeded if deadline else SourceError)(message, answer)


async def _await_run(run: _tributary.NativeRun) -> str:
    """The run's JSON; a cancellation cancels the run and waits until its steps have ended before going on."""
    try:
        return await run.wait()
    except asyncio.CancelledError:
        await _join_cancelled(run)
        raise


async def _join_cancelled(run: _tributary.NativeRun) -> None:
    """Cancels the run and waits for its steps to end, even if the waiting task is cancelled again."""
    run.cancel()
    await _join(run)


async def _join(run: _tributary.NativeRun) -> None:
    """Waits until the run has ended, whatever its result. Cancelled while it waits, it cancels the run, still
    waits, then raises the cancellation."""
    cancelled = False
    while True:
        try:
            await run.wait()
            break
        except asyncio.CancelledError:
            cancelled = True
            run.cancel()
        except TributaryError:
            break
    if cancelled:
        raise asyncio.CancelledError


async def _all_or_nothing(coroutines: Sequence[Awaitable[T]]) -> List[T]:
    """Every result in order; on the first error or a cancellation, the others are cancelled and awaited (a
    ``TaskGroup``'s rule, on Python 3.9 too)."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
