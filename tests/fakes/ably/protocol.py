"""Ably realtime protocol v5 as the fake speaks it: actions, flags, frame codecs and payload encodings.

Pure functions only; the sockets live in `server.py`. Field names and values follow the `ably` SDK 3.1.4
(`transport/websockettransport.py`, `realtime/channel.py`, `types/message.py`).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from enum import IntEnum, IntFlag, StrEnum
from typing import Any

import msgpack  # type: ignore[import-untyped]  # msgpack ships no type information

# A decoded protocol message. Untyped by nature (it is the wire); each handler reads the fields it needs.
Frame = dict[str, Any]
# What a message carries once the transport encoding is undone: text, bytes or nothing.
Payload = str | bytes | None

PROTOCOL_VERSION = "5"


class Action(IntEnum):
    HEARTBEAT = 0
    ACK = 1
    NACK = 2
    CONNECTED = 4
    DISCONNECTED = 6
    CLOSE = 7
    CLOSED = 8
    ERROR = 9
    ATTACH = 10
    ATTACHED = 11
    DETACH = 12
    DETACHED = 13
    PRESENCE = 14
    MESSAGE = 15
    SYNC = 16
    AUTH = 17


class Flag(IntFlag):
    HAS_PRESENCE = 1 << 0
    HAS_BACKLOG = 1 << 1
    RESUMED = 1 << 2
    ATTACH_RESUME = 1 << 5
    # The channel modes real Ably grants a key with full capabilities.
    PRESENCE = 1 << 16
    PUBLISH = 1 << 17
    SUBSCRIBE = 1 << 18
    PRESENCE_SUBSCRIBE = 1 << 19


DEFAULT_MODES = Flag.PRESENCE | Flag.PUBLISH | Flag.SUBSCRIBE | Flag.PRESENCE_SUBSCRIBE


class WireFormat(StrEnum):
    JSON = "json"
    MSGPACK = "msgpack"


class ProtocolError(ValueError):
    """A frame from the client that the fake cannot read."""


@dataclass(frozen=True)
class AblyError:
    code: int
    status_code: int
    message: str

    def as_wire(self) -> Frame:
        return {"code": self.code, "statusCode": self.status_code, "message": self.message}


INVALID_CREDENTIALS = AblyError(40101, 401, "Invalid credentials (rejected by the fake Ably server)")
UNKNOWN_CONNECTION = AblyError(80008, 400, "Unable to recover connection: connection key not known")


def encode_frame(frame: Frame, wire_format: WireFormat) -> str | bytes:
    """A frame as the client expects it: a JSON text frame, or a msgpack binary frame."""
    if wire_format is WireFormat.MSGPACK:
        packed: bytes = msgpack.packb(frame, use_bin_type=True)
        return packed
    return json.dumps(frame, separators=(",", ":"))


def decode_frame(raw: str | bytes, wire_format: WireFormat) -> Frame:
    """A client frame as a dict; `ProtocolError` if it is not one."""
    try:
        frame = msgpack.unpackb(raw, raw=False) if wire_format is WireFormat.MSGPACK else json.loads(raw)
    except (ValueError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"undecodable {wire_format} frame: {exc}") from exc
    if not isinstance(frame, dict) or not isinstance(frame.get("action"), int):
        raise ProtocolError(f"not a protocol message: {frame!r}")
    return frame


def payload_from_value(value: object) -> tuple[Payload, str | None]:
    """A test's publish argument as Ably stores it: objects and lists become JSON text with encoding json.

    Real Ably keeps a JSON payload as text with `encoding: "json"` in both transports; the SDK decodes it.
    """
    if value is None or isinstance(value, str | bytes):
        return value, None
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":")), "json"
    raise TypeError(f"an Ably payload is a str, bytes, dict, list or None, not {type(value).__name__}")


def payload_from_client(message: Frame, wire_format: WireFormat) -> tuple[Payload, str | None]:
    """Undo the transport encoding of a client-published message (JSON carries bytes as base64)."""
    data = message.get("data")
    encoding = message.get("encoding") or None
    if wire_format is WireFormat.JSON and isinstance(data, str) and encoding and encoding.endswith("base64"):
        data = base64.b64decode(data)
        encoding = encoding.removesuffix("base64").rstrip("/") or None
    if data is not None and not isinstance(data, str | bytes):
        raise ProtocolError(f"message data must be text or bytes on the wire, got {type(data).__name__}")
    return data, encoding


def payload_to_wire(data: Payload, encoding: str | None, wire_format: WireFormat) -> Frame:
    """The `data`/`encoding` fields of a message for one client; empty when there is no data."""
    if data is None:
        return {}
    if isinstance(data, bytes) and wire_format is WireFormat.JSON:
        data = base64.b64encode(data).decode("ascii")
        encoding = f"{encoding}/base64" if encoding else "base64"
    fields: Frame = {"data": data}
    if encoding:
        fields["encoding"] = encoding
    return fields


@dataclass(frozen=True)
class Rewind:
    """The `rewind` channel param: the last `count` messages, or those of the last `seconds`."""

    count: int | None = None
    seconds: float | None = None


_REWIND_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_REWIND_PATTERN = re.compile(r"^(\d+)([smh]?)$")


def parse_rewind(value: object) -> Rewind:
    """`"10"` -> the last 10 messages; `"120s"`, `"2m"`, `"1h"` -> a time window."""
    match = _REWIND_PATTERN.match(str(value).strip())
    if match is None:
        raise ProtocolError(f"unsupported rewind value {value!r}")
    number, unit = int(match.group(1)), match.group(2)
    if not unit:
        return Rewind(count=number)
    return Rewind(seconds=number * _REWIND_UNITS[unit])
