"""A loopback Ably realtime server for the real `ably` SDK: WebSocket protocol v5, JSON and msgpack.

Use it from an async test (same event loop):

    async with FakeAblyServer() as ably:
        client = AblyRealtime(**ably.client_options())
        ...
        message_id = ably.publish("rebalance-channel", "trigger", {"exec": "rebalance"})

The `*_threadsafe` methods do the same from another thread while the server runs in its own loop
(see `FakeAblyThread` and `python -m tests.fakes.ably`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, ParamSpec, Self, TypeVar
from urllib.parse import parse_qs, urlsplit

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.fakes.ably.connections import ClientConnection, Session
from tests.fakes.ably.history import StoredMessage
from tests.fakes.ably.hub import RealtimeHub
from tests.fakes.ably.protocol import (
    INVALID_CREDENTIALS,
    AblyError,
    Action,
    ProtocolError,
    WireFormat,
    decode_frame,
    encode_frame,
)

log = structlog.get_logger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

THREADSAFE_TIMEOUT_S = 10.0


class FakeAblyServer:
    """The fake itself: listens on `host` (an ephemeral port unless `port` is given) once started.

    `clock` returns seconds since the epoch; tests inject one to place messages in the past for rewind.
    With `max_idle_interval_ms` > 0 the server promises the client traffic at least that often and keeps
    the promise with HEARTBEATs, unless `send_heartbeats` is False (a silent server, to test idle drops).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        max_idle_interval_ms: int = 15_000,
        send_heartbeats: bool = True,
    ) -> None:
        self.host = host
        self._port = port
        self._max_idle_interval_ms = max_idle_interval_ms
        self._send_heartbeats = send_heartbeats
        self._hub = RealtimeHub(clock=clock, max_idle_interval_ms=max_idle_interval_ms)
        self._rejecting = False
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen; on a restart, on the port of the first start."""
        self._loop = asyncio.get_running_loop()
        self._server = await serve(self._serve, self.host, self._port, ping_interval=None)
        self._port = next(iter(self._server.sockets)).getsockname()[1]
        log.info("fake_ably.listening", host=self.host, port=self._port)

    async def stop(self) -> None:
        """Stop listening and cut every socket, as a crashed server would."""
        if self._server is None:
            return
        self._server.close(close_connections=False)
        self.drop_connections()
        await self._server.wait_closed()
        self._server = None

    async def restart(self) -> None:
        """Stop and start on the same port. History survives; connections do not (new ids, no resume)."""
        await self.stop()
        self._hub.forget_connections()
        await self.start()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self._port}"

    def client_options(self, *, use_binary_protocol: bool = True) -> dict[str, Any]:
        """Keyword arguments for `AblyRealtime` that point the real SDK at this server, with short timers."""
        return {
            "key": "fakeapp.fakekey:fakesecret",
            "endpoint": self.endpoint,
            "tls": False,
            "use_binary_protocol": use_binary_protocol,
            "realtime_request_timeout": 1000,
            "disconnected_retry_timeout": 200,
            "fallback_hosts": [],
        }

    # -- test controls (call from the server's event loop) ---------------------------------------------

    def publish(self, channel: str, name: str | None, data: object = None) -> str:
        """Publish as another Ably client would; returns the message id the subscribers see.

        `data`: a dict or list (sent as JSON text with encoding json, as real Ably does), a str, bytes
        or None (a message without data).
        """
        return self._hub.publish(channel, name, data).id

    def drop_connections(self) -> None:
        """Cut every socket without CLOSE; the connections stay resumable."""
        for session in self._hub.live_sessions():
            session.abort()

    def reject_key(self, reject: bool = True) -> None:
        """While set, new connections get ERROR 40101 (statusCode 401) and the SDK goes FAILED."""
        self._rejecting = reject

    def history(self, channel: str) -> list[StoredMessage]:
        return self._hub.history.messages(channel)

    @property
    def connected_clients(self) -> list[str]:
        """Ids of the connections that have a live socket."""
        return self._hub.connected_clients

    @property
    def attached_channels(self) -> frozenset[str]:
        """Channels attached on some live socket."""
        return self._hub.attached_channels

    # -- the same controls from another thread ---------------------------------------------------------

    def publish_threadsafe(self, channel: str, name: str | None, data: object = None) -> str:
        return self._call_threadsafe(self.publish, channel, name, data)

    def drop_connections_threadsafe(self) -> None:
        self._call_threadsafe(self.drop_connections)

    def reject_key_threadsafe(self, reject: bool = True) -> None:
        self._call_threadsafe(self.reject_key, reject)

    def history_threadsafe(self, channel: str) -> list[StoredMessage]:
        return self._call_threadsafe(self.history, channel)

    def connected_clients_threadsafe(self) -> list[str]:
        return self._call_threadsafe(lambda: self.connected_clients)

    def attached_channels_threadsafe(self) -> frozenset[str]:
        return self._call_threadsafe(lambda: self.attached_channels)

    def restart_threadsafe(self) -> None:
        loop = self._require_loop()
        asyncio.run_coroutine_threadsafe(self.restart(), loop).result(THREADSAFE_TIMEOUT_S)

    def _call_threadsafe(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        async def call() -> T:
            return function(*args, **kwargs)

        loop = self._require_loop()
        return asyncio.run_coroutine_threadsafe(call(), loop).result(THREADSAFE_TIMEOUT_S)

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the fake Ably server has not been started")
        return self._loop

    # -- one socket ------------------------------------------------------------------------------------

    async def _serve(self, websocket: ServerConnection) -> None:
        assert websocket.request is not None  # set once the handshake is done, before the handler runs
        query = {
            name: values[-1] for name, values in parse_qs(urlsplit(websocket.request.path).query).items()
        }
        wire_format = WireFormat.MSGPACK if query.get("format") == "msgpack" else WireFormat.JSON
        if self._rejecting or not query.get("key"):
            await self._refuse(websocket, wire_format, INVALID_CREDENTIALS)
            return
        connection, error = self._hub.open_connection(query.get("resume"))
        session = Session(websocket, wire_format)
        connection.take_over(session)
        session.send(self._hub.connected_frame(connection, error))
        resumed = query.get("resume") is not None and error is None
        log.info("fake_ably.connected", connection_id=connection.id, format=wire_format, resumed=resumed)
        tasks = [asyncio.create_task(session.run_writer())]
        if self._max_idle_interval_ms > 0 and self._send_heartbeats:
            tasks.append(asyncio.create_task(session.run_heartbeats(self._max_idle_interval_ms / 2000)))
        try:
            await self._read_frames(connection, session)
        finally:
            connection.release(session)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _refuse(self, websocket: ServerConnection, wire_format: WireFormat, error: AblyError) -> None:
        """Send ERROR and let the client close: closing first races the SDK into DISCONNECTED and a retry."""
        with contextlib.suppress(ConnectionClosed):
            error_frame = {"action": int(Action.ERROR), "error": error.as_wire()}
            await websocket.send(encode_frame(error_frame, wire_format))
        try:
            await asyncio.wait_for(websocket.wait_closed(), timeout=2.0)
        except TimeoutError:
            websocket.transport.abort()
        log.info("fake_ably.refused", code=error.code)

    async def _read_frames(self, connection: ClientConnection, session: Session) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in session.websocket:
                try:
                    frame = decode_frame(raw, session.wire_format)
                except ProtocolError as exc:
                    log.warning("fake_ably.bad_frame", connection_id=connection.id, error=str(exc))
                    continue
                self._hub.handle(connection, session, frame)
