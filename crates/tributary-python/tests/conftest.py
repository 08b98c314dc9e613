"""Fixtures: an agent on the simulated services (in-process, no network), and a small HTTP service of our own on
loopback for sources given from Python."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import AsyncIterator, Iterator
from urllib.parse import parse_qs, urlparse

import pytest

import tributary

# Cheap simulated inference: the tests check behaviour, not speed.
FAST = {"inference_cost": "20ms", "workers": 2}


@pytest.fixture
async def agent() -> AsyncIterator[tributary.Agent]:
    async with tributary.Agent(**FAST) as agent:
        yield agent


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urlparse(self.path)
        query = parse_qs(url.query).get("q", [""])[0]
        if url.path == "/news":
            body = {"articles": [{"title": f"Rivers and {query}", "summary": f"Notes on {query} from a test."}]}
        elif url.path == "/kb/search":
            body = {"results": [{"title": "The GIL", "text": "The GIL lets one thread run Python at a time."}]}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def service() -> Iterator[str]:
    """The base URL of a news and knowledge-base service on 127.0.0.1 (a free port)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
