"""The chapter's capstone through tributary: weather, news and a knowledge base asked at once, inference on every
core, one answer within the deadline, even with a source down. Run: python examples/capstone.py"""

import asyncio

import tributary


async def main() -> None:
    async with tributary.Agent(deadline=5.0, per_source_timeout=2.5) as agent:  # simulated services
        question = "What's the weather in Paris, and why does the GIL matter?"
        answer = await agent.ask(question, faults={"news": "hang"})  # news is down today
        print(answer.text)
        for source in answer.sources:
            print(f"  {source.name:8} {source.status:10} {source.fetch_ms or 0:7.0f} ms  {source.error or ''}")
        print(f"{answer.status} in {answer.elapsed_ms:.0f} ms, efficiency {answer.efficiency:.2f}")
        comparison = await agent.compare(question)
        print(f"sequential {comparison.sequential.elapsed_ms:.0f} ms, concurrent "
              f"{comparison.concurrent.elapsed_ms:.0f} ms: {comparison.speedup:.2f}x")


asyncio.run(main())
