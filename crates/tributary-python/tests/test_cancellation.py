"""Cancellation both ways: Python's cancels the Rust run and waits for its steps; Rust's deadline is Python's
TimeoutError."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

import tributary
from tributary import _await_run

HANG = {"weather": "hang", "news": "hang", "kb": "hang"}
QUESTION = "What's the weather in Paris, and why does the GIL matter?"


async def test_task_cancel_cancels_the_run_and_joins_it(agent: tributary.Agent) -> None:
    run = agent._native.ask(QUESTION, faults=HANG, per_source_timeout=60.0, deadline=60.0)
    task = asyncio.ensure_future(_await_run(run))
    await asyncio.sleep(0.3)
    assert not run.done()
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The cancellation went on only once the run's steps had all ended.
    assert run.done()
    assert time.monotonic() - started < 10.0


async def test_a_cancelled_run_reports_its_sources_cancelled(agent: tributary.Agent) -> None:
    run = agent._native.ask(QUESTION, faults=HANG, per_source_timeout=60.0, deadline=60.0)
    await asyncio.sleep(0.3)
    run.cancel()
    report = tributary.Answer._from(__import__("json").loads(await run.wait()))
    assert {source.failure for source in report.sources} == {"cancelled"}


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is Python 3.11's")
async def test_asyncio_timeout_cancels_the_ask(agent: tributary.Agent) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await agent.ask(QUESTION, faults=HANG, per_source_timeout=60.0, deadline=60.0)
    assert time.monotonic() - started < 10.0
    # The agent goes on answering.
    assert (await agent.ask(QUESTION)).ok


async def test_wait_for_cancels_the_ask(agent: tributary.Agent) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(agent.ask(QUESTION, faults=HANG, deadline=60.0), timeout=0.3)


async def test_the_rust_deadline_is_a_python_timeout(agent: tributary.Agent) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await agent.ask(QUESTION, faults=HANG, deadline=0.4, per_source_timeout=60.0)
    assert time.monotonic() - started < 10.0


async def test_closing_the_agent_cancels_its_runs() -> None:
    agent = tributary.Agent(inference_cost="20ms")
    run = agent._native.ask(QUESTION, faults=HANG, per_source_timeout=60.0, deadline=60.0)
    await asyncio.sleep(0.2)
    await agent.aclose()
    assert run.done()
