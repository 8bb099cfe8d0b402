"""A tiny HTTP endpoint that drives a running fake from another process (e2e tests).

    POST /publish     {"channel": "c", "name": "trigger", "data": {...}}  -> {"id": "<message id>"}
    POST /drop                                                            -> {}
    POST /restart                                                         -> {}
    POST /reject-key  {"reject": true}                                    -> {}
    GET  /history?channel=c                                               -> {"messages": [...]}
    GET  /status           -> {"port": N, "connected_clients": [...], "attached_channels": [...]}

It serves from a thread of its own and reaches the server's loop through the `*_threadsafe` methods.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.ably.history import StoredMessage
from tests.fakes.ably.server import FakeAblyServer

JsonObject = dict[str, Any]


def _message_as_json(message: StoredMessage) -> JsonObject:
    data = message.data.decode("utf-8", "replace") if isinstance(message.data, bytes) else message.data
    return {
        "id": message.id,
        "name": message.name,
        "data": data,
        "encoding": message.encoding,
        "timestamp": message.timestamp_ms,
        "channelSerial": message.channel_serial,
    }


class ControlServer(ThreadingHTTPServer):
    """The HTTP server, holding the fake it controls."""

    daemon_threads = True

    def __init__(self, fake: FakeAblyServer, host: str, port: int) -> None:
        super().__init__((host, port), _ControlHandler)
        self.fake = fake
        self._thread = threading.Thread(target=self.serve_forever, name="fake-ably-control", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join()


class _ControlHandler(BaseHTTPRequestHandler):
    server: ControlServer

    def do_POST(self) -> None:
        routes: dict[str, Callable[[JsonObject], JsonObject]] = {
            "/publish": self._publish,
            "/drop": self._drop,
            "/restart": self._restart,
            "/reject-key": self._reject_key,
        }
        route = routes.get(urlsplit(self.path).path)
        if route is None:
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no route POST {self.path}"})
            return
        try:
            body = self._read_body()
            self._reply(HTTPStatus.OK, route(body))
        except (ValueError, TypeError, KeyError) as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": str(exc)})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        fake = self.server.fake
        if url.path == "/status":
            self._reply(
                HTTPStatus.OK,
                {
                    "port": fake.port,
                    "connected_clients": fake.connected_clients_threadsafe(),
                    "attached_channels": sorted(fake.attached_channels_threadsafe()),
                },
            )
        elif url.path == "/history":
            channel = parse_qs(url.query).get("channel", [""])[-1]
            messages = [_message_as_json(m) for m in fake.history_threadsafe(channel)]
            self._reply(HTTPStatus.OK, {"messages": messages})
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no route GET {self.path}"})

    def _publish(self, body: JsonObject) -> JsonObject:
        fake = self.server.fake
        message_id = fake.publish_threadsafe(str(body["channel"]), body.get("name"), body.get("data"))
        return {"id": message_id}

    def _drop(self, body: JsonObject) -> JsonObject:
        self.server.fake.drop_connections_threadsafe()
        return {}

    def _restart(self, body: JsonObject) -> JsonObject:
        self.server.fake.restart_threadsafe()
        return {}

    def _reject_key(self, body: JsonObject) -> JsonObject:
        self.server.fake.reject_key_threadsafe(bool(body.get("reject", True)))
        return {}

    def _read_body(self) -> JsonObject:
        length = int(self.headers.get("Content-Length") or 0)
        if length == 0:
            return {}
        body = json.loads(self.rfile.read(length))
        if not isinstance(body, dict):
            raise ValueError("the request body must be a JSON object")
        return body

    def _reply(self, status: HTTPStatus, body: JsonObject) -> None:
        encoded = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        self.wfile.write(encoded)

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet: the default writes every request to stderr.
        return
