"""A local HTTP receiver of apprise's `json://` notifications: records each POST, or answers 500.

`with NotifyReceiver() as receiver:` serves on 127.0.0.1 (a free port, or the one given, so a test
can start it *after* the notifier found it down); `receiver.url("hook")` is the apprise URL;
`receiver.messages` the JSON bodies received (apprise's json plugin sends `title`, `message`, ...);
`receiver.status = 500` makes it refuse every message (still recorded in `refused`);
`NotifyReceiver(hang=True)` accepts each POST and answers only once `receiver.release` is set
(`receiver.arrived` is set when the first POST came in): a receiver that hangs. `authorizations`
holds each request's Authorization header.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


def free_port() -> int:
    """A port nothing listens on (bound and released: connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class NotifyReceiver:
    """A threaded HTTP server recording every notification posted to it."""

    port: int = 0
    status: int = 200
    messages: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    hang: bool = False

    def __post_init__(self) -> None:
        owner = self
        self._lock = threading.Lock()
        self.arrived = threading.Event()
        self.release = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if owner.hang:
                    owner.arrived.set()
                    owner.release.wait(timeout=120)
                with owner._lock:
                    owner.authorizations.append(self.headers.get("authorization"))
                    (owner.messages if owner.status < 300 else owner.refused).append(body)
                    owner.paths.append(self.path)
                self.send_response(owner.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str = "hook") -> str:
        """The apprise URL of this receiver."""
        return f"json://127.0.0.1:{self.port}/{path}"

    def titles(self) -> list[str]:
        with self._lock:
            return [str(m.get("title")) for m in self.messages]

    def __enter__(self) -> NotifyReceiver:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
