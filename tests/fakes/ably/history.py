"""Per-channel message history: what rewind and channel-serial continuity replay from."""

from __future__ import annotations

from dataclasses import dataclass

from tests.fakes.ably.protocol import Action, Frame, Payload, Rewind, WireFormat, payload_to_wire


@dataclass(frozen=True)
class StoredMessage:
    """One message as published on a channel, with the ids and serial it was delivered under."""

    channel: str
    serial: int
    channel_serial: str
    protocol_id: str
    index: int
    name: str | None
    data: Payload
    encoding: str | None
    timestamp_ms: int
    connection_id: str

    @property
    def id(self) -> str:
        """Ably's rule: a message without its own id is `<protocol message id>:<index>`."""
        return f"{self.protocol_id}:{self.index}"

    def to_frame(self, wire_format: WireFormat) -> Frame:
        """The MESSAGE protocol frame that delivers this message alone."""
        message: Frame = payload_to_wire(self.data, self.encoding, wire_format)
        if self.name is not None:
            message["name"] = self.name
        if self.index != 0:
            # Delivered alone, the index would be recomputed as 0; an explicit id keeps it stable.
            message["id"] = self.id
        return {
            "action": int(Action.MESSAGE),
            "channel": self.channel,
            "id": self.protocol_id,
            "connectionId": self.connection_id,
            "timestamp": self.timestamp_ms,
            "channelSerial": self.channel_serial,
            "messages": [message],
        }


class ChannelHistory:
    """Every message of every channel, in order. Serials carry an epoch so a stale one is never trusted."""

    def __init__(self, epoch: str) -> None:
        self._epoch = epoch
        self._channels: dict[str, list[StoredMessage]] = {}

    def append(
        self,
        channel: str,
        *,
        protocol_id: str,
        index: int,
        name: str | None,
        data: Payload,
        encoding: str | None,
        timestamp_ms: int,
        connection_id: str,
    ) -> StoredMessage:
        messages = self._channels.setdefault(channel, [])
        serial = len(messages) + 1
        stored = StoredMessage(
            channel=channel,
            serial=serial,
            channel_serial=self.channel_serial(serial),
            protocol_id=protocol_id,
            index=index,
            name=name,
            data=data,
            encoding=encoding,
            timestamp_ms=timestamp_ms,
            connection_id=connection_id,
        )
        messages.append(stored)
        return stored

    def messages(self, channel: str) -> list[StoredMessage]:
        return list(self._channels.get(channel, ()))

    def channel_serial(self, serial: int) -> str:
        return f"{self._epoch}:{serial}"

    def latest_channel_serial(self, channel: str) -> str:
        """The serial an ATTACHED reports: that of the newest message, or `<epoch>:0` for none."""
        return self.channel_serial(len(self._channels.get(channel, ())))

    def after(self, channel: str, channel_serial: str) -> list[StoredMessage] | None:
        """Messages newer than `channel_serial`; None when the serial is not one this history issued."""
        epoch, _, number = channel_serial.rpartition(":")
        if epoch != self._epoch or not number.isdigit():
            return None
        return self.messages(channel)[int(number) :]

    def rewind(self, channel: str, rewind: Rewind, now_ms: int) -> list[StoredMessage]:
        messages = self.messages(channel)
        if rewind.count is not None:
            return messages[-rewind.count :] if rewind.count else []
        oldest_ms = now_ms - (rewind.seconds or 0.0) * 1000
        return [message for message in messages if message.timestamp_ms >= oldest_ms]
