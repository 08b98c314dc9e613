"""The Python peer's agent: plan the sources for a question, ask them all at once, infer on each response in a
process pool, and answer within the deadline.

The shape is the chapter's (Python 3.14 asyncio; it runs on 3.11 too):

- one `asyncio.TaskGroup` per question, one task per source. A step catches its own failures, so one source
  failing never cancels the others; the group's cancellation is left to the deadline;
- each fetch under `asyncio.timeout(per_source_timeout)`, the whole group under `asyncio.timeout_at(deadline)`;
- the CPU-bound inference in a `ProcessPoolExecutor`, awaited with `loop.run_in_executor` the moment its
  response arrives.

It plans and answers as tributary does (crates/tributary-agent/src/plan.rs and step/): weather when the
question names a city, news when it has content words (the keywords), the knowledge base always; `ok` when
every source asked answered, `degraded` when some did not, `failed` when none did.

One difference the chapter's tools impose: a process-pool job cannot be stopped once a worker has started it,
so an inference the deadline gave up on still runs to its end, where tributary's workers check a stop flag every
few tens of microseconds. Under overload the peer spends CPU on answers nobody waits for any more.
"""

import asyncio
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import aiohttp

from gazetteer import city_named_in
from inference import InferenceJob, run_inference

# The sources, in the order they are reported and their lines appear in the answer: name -> request path.
SOURCE_PATHS = {"weather": "/weather", "news": "/news", "kb": "/kb/search"}

# How each source's line in the answer begins (tributary's aggregate.rs).
ANSWER_PREFIXES = {"weather": "Weather", "news": "In the news", "kb": "Background"}

# The header that tells a source how long the caller still waits for it, as tributary's client sends it.
DEADLINE_HEADER = "x-deadline-ms"

# The most keywords sent to the news search (tributary's MAX_NEWS_KEYWORDS).
MAX_NEWS_KEYWORDS = 6

# Fields that hold prose, in the order they are worth reading (tributary's extract.rs).
PROSE_FIELDS = ("title", "summary", "text", "passage", "snippet", "body", "content", "description")

# tributary's plan.rs STOP_WORDS, so that both servers send the news service the same keywords.
STOP_WORDS = frozenset("""
    a about after all also am an and any are as at be been before being between both but by can could did do does
    doing during each for from get give had has have how i if in into is it its it's just latest like me more
    most my new news no not now of on or our out over please should so some tell than that the their them then
    there these they this to today tomorrow under up us was we weather were what what's when where which while
    who why will with would you your
""".split())

PENDING = "pending"


@dataclass(frozen=True)
class AgentSettings:
    """How every question is run (times in seconds)."""

    sources_url: str
    deadline: float
    per_source_timeout: float
    inference_units: int
    workers: int


@dataclass(frozen=True)
class PlannedSource:
    """One source for one question: the query to send it, or why it does not apply."""

    name: str
    query: dict[str, str] | None
    skip_reason: str | None = None


@dataclass
class SourceReport:
    """What became of one source; filled in by its step as it goes, so that what a step had done when the
    deadline cancelled it is still known."""

    name: str
    status: str = PENDING
    error: str | None = None
    fetch_ms: float | None = None
    infer_ms: float | None = None
    summary: str | None = None
    # Whether the source gave a response, whatever became of its inference (not in the JSON).
    responded: bool = field(default=False, repr=False)

    def to_json(self) -> dict:
        """The report as the answer object shows it (the fields tributary's reports share)."""
        return {
            "name": self.name,
            "kind": self.name,
            "status": self.status,
            "error": self.error,
            "fetch_ms": self.fetch_ms,
            "infer_ms": self.infer_ms,
            "summary": self.summary,
        }


class SourceError(Exception):
    """A source answered, but not with a usable response (an HTTP error status)."""


def keywords(text: str) -> list[str]:
    """The content words of `text`: lower-cased, stop words and one-letter words removed, first occurrence
    order, no repeats, at most MAX_NEWS_KEYWORDS (tributary's plan::keywords)."""
    found: list[str] = []
    word = []
    for character in text + " ":
        if character.isalnum() or character in "-'":
            word.append(character)
            continue
        candidate = "".join(word).strip("-'").lower()
        word = []
        if len(candidate) < 2 or candidate in STOP_WORDS or candidate in found:
            continue
        found.append(candidate)
        if len(found) == MAX_NEWS_KEYWORDS:
            break
    return found


def plan(question: str) -> list[PlannedSource]:
    """Every source for `question`, in SOURCE_PATHS order, with its query or why it is skipped."""
    city = city_named_in(question)
    news_keywords = keywords(question)
    return [
        PlannedSource("weather", {"city": city})
        if city
        else PlannedSource("weather", None, "the question names no city the gazetteer knows"),
        PlannedSource("news", {"q": " ".join(news_keywords)})
        if news_keywords
        else PlannedSource("news", None, "the question has no keywords to search the news for"),
        PlannedSource("kb", {"q": question}),
    ]


def prose(value) -> list[str]:
    """Every prose field anywhere in a JSON value, in document order, each ending a sentence, each once."""
    sentences: list[str] = []

    def collect(node) -> None:
        if isinstance(node, dict):
            for name in PROSE_FIELDS:
                text = node.get(name)
                if isinstance(text, str) and text.strip():
                    sentence = text.strip()
                    if not sentence.endswith((".", "!", "?")):
                        sentence += "."
                    if sentence not in sentences:
                        sentences.append(sentence)
            for nested in node.values():
                if isinstance(nested, (dict, list)):
                    collect(nested)
        elif isinstance(node, list):
            for item in node:
                collect(item)

    collect(value)
    return sentences


def document_for(source: str, body) -> str:
    """The text inference reads from a source's response: the weather's summary, or every prose field."""
    if source == "weather" and isinstance(body, dict) and isinstance(body.get("summary"), str):
        return body["summary"]
    return " ".join(prose(body))


def reasons(reports: list[SourceReport]) -> str:
    """`name: why; name: why` for these sources."""
    return "; ".join(f"{report.name}: {report.error or 'no answer'}" for report in reports)


def verdict(question: str, reports: list[SourceReport]) -> tuple[str, str | None, str | None]:
    """The answer rule: (status, answer, error). At least one inference gives an answer, `ok` when no source
    that was asked is missing and `degraded` otherwise; no inference at all is `failed`, with why."""
    answered = [report for report in reports if report.status == "ok"]
    if not answered:
        if all(report.status == "skipped" for report in reports):
            why = f"no source applies to the question ({reasons(reports)})"
        elif any(report.responded for report in reports):
            responded = sum(report.responded for report in reports)
            why = f"{responded} of {len(reports)} source(s) answered, but no inference finished ({reasons(reports)})"
        else:
            why = f"no source answered ({reasons(reports)})"
        return "failed", None, why
    missing = any(report.status not in ("ok", "skipped") for report in reports)
    # A source whose response had nothing to summarise answered, but has no line (as in tributary's aggregate).
    saying = [report for report in answered if report.summary]
    lines = [f"{ANSWER_PREFIXES[report.name]}: {report.summary}" for report in saying]
    if saying:
        lines.append(f"Sources: {', '.join(report.name for report in saying)}.")
    else:
        lines.append(f'No source had anything to say about "{question}".')
    return ("degraded" if missing else "ok"), "\n".join(lines), None


class Agent:
    """Answers questions with one shared HTTP client (and its connection pool) and one process pool."""

    def __init__(self, settings: AgentSettings, session: aiohttp.ClientSession, pool: Executor):
        self.settings = settings
        self.session = session
        self.pool = pool

    async def ask(self, question: str, deadline: float) -> dict:
        """Answers `question` within `deadline` seconds: the answer object, with its per-source reports."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        planned = plan(question)
        reports = [SourceReport(source.name) for source in planned]
        try:
            async with asyncio.timeout_at(started + deadline):
                async with asyncio.TaskGroup() as group:
                    for source, report in zip(planned, reports):
                        if source.query is None:
                            report.status = "skipped"
                            report.error = source.skip_reason
                        else:
                            group.create_task(self._run_source(question, source, report, started + deadline))
        except TimeoutError:
            for report in reports:
                if report.status == PENDING:
                    report.status = "timed_out"
                    report.error = (
                        "inference cut short: overall deadline exceeded"
                        if report.responded
                        else "overall deadline exceeded"
                    )
        status, answer, error = verdict(question, reports)
        return {
            "question": question,
            "status": status,
            "answer": answer,
            "error": error,
            "degraded": any(report.status not in ("ok", "skipped") for report in reports),
            "elapsed_ms": (loop.time() - started) * 1000.0,
            "workers": self.settings.workers,
            "deadline_ms": deadline * 1000.0,
            "per_source_timeout_ms": self.settings.per_source_timeout * 1000.0,
            "sources": [report.to_json() for report in reports],
        }

    async def _run_source(self, question: str, source: PlannedSource, report: SourceReport, deadline_at: float):
        """Fetches one source, then infers on its response; records every outcome in `report` and never
        raises, so that one source's failure leaves the group's other tasks running."""
        try:
            body = await self._fetch(source, report, deadline_at)
        except TimeoutError:
            report.status = "timed_out"
            report.error = f"per-source timeout of {self.settings.per_source_timeout * 1000:.0f} ms exceeded"
            return
        except (aiohttp.ClientError, SourceError, ValueError) as error:
            report.status = "failed"
            report.error = f"failed to fetch {SOURCE_PATHS[source.name]}: {type(error).__name__}: {error}"
            return
        report.responded = True
        job = InferenceJob(question, source.name, document_for(source.name, body), self.settings.inference_units)
        try:
            result = await asyncio.get_running_loop().run_in_executor(self.pool, run_inference, job)
        except BrokenProcessPool as error:
            report.status = "failed"
            report.error = f"inference failed: {type(error).__name__}: {error}"
            return
        report.status = "ok"
        report.infer_ms = result.infer_ms
        report.summary = result.summary

    async def _fetch(self, source: PlannedSource, report: SourceReport, deadline_at: float):
        """One GET within the per-source timeout (itself inside the deadline); the parsed JSON body."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        budget = min(self.settings.per_source_timeout, deadline_at - started)
        try:
            async with asyncio.timeout(self.settings.per_source_timeout):
                async with self.session.get(
                    self.settings.sources_url + SOURCE_PATHS[source.name],
                    params=source.query,
                    headers={DEADLINE_HEADER: str(max(1, int(budget * 1000)))},
                ) as response:
                    if response.status != 200:
                        raise SourceError(f"HTTP {response.status}")
                    return await response.json(content_type=None)
        finally:
            report.fetch_ms = (loop.time() - started) * 1000.0
