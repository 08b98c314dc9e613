"""The capstone from Python: through tributary, and in pure asyncio with a ProcessPoolExecutor (the chapter's
Lesson 6), against the same simulated services, with the same CPU cost per inference. Then the binding's own
overhead per ask. One run; docs/BENCHMARKS.md records it.

    python crates/tributary-python/benches/versus_asyncio.py [SECONDS]   # after `maturin develop --release`

SECONDS is the CPU per inference (default 0.3).

Prints, for each: wall time per question, efficiency against the ideal schedule (the measured fetch arrivals and
inference costs, placed at best on the same workers), and the event loop's lag (a 5 ms ticker) while it runs.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from itertools import permutations
from typing import Awaitable, Callable, List, Sequence, Tuple, TypeVar
from urllib.parse import quote, urlparse

import tributary

WORKERS = 2
INFERENCE_S = float(sys.argv[1]) if len(sys.argv) > 1 else 0.3
CITIES = ["Paris", "Tokyo", "Oslo", "Berlin", "Madrid", "Cairo"]
TOPICS = ["the GIL", "asyncio", "free threading", "structured concurrency", "the event loop", "subinterpreters"]
T = TypeVar("T")


def questions() -> List[Tuple[str, str, str]]:
    """(question, city, topic): every question different, so no run is served from a cache."""
    return [(f"What's the weather in {city}, and why does {topic} matter?", city, topic)
            for city, topic in zip(CITIES, TOPICS)]


def ideal_ms(arrivals: Sequence[float], costs: Sequence[float], workers: int) -> float:
    """The shortest schedule of the inferences on `workers` cores, each starting no earlier than its response
    arrived: every order, each job on the first free worker."""
    best = float("inf")
    for order in permutations(range(len(costs))):
        free = [0.0] * workers
        for job in order:
            worker = min(range(workers), key=free.__getitem__)
            free[worker] = max(free[worker], arrivals[job]) + costs[job]
        best = min(best, max(free))
    return best


async def with_lag(work: Callable[[], Awaitable[T]]) -> Tuple[T, List[float]]:
    """`work`'s result and the event loop's lags (ms) sampled by a 5 ms ticker while it ran."""
    lags: List[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append((time.perf_counter() - before - 0.005) * 1000)

    task = asyncio.ensure_future(ticker())
    try:
        return await work(), lags
    finally:
        stop.set()
        await task


# The reference: pure asyncio, the inferences on a process pool.

def burn(text: str, seconds: float) -> Tuple[int, float]:
    """The simulated LLM: `seconds` of CPU in a Python loop (in a worker process); returns a score and its time."""
    started = time.perf_counter()
    cpu = time.process_time()
    score = 0
    while time.process_time() - cpu < seconds:
        for character in text:
            score = (score * 31 + ord(character)) % 1_000_003
    return score, (time.perf_counter() - started) * 1000


async def get(base: str, path: str) -> str:
    """A GET over a fresh loopback connection (HTTP/1.1, Connection: close), asyncio's streams only."""
    url = urlparse(base)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.split(b"\r\n")[0].decode())
    return body.decode()


async def reference(
    base: str, pool: ProcessPoolExecutor, city: str, topic: str, costs: List[float]
) -> Tuple[float, float]:
    """One question the chapter's way: three fetches at once, each inference on the pool as its response arrives.
    Returns (wall ms, ideal ms); appends each inference's time to `costs`."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    paths = [f"/weather?city={quote(city)}", f"/news?q={quote(topic)}", f"/kb/search?q={quote(topic)}"]

    async def one(path: str) -> Tuple[float, float]:
        body = await get(base, path)
        arrived = (time.perf_counter() - started) * 1000
        _, cost = await loop.run_in_executor(pool, burn, json.dumps(json.loads(body)), INFERENCE_S)
        return arrived, cost

    results = await asyncio.gather(*(one(path) for path in paths))
    wall = (time.perf_counter() - started) * 1000
    costs.extend(cost for _, cost in results)
    return wall, ideal_ms([a for a, _ in results], [c for _, c in results], WORKERS)


def summary(
    name: str, walls: List[float], ideals: List[float], lags: List[float], costs: List[float]
) -> None:
    efficiency = statistics.mean(i / w for i, w in zip(ideals, walls))
    lags = sorted(lags)
    p99 = lags[int(len(lags) * 0.99)] if lags else 0.0
    print(f"{name:34} wall {statistics.mean(walls):7.1f} ms/question   efficiency {efficiency:.3f}   "
          f"inference {statistics.mean(costs):6.1f} ms   loop lag max {max(lags):6.2f} ms, p99 {p99:5.2f} ms")


async def main() -> None:
    async with tributary.Agent(inference_cost=f"{int(INFERENCE_S * 1000)}ms", workers=WORKERS) as agent:
        base = agent.services_url
        assert base is not None
        # Warm-up: the connection, the calibrated inference, every code path once.
        await agent.ask("Weather in Lima?")

        costs: List[float] = []

        async def through_tributary() -> Tuple[List[float], List[float]]:
            walls, ideals = [], []
            for question, _, _ in questions():
                started = time.perf_counter()
                answer = await agent.ask(question)
                walls.append((time.perf_counter() - started) * 1000)
                ideals.append(answer.ideal_ms)
                costs.extend(source.infer_ms or 0.0 for source in answer.sources)
                assert answer.status == "ok", answer
            return walls, ideals

        (walls, ideals), lags = await with_lag(through_tributary)

        ref_costs: List[float] = []
        with ProcessPoolExecutor(WORKERS) as pool:
            # The workers started and warm before anything is timed, as tributary's pool is.
            list(pool.map(burn, ["warm"] * WORKERS, [0.01] * WORKERS))

            async def pure_asyncio() -> Tuple[List[float], List[float]]:
                results = [
                    await reference(base, pool, city, topic, ref_costs) for _, city, topic in questions()
                ]
                return [w for w, _ in results], [i for _, i in results]

            (ref_walls, ref_ideals), ref_lags = await with_lag(pure_asyncio)

        print(f"{len(questions())} questions, 3 sources each, {INFERENCE_S * 1000:.0f} ms of CPU per inference, "
              f"{WORKERS} workers")
        summary("tributary (from Python)", walls, ideals, lags, costs)
        summary("pure asyncio + ProcessPoolExecutor", ref_walls, ref_ideals, ref_lags, ref_costs)
        print(f"ratio (pure asyncio / tributary): {statistics.mean(ref_walls) / statistics.mean(walls):.2f}")

    # The binding's overhead: the same question again and again (answered from the caches, so an ask is short),
    # the wall time at the await less the run's own elapsed_ms, measured in Rust around the run.
    async with tributary.Agent(inference_cost="1ms", workers=WORKERS) as agent:
        question = "What's the weather in Paris, and why does the GIL matter?"
        for _ in range(20):
            await agent.ask(question)
        overheads, rust = [], []
        for _ in range(500):
            started = time.perf_counter()
            answer = await agent.ask(question)
            wall = (time.perf_counter() - started) * 1000
            overheads.append(wall - answer.elapsed_ms)
            rust.append(answer.elapsed_ms)
        overheads.sort()
        print(f"binding overhead per ask (500 asks; the ask itself {statistics.mean(rust):.3f} ms in Rust): "
              f"mean {statistics.mean(overheads):.3f} ms, p50 {overheads[250]:.3f} ms, p90 {overheads[450]:.3f} ms")


if __name__ == "__main__":
    asyncio.run(main())
