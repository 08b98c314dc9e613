"""`python server.py`: the agent as an HTTP service written the way the chapter teaches it (asyncio, aiohttp, a
process pool), to measure `tributary serve` against (scripts/bench-serve.py).

API, as `tributary serve` has it for what the benchmark uses:

    POST /v1/ask  {"question": "...", "deadline_ms": N?}
                  200 with the answer object when at least one source answered (possibly degraded), 502 with
                  the same shape when none did, 400 or 413 {"error": "..."} for a bad request, and 503
                  {"error": "..."} with Retry-After at once when --max-in-flight asks are already running.
    GET /healthz  200 while the process runs.

The URL is the first line on stdout; everything else goes to stderr. SIGINT or SIGTERM stops accepting, lets the
asks in flight finish (each within its deadline), and exits 0.

Exit codes: 0 stopped by a signal, 1 the environment failed (the simulated services unreachable, the address in
use), 2 a bad argument.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import socket
import sys
from concurrent.futures import ProcessPoolExecutor

import aiohttp
from aiohttp import web

from agent import Agent, AgentSettings
from inference import calibrate, units_for

# The largest request body accepted, as tributary serve's MAX_BODY_BYTES.
MAX_BODY_BYTES = 64 * 1024

# The longest question accepted, in bytes of UTF-8 (tributary's MAX_QUESTION_BYTES).
MAX_QUESTION_BYTES = 4096

# What a 503 asks the client to wait before trying again, as tributary serve says it.
RETRY_AFTER_SECONDS = 1

# Pending connections the kernel keeps for us: tokio's (and so tributary's) listen backlog.
LISTEN_BACKLOG = 1024

# How long the start-up check of the simulated services may take.
SOURCES_CHECK_TIMEOUT_SECONDS = 5

EXIT_ENVIRONMENT = 1
EXIT_USAGE = 2

ASK_FIELDS = frozenset({"question", "deadline_ms"})


class StartupError(Exception):
    """The server could not start: what failed, and the exit code that says whose fault it is."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class AskService:
    """The handlers and what they share: the agent, the server's deadline, and the admission count."""

    def __init__(self, agent: Agent, max_in_flight: int):
        self.agent = agent
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def ask(self, request: web.Request) -> web.Response:
        """POST /v1/ask: validates, admits or refuses at once, then answers within the deadline."""
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, f"the request body is over {MAX_BODY_BYTES} bytes")
        try:
            question, deadline = self.parse(body)
        except ValueError as invalid:
            return error_response(400, str(invalid))
        # Admission after validation, as tributary serve does it: a bad request is told so even when full.
        # The check and the increment have no await between them, so no other ask can slip in on the loop.
        if self.in_flight >= self.max_in_flight:
            return error_response(
                503,
                f"overloaded: {self.max_in_flight} asks in flight; retry later",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self.in_flight += 1
        try:
            report = await self.agent.ask(question, deadline)
        finally:
            self.in_flight -= 1
        return web.json_response(report, status=502 if report["status"] == "failed" else 200)

    def parse(self, body: bytes) -> tuple[str, float]:
        """The question (trimmed) and the ask's deadline in seconds (the request's, capped by the server's);
        ValueError saying what is wrong with the body."""
        try:
            fields = json.loads(body)
        except ValueError as cause:
            raise ValueError(f"invalid request body: {cause}") from cause
        if not isinstance(fields, dict):
            raise ValueError("invalid request body: expected a JSON object")
        unknown = sorted(set(fields) - ASK_FIELDS)
        if unknown:
            raise ValueError(f"invalid request body: unknown field `{unknown[0]}`, expected question or deadline_ms")
        question = fields.get("question")
        if not isinstance(question, str):
            raise ValueError("invalid request body: `question` must be a string")
        question = question.strip()
        if not question:
            raise ValueError("question: the question is empty")
        if len(question.encode()) > MAX_QUESTION_BYTES:
            raise ValueError(f"question: over the limit of {MAX_QUESTION_BYTES} bytes")
        deadline = self.agent.settings.deadline
        deadline_ms = fields.get("deadline_ms")
        if deadline_ms is not None:
            if isinstance(deadline_ms, bool) or not isinstance(deadline_ms, int) or deadline_ms < 1:
                raise ValueError("deadline_ms must be a whole number of milliseconds, at least 1")
            deadline = min(deadline, deadline_ms / 1000.0)
        return question, deadline

    async def healthz(self, _request: web.Request) -> web.Response:
        """GET /healthz: the process runs."""
        return web.json_response({"status": "ok"})


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """`{"error": message}` with `status`."""
    return web.json_response({"error": message}, status=status, headers=headers)


def listen_address(text: str) -> tuple[str, int]:
    """HOST:PORT for --listen."""
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT such as 127.0.0.1:8000, got {text!r}")
    return host, int(port)


def positive_int(text: str) -> int:
    """A whole number of at least 1, for the counts and the milliseconds."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line; argparse exits with code 2 and the reason on a bad one."""
    parser = argparse.ArgumentParser(
        description="The agent over HTTP in Python (asyncio, aiohttp, a process pool): the peer of `tributary serve`.",
        epilog="Exit codes: 0 stopped by a signal, 1 the environment failed, 2 a bad argument.",
    )
    parser.add_argument("--listen", type=listen_address, default=("127.0.0.1", 8000), metavar="HOST:PORT",
                        help="address to listen on; port 0 picks a free one (default 127.0.0.1:8000)")
    parser.add_argument("--sources", required=True, metavar="URL",
                        help="base URL of the simulated services (`tributary sources`), e.g. http://127.0.0.1:8080")
    parser.add_argument("--deadline-ms", type=positive_int, default=15000,
                        help="time allowed to a whole question, and the most a request's deadline_ms may ask")
    parser.add_argument("--per-source-timeout-ms", type=positive_int, default=5000,
                        help="time allowed to each source, inside the deadline")
    parser.add_argument("--inference-cost-ms", type=positive_int, default=300,
                        help="CPU time of one inference on one free core (calibrated at start-up)")
    parser.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1,
                        help="inference worker processes (default: the number of CPUs)")
    parser.add_argument("--max-in-flight", type=positive_int, default=None,
                        help="asks answered at once; over that, 503 with Retry-After at once (default, as tributary: "
                             "workers x (deadline - per-source timeout) / (3 sources x inference cost))")
    return parser.parse_args(argv)


def default_max_in_flight(options: argparse.Namespace) -> int:
    """tributary serve's default: what the workers can infer in the time an ask has left after its sources,
    workers x (deadline - per-source timeout) / (sources x inference cost), between 1 and 1024 (half the
    deadline when the per-source timeout is not shorter)."""
    if options.per_source_timeout_ms < options.deadline_ms:
        cpu_ms = options.deadline_ms - options.per_source_timeout_ms
    else:
        cpu_ms = options.deadline_ms / 2
    fits = options.workers * cpu_ms / (3 * options.inference_cost_ms)
    return max(1, min(1024, int(fits)))


async def check_sources(session: aiohttp.ClientSession, sources_url: str) -> None:
    """Fails at start-up, rather than on every ask, when the simulated services are not where --sources says."""
    try:
        async with asyncio.timeout(SOURCES_CHECK_TIMEOUT_SECONDS):
            async with session.get(sources_url + "/health") as response:
                if response.status != 200:
                    raise StartupError(f"{sources_url}/health answered HTTP {response.status}", EXIT_ENVIRONMENT)
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        raise StartupError(
            f"failed to reach the simulated services at {sources_url}: {type(error).__name__}: {error}\n"
            "hint: start them with `tributary sources --listen 127.0.0.1:0` and pass the URL it prints",
            EXIT_ENVIRONMENT,
        ) from error


async def serve(options: argparse.Namespace, pool: ProcessPoolExecutor, inference_units: int) -> None:
    """Starts the workers, serves until SIGINT or SIGTERM, then lets the asks in flight finish."""
    loop = asyncio.get_running_loop()
    # Start every worker process now (each first submit starts one), so the first asks do not pay for it.
    await asyncio.gather(*(loop.run_in_executor(pool, os.getpid) for _ in range(options.workers)))
    sources_url = options.sources.rstrip("/")
    max_in_flight = options.max_in_flight or default_max_in_flight(options)
    # No pool limit (aiohttp's default is 100 connections): tributary's client pools without one either.
    # Timeouts are the agent's own (asyncio.timeout), not the session's.
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)
    ) as session:
        await check_sources(session, sources_url)
        settings = AgentSettings(
            sources_url=sources_url,
            deadline=options.deadline_ms / 1000.0,
            per_source_timeout=options.per_source_timeout_ms / 1000.0,
            inference_units=inference_units,
            workers=options.workers,
        )
        service = AskService(Agent(settings, session, pool), max_in_flight)
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/v1/ask", service.ask)
        app.router.add_get("/healthz", service.healthz)
        host, port = options.listen
        try:
            listener = socket.create_server((host, port), backlog=LISTEN_BACKLOG)
        except OSError as error:
            raise StartupError(
                f"failed to listen on {host}:{port}: {error}\n"
                "hint: pick another address with --listen, or port 0 for any free port",
                EXIT_ENVIRONMENT,
            ) from error
        # The asks in flight get their deadline to finish once a stop is asked for.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=settings.deadline + 1.0)
        await runner.setup()
        await web.SockSite(runner, listener, backlog=LISTEN_BACKLOG).start()
        bound_host, bound_port = listener.getsockname()[:2]
        url = f"http://[{bound_host}]:{bound_port}" if ":" in bound_host else f"http://{bound_host}:{bound_port}"
        print(url, flush=True)
        print(
            f"serving the agent on {url}: POST /v1/ask; at most {max_in_flight} asks "
            f"at once; {options.workers} worker processes, {inference_units} work units per inference; "
            "Ctrl-C or SIGTERM stops",
            file=sys.stderr,
        )
        stop = asyncio.Event()
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signal_number, stop.set)
        await stop.wait()
        print("stopping; the asks in flight finish first", file=sys.stderr)
        await runner.cleanup()


def main(argv: list[str]) -> int:
    """Calibrates, starts the process pool, serves; the exit code."""
    options = parse_args(argv)
    # Calibrated once here, before anything runs, as tributary calibrates once per process at start-up.
    inference_units = units_for(options.inference_cost_ms, calibrate())
    # forkserver, Python 3.14's default on Linux: no worker is forked from a process already running threads.
    context = multiprocessing.get_context("forkserver")
    try:
        with ProcessPoolExecutor(max_workers=options.workers, mp_context=context) as pool:
            asyncio.run(serve(options, pool, inference_units))
    except StartupError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
