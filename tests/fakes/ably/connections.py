"""Client connections of the fake: a connection outlives its sockets so that a client can resume it."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from tests.fakes.ably.history import StoredMessage
from tests.fakes.ably.protocol import Action, Frame, WireFormat, encode_frame


class Session:
    """One WebSocket of a connection. Frames leave in the order they were queued, through one writer.

    Queueing is synchronous, so a handler can send ATTACHED and its backlog with no publish in between.
    """

    def __init__(self, websocket: ServerConnection, wire_format: WireFormat) -> None:
        self.websocket = websocket
        self.wire_format = wire_format
        # None asks the writer to close the socket once everything before it has gone out.
        self._outbox: asyncio.Queue[Frame | None] = asyncio.Queue()

    def send(self, frame: Frame) -> None:
        self._outbox.put_nowait(frame)

    def send_message(self, message: StoredMessage) -> None:
        self.send(message.to_frame(self.wire_format))

    def close_when_sent(self) -> None:
        self._outbox.put_nowait(None)

    def abort(self) -> None:
        """Cut the TCP connection without a WebSocket close or an Ably CLOSE, as a network failure would."""
        self.websocket.transport.abort()

    async def run_writer(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while (frame := await self._outbox.get()) is not None:
                await self.websocket.send(encode_frame(frame, self.wire_format))
            await self.websocket.close()

    async def run_heartbeats(self, interval_s: float) -> None:
        """Real Ably sends HEARTBEAT when idle; the client drops a connection silent for maxIdleInterval."""
        while True:
            await asyncio.sleep(interval_s)
            self.send({"action": int(Action.HEARTBEAT)})


@dataclass
class ClientConnection:
    """An Ably connection: its id and key, the channels attached on its live socket, its last msgSerial."""

    id: str
    key: str
    session: Session | None = None
    attached: set[str] = field(default_factory=set)
    # Channels attached when the previous socket died: a re-ATTACH with ATTACH_RESUME is answered RESUMED.
    resumable: set[str] = field(default_factory=set)
    last_msg_serial: int = -1

    def take_over(self, session: Session) -> None:
        """Move the connection onto a new socket (a first connect or a resume)."""
        if self.session is not None:
            self.session.abort()
        self.session = session
        self.resumable |= self.attached
        # Until the client re-attaches, new messages wait in the history; the re-ATTACH replays them.
        self.attached = set()

    def release(self, session: Session) -> None:
        if self.session is session:
            self.session = None
