"""A small MCP server written with the official Python SDK's MCPServer (FastMCP before mcp 2), asked by
tributary's tests as a source, over stdio or streamable HTTP, well-behaved or not:

    python3 server.py stdio
    python3 server.py http PORT

Tools (each takes `question`):
  search      read-only: a few sentences about the question's subject
  docs        read-only: a reference text, as structured content
  fail        read-only: answers an error result (isError)
  hang        read-only: never answers
  crash_once  read-only: the first call in a state directory kills the process mid-call, later calls answer
  write       not read-only: counts its calls in the state directory, then kills the process mid-call
  garbage     read-only: writes lines that are not JSON-RPC to stdout, then answers
  flood       read-only: sends 1,000 progress and log notifications, then answers
  huge        read-only: answers 3 MB of text

With TRIBUTARY_TEST_STATE=DIR, the process writes its pid to DIR/pids (one line per process), and the tools keep
their counts there. It prints a line to stderr when it starts (which must go to tributary's log, not its
terminal).
"""

import os
import sys
from pathlib import Path

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

STATE = Path(os.environ["TRIBUTARY_TEST_STATE"]) if os.environ.get("TRIBUTARY_TEST_STATE") else None
READ_ONLY = ToolAnnotations(read_only_hint=True)

server = MCPServer("tributary-test-server")


def count(name: str) -> int:
    """Adds one to the count `name` in the state directory, returning the count before."""
    if STATE is None:
        return 0
    path = STATE / name
    before = int(path.read_text()) if path.exists() else 0
    path.write_text(str(before + 1))
    return before


@server.tool(annotations=READ_ONLY)
def search(question: str) -> str:
    """Facts about the question's subject."""
    count("search")
    return (
        f"Rust is a systems programming language focused on safety and speed. "
        f"Its ownership model prevents data races at compile time. You asked: {question}"
    )


@server.tool(annotations=READ_ONLY)
def docs(question: str) -> dict:
    """A reference entry, as structured content."""
    return {"title": "The global interpreter lock", "text": "The GIL lets one thread run Python bytecode at a time."}


@server.tool(annotations=READ_ONLY)
def fail(question: str) -> str:
    """Always fails."""
    raise ValueError("the index is being rebuilt")


@server.tool(annotations=READ_ONLY)
async def hang(question: str) -> str:
    """Never answers."""
    await anyio.sleep_forever()
    return ""


@server.tool(annotations=READ_ONLY)
def crash_once(question: str) -> str:
    """Kills its process on the first call, answers after."""
    if count("crash_once") == 0:
        os._exit(3)
    return "Rust was first released in 2015. It was started at Mozilla."


@server.tool()
def write(question: str) -> str:
    """Not read-only: must never be called twice for one question."""
    count("write")
    os._exit(4)


@server.tool(annotations=READ_ONLY)
def garbage(question: str) -> str:
    """Writes junk on the protocol's stream, then answers."""
    os.write(1, b"this is not json-rpc\n{\"jsonrpc\": \"2.0\", \"method\": 7}\n\x00\xff garbage\n")
    return "Rust has a package manager called Cargo."


@server.tool(annotations=READ_ONLY)
async def flood(question: str, ctx: Context) -> str:
    """Floods the client with notifications, then answers."""
    for step in range(1000):
        await ctx.report_progress(step, 1000, "flooding")
        await ctx.info(f"log line {step}")
    return "Rust's compiler is written in Rust."


@server.tool(annotations=READ_ONLY)
def huge(question: str) -> str:
    """Three megabytes of text."""
    return "Rust. " * 500_000


def main() -> None:
    if STATE is not None:
        with open(STATE / "pids", "a") as pids:
            pids.write(f"{os.getpid()}\n")
    print(f"test server {os.getpid()} starting", file=sys.stderr, flush=True)
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
