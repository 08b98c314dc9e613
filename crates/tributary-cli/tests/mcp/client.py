"""Drives tributary's MCP server with the official Python SDK's client (PyPI `mcp`), as an assistant would.

    python3 client.py stdio TRIBUTARY_BINARY [ARG...]   # starts `tributary mcp ...` itself
    python3 client.py http URL                          # a running `tributary serve`'s /mcp
    python3 client.py http-busy URL                     # the same, full: one ask, refused at once

Checks, in order: the tools and their input schemas, the sources resource, an `ask` with progress
notifications, a bad argument refused with a clear error, and cancellation: an `ask` whose source hangs,
cancelled by the client, returns at once and the server answers the next call. Prints one JSON line of what it
saw; exits 1 with the reason when a check fails.
"""

import json
import sys
import time

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client


def check(condition, message):
    if not condition:
        print(f"check failed: {message}", file=sys.stderr)
        sys.exit(1)


async def drive(session: ClientSession) -> dict:
    seen = {}
    await session.initialize()

    tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    check(set(tools) >= {"ask", "compare"}, f"tools: {sorted(tools)}")
    schema = tools["ask"].input_schema
    check("question" in schema.get("properties", {}), f"ask's schema: {schema}")
    check(schema.get("required") == ["question"], f"ask's required: {schema.get('required')}")
    check(tools["ask"].annotations.read_only_hint is True, "ask is read-only")
    seen["tools"] = sorted(tools)

    resources = (await session.list_resources()).resources
    check([str(r.uri) for r in resources] == ["tributary://sources"], f"resources: {resources}")
    contents = (await session.read_resource("tributary://sources")).contents
    sources = json.loads(contents[0].text)
    check([s["name"] for s in sources] == ["weather", "news", "kb"], f"sources: {sources}")
    seen["sources"] = [s["name"] for s in sources]

    progress = []

    async def on_progress(done, total, message):
        progress.append({"progress": done, "total": total, "message": message})

    started = time.monotonic()
    result = await session.call_tool(
        "ask",
        {"question": "What is the weather in Paris and the news about rust?", "deadline_ms": 10000},
        progress_callback=on_progress,
    )
    seen["ask_ms"] = round((time.monotonic() - started) * 1000)
    check(not result.is_error, f"ask failed: {result.content}")
    report = result.structured_content
    check(report["status"] in ("ok", "degraded"), f"status: {report['status']}")
    check(report["answer"], "an answer")
    check(result.content[0].text.startswith(report["answer"][:20]), "the text rendering opens with the answer")
    messages = [p["message"] for p in progress]
    check(any(m.endswith("fetched") for m in messages), f"a fetch in the progress: {messages}")
    check(any(m.endswith("inferred") for m in messages), f"an inference in the progress: {messages}")
    check(all(a["progress"] < b["progress"] for a, b in zip(progress, progress[1:])), "progress increases")
    seen["progress"] = messages
    seen["status"] = report["status"]

    # A bad argument: refused with what is wrong, not a crash.
    try:
        bad = await session.call_tool("ask", {"question": "", "deadline_ms": 5})
        check(bad.is_error, "an empty question is an error")
        seen["bad_question"] = bad.content[0].text
    except Exception as error:  # an MCP error response
        seen["bad_question"] = str(error)
    check("question" in seen["bad_question"], f"the error names the question: {seen['bad_question']}")

    # A faulted source degrades the answer within the deadline.
    faulted = await session.call_tool(
        "ask",
        {"question": "What is the news about rust?", "faults": {"news": "error"}, "deadline_ms": 5000},
    )
    news = [s for s in faulted.structured_content["sources"] if s["name"] == "news"][0]
    check(news["status"] == "failed", f"news with the error fault: {news}")
    seen["faulted_news"] = news["status"]

    # Cancellation: a source that hangs, the call cancelled by the client after a moment.
    started = time.monotonic()
    with anyio.move_on_after(1.0):
        await session.call_tool(
            "ask",
            {"question": "What is the news about rust?", "faults": {"news": "hang"}, "deadline_ms": 60000,
             "per_source_timeout_ms": 60000},
        )
        check(False, "the hanging ask returned before it was cancelled")
    seen["cancelled_after_ms"] = round((time.monotonic() - started) * 1000)
    # The server is still there, and free: the next call is answered.
    again = await session.call_tool("ask", {"question": "What is the GIL?", "deadline_ms": 10000})
    check(not again.is_error, "the next ask after a cancellation")
    seen["after_cancel"] = again.structured_content["status"]
    return seen


async def main() -> None:
    kind = sys.argv[1]
    if kind == "stdio":
        server = StdioServerParameters(command=sys.argv[2], args=sys.argv[3:])
        async with stdio_client(server) as (read, write):
            async with ClientSession(read, write) as session:
                seen = await drive(session)
    elif kind == "http-busy":
        async with streamable_http_client(sys.argv[2]) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                started = time.monotonic()
                try:
                    result = await session.call_tool("ask", {"question": "What is the GIL?"})
                    check(False, f"a full server answered: {result}")
                except Exception as error:  # the server's JSON-RPC error
                    seen = {"refused": str(error), "refused_after_ms": round((time.monotonic() - started) * 1000)}
    elif kind == "http":
        async with streamable_http_client(sys.argv[2]) as (read, write):
            async with ClientSession(read, write) as session:
                seen = await drive(session)
    else:
        sys.exit(f"unknown transport {kind}")
    print(json.dumps(seen))


anyio.run(main)
