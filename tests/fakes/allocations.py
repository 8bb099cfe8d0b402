"""A real HTTP allocation API on 127.0.0.1 for tests: serves each channel's allocations, or faults.

In-process: `with AllocationServer() as api: api.set_weights("chan", {"AAA": 0.6, "BBB": 0.4})`.
Standalone (for tests that run services as processes):
`python -m tests.fakes.allocations --port N --file allocations.json` serves `{channel: {symbol: weight}}`.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    delay: float = 0.0


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    received_at: float = 0.0  # wall clock: the request arrived (bench/latency.py)
    replied_at: float = 0.0  # and its reply was written (its delay included)


def allocation_body(weights: dict[str, float], name: str = "test-strategy") -> dict[str, Any]:
    """The product brief's response shape for these weights."""
    return {
        "status": "success",
        "data": {
            "allocations": [{"symbol": s, "allocation": w} for s, w in weights.items()],
            "name": name,
            "strategy_long_name": name.replace("-", " ").title(),
            "last_rebalance_on": "2026-11-20",
            "as_of": "2026-11-20",
        },
    }


@dataclass
class AllocationServer:
    """A threaded HTTP server; replies are set per channel and every request is recorded."""

    port: int = 0
    replies: dict[str, Reply] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorded = Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, time.time())
                owner.requests.append(recorded)
                parts = self.path.strip("/").split("/")
                channel = parts[-2] if len(parts) >= 2 and parts[-1] == "allocations" else None
                reply = owner.replies.get(channel or "", Reply(404, b'{"status": "error"}'))
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                recorded.replied_at = time.time()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def start(self) -> AllocationServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> AllocationServer:
        return self.start()

    def __exit__(
        self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
    ) -> None:
        self.stop()

    def set_weights(self, channel: str, weights: dict[str, float]) -> None:
        self.set_json(channel, allocation_body(weights))

    def set_json(self, channel: str, body: object, status: int = 200, delay: float = 0.0) -> None:
        self.replies[channel] = Reply(status, json.dumps(body).encode(), delay)

    def set_raw(self, channel: str, body: bytes, status: int = 200, delay: float = 0.0) -> None:
        self.replies[channel] = Reply(status, body, delay)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Serve allocations from a JSON file {channel: {symbol: weight}}."
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--file", type=Path, required=True)
    args = parser.parse_args()
    server = AllocationServer(port=args.port)
    for channel, weights in json.loads(args.file.read_text()).items():
        server.set_weights(channel, weights)
    print(json.dumps({"port": server.port}), flush=True)
    server._server.serve_forever()


if __name__ == "__main__":
    main()
