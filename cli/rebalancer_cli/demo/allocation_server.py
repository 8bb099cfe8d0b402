"""A real HTTP allocation API on 127.0.0.1 serving responses from a local JSON file (channel -> body).

The demo's processor fetches `{base_url}/{channel}/allocations` from it over a socket exactly as it
would from the production API.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class FileAllocationServer:
    """Serves `GET /api/v1/{channel}/allocations` from a dict loaded from a file; 404 otherwise."""

    def __init__(self, responses: dict[str, Any], host: str = "127.0.0.1", port: int = 0) -> None:
        bodies = {channel: json.dumps(body).encode() for channel, body in responses.items()}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                body = bodies.get(parts[-2]) if len(parts) >= 2 and parts[-1] == "allocations" else None
                self.send_response(200 if body is not None else 404)
                payload = body if body is not None else b'{"status": "error", "message": "unknown channel"}'
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @classmethod
    def from_file(cls, path: Path) -> FileAllocationServer:
        """A server for the responses in a JSON file `{channel: response body}`."""
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return cls(data)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/api/v1"

    def start(self) -> FileAllocationServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
