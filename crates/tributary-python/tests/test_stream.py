"""agent.stream: the events `serve` streams, in order; leaving early cancels the run."""

from __future__ import annotations

import asyncio

import tributary

SERVE_EVENTS = {"run", "span_started", "span", "mark", "span_closed", "text", "source", "answer", "done"}


async def test_the_stream_has_serves_events_in_order(agent: tributary.Agent) -> None:
    stream = agent.stream("What's the weather in Paris, and why does the GIL matter?")
    events = [event async for event in stream]
    names = [event.name for event in events]
    assert names[0] == "run" and names[-2:] == ["answer", "done"]
    assert set(names) <= SERVE_EVENTS
    run = events[0].data
    assert run["mode"] == "concurrent" and "source weather" in " ".join(run["lanes"]) or run["lanes"]
    statuses = {(e.data["source"], e.data["status"]) for e in events if e.name == "source"}
    for source in ("weather", "news", "kb"):
        assert (source, "fetching") in statuses and (source, "ok") in statuses
    assert events[-1].data["outcome"] == "answered"
    assert stream.answer is not None and stream.answer.ok
    assert events[-2].data == stream.answer.to_dict()


async def test_leaving_the_stream_cancels_the_run(agent: tributary.Agent) -> None:
    hang = {"weather": "hang", "news": "hang", "kb": "hang"}
    async with agent.stream("Weather in Paris?", faults=hang, deadline=60.0, per_source_timeout=60.0) as stream:
        async for event in stream:
            if event.name == "source":
                break
    assert stream._run.done()
    report = await stream._run.wait()
    assert '"cancelled"' in report


async def test_cancelling_the_reader_cancels_the_run(agent: tributary.Agent) -> None:
    hang = {"weather": "hang", "news": "hang", "kb": "hang"}
    stream = agent.stream("Weather in Paris?", faults=hang, deadline=60.0, per_source_timeout=60.0)

    async def read() -> None:
        async for _ in stream:
            pass

    task = asyncio.ensure_future(read())
    await asyncio.sleep(0.3)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert stream._run.done()
