"""The chapter's capstone from Python: three sources at once, faults, deadlines, the speed-up, the types."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

import tributary
from conftest import FAST

QUESTION = "What's the weather in Paris, and why does the GIL matter?"

REPORT_FIELDS = {
    "question", "status", "answer", "error", "failure", "degraded", "mode", "elapsed_ms", "ideal_ms",
    "efficiency", "workers", "deadline_ms", "per_source_timeout_ms", "sources",
}


async def test_the_capstone_asks_three_sources_at_once(agent: tributary.Agent) -> None:
    answer = await agent.ask(QUESTION)
    assert answer.status == "ok"
    assert answer.ok and answer.text and "Paris" in answer.text
    assert [source.name for source in answer.sources] == ["weather", "news", "kb"]
    assert all(source.status == "ok" for source in answer.sources)
    assert answer.mode == "concurrent"
    assert 0 < answer.efficiency <= 1.0 + 1e-9
    assert answer.workers == 2
    report = answer.to_dict()
    assert REPORT_FIELDS <= set(report)
    assert report["answer"] == answer.text
    assert json.loads(json.dumps(report)) == report


async def test_a_failing_source_degrades_the_answer(agent: tributary.Agent) -> None:
    answer = await agent.ask(QUESTION, faults={"news": "malformed"})
    assert answer.status == "degraded" and answer.degraded
    news = answer.source("news")
    assert news.status == "failed" and news.failure == "malformed" and news.attempts == 1
    assert answer.source("weather").status == "ok"


async def test_a_hanging_source_times_out_within_its_share(agent: tributary.Agent) -> None:
    started = time.monotonic()
    answer = await agent.ask(QUESTION, faults={"kb": "hang"}, per_source_timeout=3.0, deadline=8.0)
    assert answer.status == "degraded"
    assert answer.source("kb").status == "timed_out"
    assert time.monotonic() - started < 8.0


async def test_no_answer_within_the_deadline_is_a_timeout_error(agent: tributary.Agent) -> None:
    faults = {name: "hang" for name in agent.sources}
    with pytest.raises(tributary.DeadlineExceeded) as raised:
        await agent.ask(QUESTION, faults=faults, deadline=0.5, per_source_timeout=5.0)
    assert isinstance(raised.value, TimeoutError)
    assert isinstance(raised.value, tributary.SourceError)
    failed = raised.value.answer
    assert failed is not None and failed.status == "failed" and failed.text is None
    assert str(raised.value) == failed.error


async def test_every_source_failing_is_a_source_error(agent: tributary.Agent) -> None:
    faults = {name: "malformed" for name in agent.sources}
    with pytest.raises(tributary.SourceError) as raised:
        await agent.ask(QUESTION, faults=faults)
    assert not isinstance(raised.value, TimeoutError)
    assert raised.value.answer is not None
    assert {source.failure for source in raised.value.answer.sources} == {"malformed"}


async def test_compare_measures_the_speedup(agent: tributary.Agent) -> None:
    comparison = await agent.compare(QUESTION)
    assert comparison.sequential.mode == "sequential"
    assert comparison.concurrent.mode == "concurrent"
    assert comparison.speedup == pytest.approx(
        comparison.sequential.elapsed_ms / comparison.concurrent.elapsed_ms, rel=1e-3
    )
    # Three sources fetched at once rather than one after the other.
    assert comparison.speedup > 1.2
    assert set(comparison.to_dict()) == {
        "question", "sequential", "concurrent", "speedup", "ideal_speedup",
    }


async def test_ask_many_answers_in_order(agent: tributary.Agent) -> None:
    questions = ["Weather in Paris?", "Why does the GIL matter?", "News about Tokyo"]
    answers = await agent.ask_many(questions, concurrency=2)
    assert [answer.question for answer in answers] == [q.rstrip() for q in questions]
    assert all(answer.ok for answer in answers)


async def test_ask_many_with_a_bad_question_cancels_the_others(agent: tributary.Agent) -> None:
    with pytest.raises(tributary.QuestionError):
        await agent.ask_many(["Weather in Paris?", " "])


async def test_sources_from_python_objects(service: str) -> None:
    sources = [
        tributary.Source("news", "news", service, timeout=2.0, retries=0),
        {"name": "kb", "kind": "kb", "base_url": service, "timeout": "2s"},
    ]
    async with tributary.Agent(sources, **FAST) as agent:
        assert agent.sources == ["news", "kb"]
        answer = await agent.ask("Why does the GIL matter?")
        assert answer.status == "ok"
        assert answer.text and "GIL" in answer.text


async def test_sources_from_the_clis_file(service: str, tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(f'[[source]]\nname = "news"\nkind = "news"\nbase_url = "{service}"\n')
    async with tributary.Agent(path, **FAST) as agent:
        answer = await agent.ask("Rivers in spring")
        assert answer.source("news").status == "ok"


async def test_the_sequential_baseline(agent: tributary.Agent) -> None:
    answer = await agent.ask(QUESTION, sequential=True)
    assert answer.mode == "sequential" and answer.ok


async def test_the_simulated_services_answer_on_loopback(agent: tributary.Agent, service: str) -> None:
    assert agent.services_url is not None and agent.services_url.startswith("http://127.0.0.1:")
    async with tributary.Agent([tributary.Source("news", "news", service)], **FAST) as other:
        assert other.services_url is None
