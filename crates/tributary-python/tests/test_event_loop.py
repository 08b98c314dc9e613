"""The GIL is released while an ask runs: the event loop stays responsive, as the lab measures it."""

from __future__ import annotations

import asyncio
import time

import tributary


async def test_the_event_loop_stays_responsive_during_an_ask() -> None:
    # Real CPU work: 300 ms of simulated inference per source on two workers.
    async with tributary.Agent(inference_cost="300ms", workers=2) as agent:
        lags = []
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                before = time.perf_counter()
                await asyncio.sleep(0.005)
                lags.append(time.perf_counter() - before - 0.005)

        task = asyncio.ensure_future(ticker())
        answer = await agent.ask("What's the weather in Paris, and why does the GIL matter?")
        stop.set()
        await task
    assert answer.ok
    assert answer.elapsed_ms > 400
    # With the GIL held through the inference the loop would stall for its whole 300 ms per source.
    assert max(lags) < 0.15, f"the event loop stalled {max(lags) * 1000:.0f} ms"
