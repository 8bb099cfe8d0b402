"""What the fake knows and how it answers: connections, channel history and the client's protocol messages.

No I/O here: every method is synchronous and only queues frames on sessions, so the replies to one frame
(ATTACHED and its backlog, say) leave in order with nothing published in between. `server.py` owns the
sockets.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import structlog

from tests.fakes.ably.connections import ClientConnection, Session
from tests.fakes.ably.history import ChannelHistory, StoredMessage
from tests.fakes.ably.protocol import (
    DEFAULT_MODES,
    UNKNOWN_CONNECTION,
    AblyError,
    Action,
    Flag,
    Frame,
    ProtocolError,
    parse_rewind,
    payload_from_client,
    payload_from_value,
)

log = structlog.get_logger(__name__)

SERVER_CONNECTION_ID = "fake-ably-server"
CONNECTION_STATE_TTL_MS = 120_000

FrameHandler = Callable[[ClientConnection, Session, Frame], None]


class RealtimeHub:
    """Connections by key, the history of every channel, and one handler per client action."""

    def __init__(self, *, clock: Callable[[], float], max_idle_interval_ms: int) -> None:
        self._clock = clock
        self._max_idle_interval_ms = max_idle_interval_ms
        self._epoch = secrets.token_hex(4)
        self.history = ChannelHistory(self._epoch)
        self._connections: dict[str, ClientConnection] = {}
        self._connection_count = 0
        self._publish_count = 0
        self._handlers: dict[int, FrameHandler] = {
            Action.HEARTBEAT: self._on_heartbeat,
            Action.CLOSE: self._on_close,
            Action.ATTACH: self._on_attach,
            Action.DETACH: self._on_detach,
            Action.MESSAGE: self._on_message,
        }

    # -- connections -----------------------------------------------------------------------------------

    def open_connection(self, resume_key: str | None) -> tuple[ClientConnection, AblyError | None]:
        """The connection a resume key names, or a new one (with error 80008 if resuming was asked)."""
        if resume_key is not None and resume_key in self._connections:
            return self._connections[resume_key], None
        self._connection_count += 1
        connection_id = f"conn-{self._epoch}-{self._connection_count}"
        connection = ClientConnection(id=connection_id, key=f"{connection_id}!{secrets.token_hex(6)}")
        self._connections[connection.key] = connection
        return connection, UNKNOWN_CONNECTION if resume_key is not None else None

    def connected_frame(self, connection: ClientConnection, error: AblyError | None) -> Frame:
        frame: Frame = {
            "action": int(Action.CONNECTED),
            "connectionId": connection.id,
            "connectionKey": connection.key,
            "connectionDetails": {
                "connectionKey": connection.key,
                "clientId": None,
                "maxIdleInterval": self._max_idle_interval_ms,
                "connectionStateTtl": CONNECTION_STATE_TTL_MS,
                "serverId": "fake-ably",
            },
        }
        if error is not None:
            frame["error"] = error.as_wire()
        return frame

    def live_sessions(self) -> list[Session]:
        return [c.session for c in self._connections.values() if c.session is not None]

    def forget_connections(self) -> None:
        """After a restart no connection can be resumed: clients get new ids."""
        self._connections.clear()

    @property
    def connected_clients(self) -> list[str]:
        return [c.id for c in self._connections.values() if c.session is not None]

    @property
    def attached_channels(self) -> frozenset[str]:
        return frozenset(
            channel for c in self._connections.values() if c.session is not None for channel in c.attached
        )

    # -- messages --------------------------------------------------------------------------------------

    def publish(self, channel: str, name: str | None, data: object) -> StoredMessage:
        """Store and deliver a message published by someone other than the connected clients."""
        payload, encoding = payload_from_value(data)
        self._publish_count += 1
        stored = self.history.append(
            channel,
            protocol_id=f"{self._epoch}-{self._publish_count}",
            index=0,
            name=name,
            data=payload,
            encoding=encoding,
            timestamp_ms=self._now_ms(),
            connection_id=SERVER_CONNECTION_ID,
        )
        self._deliver(stored)
        return stored

    def handle(self, connection: ClientConnection, session: Session, frame: Frame) -> None:
        handler = self._handlers.get(frame["action"])
        if handler is None:
            log.warning("fake_ably.unhandled_action", action=frame["action"], connection_id=connection.id)
            return
        handler(connection, session, frame)

    # -- one handler per client action -----------------------------------------------------------------

    def _on_heartbeat(self, connection: ClientConnection, session: Session, frame: Frame) -> None:
        reply: Frame = {"action": int(Action.HEARTBEAT)}
        if frame.get("id") is not None:
            reply["id"] = frame["id"]
        session.send(reply)

    def _on_close(self, connection: ClientConnection, session: Session, frame: Frame) -> None:
        self._connections.pop(connection.key, None)
        connection.attached.clear()
        session.send({"action": int(Action.CLOSED)})
        session.close_when_sent()

    def _on_attach(self, connection: ClientConnection, session: Session, frame: Frame) -> None:
        channel = str(frame["channel"])
        flags = DEFAULT_MODES
        if int(frame.get("flags") or 0) & Flag.ATTACH_RESUME and channel in connection.resumable:
            flags |= Flag.RESUMED
        connection.resumable.discard(channel)
        backlog = self._backlog(channel, frame)
        if backlog:
            flags |= Flag.HAS_BACKLOG
        attached: Frame = {
            "action": int(Action.ATTACHED),
            "channel": channel,
            "flags": int(flags),
            "channelSerial": self.history.latest_channel_serial(channel),
        }
        if frame.get("params"):
            attached["params"] = frame["params"]
        session.send(attached)
        for message in backlog:
            session.send_message(message)
        connection.attached.add(channel)

    def _backlog(self, channel: str, frame: Frame) -> list[StoredMessage]:
        """What an ATTACH asks to be replayed: what followed its channelSerial, else its rewind window."""
        channel_serial = frame.get("channelSerial")
        if isinstance(channel_serial, str):
            missed = self.history.after(channel, channel_serial)
            if missed is not None:
                return missed
        params = frame.get("params") or {}
        if "rewind" not in params:
            return []
        try:
            rewind = parse_rewind(params["rewind"])
        except ProtocolError as exc:
            log.warning("fake_ably.bad_rewind", channel=channel, error=str(exc))
            return []
        return self.history.rewind(channel, rewind, self._now_ms())

    def _on_detach(self, connection: ClientConnection, session: Session, frame: Frame) -> None:
        channel = str(frame["channel"])
        connection.attached.discard(channel)
        session.send({"action": int(Action.DETACHED), "channel": channel})

    def _on_message(self, connection: ClientConnection, session: Session, frame: Frame) -> None:
        msg_serial = int(frame["msgSerial"])
        ack: Frame = {"msgSerial": msg_serial, "count": 1}
        if msg_serial <= connection.last_msg_serial:
            # A resumed client re-sends what it had no ACK for; Ably acknowledges without publishing twice.
            session.send({"action": int(Action.ACK), **ack})
            return
        messages: list[Frame] = frame.get("messages") or []
        try:
            payloads = [payload_from_client(message, session.wire_format) for message in messages]
        except ProtocolError as exc:
            session.send(
                {"action": int(Action.NACK), **ack, "error": AblyError(40000, 400, str(exc)).as_wire()}
            )
            return
        connection.last_msg_serial = msg_serial
        session.send({"action": int(Action.ACK), **ack})
        now_ms = self._now_ms()
        for index, ((data, encoding), message) in enumerate(zip(payloads, messages, strict=True)):
            stored = self.history.append(
                str(frame["channel"]),
                protocol_id=f"{connection.id}:{msg_serial}",
                index=index,
                name=message.get("name"),
                data=data,
                encoding=encoding,
                timestamp_ms=now_ms,
                connection_id=connection.id,
            )
            self._deliver(stored)

    def _deliver(self, message: StoredMessage) -> None:
        for connection in self._connections.values():
            if connection.session is not None and message.channel in connection.attached:
                connection.session.send_message(message)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)
