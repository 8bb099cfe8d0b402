"""A tiny HTTP endpoint that drives a running fake TWS from another process (e2e tests).

GET  /state                      -> the whole TwsState as JSON (accounts, quotes, orders, cancels)
GET  /served                     -> {"served": [ServedRequest as JSON, ...]}: every request message
                                    with when it arrived and when its answer was written
POST /state  {"quotes": {...}, "round_trip_seconds": 0.005, "position_lag_seconds": 1.0, ...}  -> {}
             (the keys TwsState.from_json reads; the ones given replace the current values)
POST /drop                       -> {}  (closes every client connection)
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.tws.account import TwsState
from tests.fakes.tws.threaded import FakeTwsThread

JsonObject = dict[str, Any]
_REPLACEABLE = (
    "accounts",
    "quotes",
    "open_orders",
    "round_trip_seconds",
    "fill_delay_seconds",
    "partial_fills",
    "rejections",
    "confirm_cancels",
    "drop_on_order",
    "unknown_symbols",
    "market_data_lines",
    "snapshot_seconds",
    "snapshot_data_seconds",
    "fractional_orders",
    "max_messages_per_second",
    "max_connections",
    "peak_connections",
    "most_in_flight",
    "position_copies",
    "position_lag_seconds",
    "exchange_rates",
    "execution_days",
)


def apply_update(state: TwsState, body: JsonObject) -> None:
    """Replace the state's fields named in `body` with their parsed values."""
    parsed = TwsState.from_json(body)
    for key in _REPLACEABLE:
        if key in body:
            setattr(state, key, getattr(parsed, key))


class ControlServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tws: FakeTwsThread, host: str, port: int) -> None:
        super().__init__((host, port), _ControlHandler)
        self.tws = tws
        self._thread = threading.Thread(target=self.serve_forever, name="fake-tws-control", daemon=True)

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

    def do_GET(self) -> None:
        if self.path == "/served":
            fake = self.server.tws.server
            self._reply(
                HTTPStatus.OK, {"served": self.server.tws.call(lambda _: [asdict(r) for r in fake.served])}
            )
            return
        if self.path != "/state":
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no route GET {self.path}"})
            return
        self._reply(HTTPStatus.OK, self.server.tws.call(lambda s: s.to_json()))

    def do_POST(self) -> None:
        try:
            body = self._read_body()
        except ValueError as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        if self.path == "/state":
            self.server.tws.call(lambda s: apply_update(s, body))
        elif self.path == "/drop":
            self.server.tws.drop_connections()
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no route POST {self.path}"})
            return
        self._reply(HTTPStatus.OK, {})

    def _read_body(self) -> JsonObject:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else {}
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
