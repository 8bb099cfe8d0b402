"""The Ably side of the event broker: channel subscriptions through the real `ably` SDK, behind `Subscriber`.

What the SDK does for us: it reconnects after a dropped socket and resumes the connection, and
re-attaches each channel from its last channel serial, so a short outage loses nothing and repeats
nothing. What we add: every connection and channel state change is logged; the first attach of each
channel asks for `rewind` (the catch-up window) so a restarted event broker receives what was published
while it was down; attaching waits for the connection first and has a timeout, because the SDK
never settles an attach that was started when the key is rejected; a FAILED connection (the SDK
does not leave that state by itself) is reported to the service, which stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import structlog
from ably import AblyRealtime  # type: ignore[import-untyped]  # the SDK ships no type information
from ably.util.exceptions import AblyException  # type: ignore[import-untyped]

from event_broker.errors import AblyConnectionFailedError
from event_broker.intake import ReceivedMessage

log = structlog.get_logger(__name__)

MessageSink = Callable[[ReceivedMessage], None]

ATTACH_RETRY_PAUSE_SECONDS = 1.0
# The error Ably gives on reconnecting when the old connection could not be resumed.
UNABLE_TO_RECOVER_CONNECTION = 80008
_QUIET_STATES = {"connecting", "connected", "closing", "closed", "initialized"}


class Subscriber(Protocol):
    """A source of channel messages (the event broker's one dependency on Ably)."""

    @property
    def state(self) -> str:
        """The connection state: connecting, connected, disconnected, suspended, failed, closed..."""
        ...

    def channel_states(self) -> dict[str, str]:
        """The state of each subscribed channel."""
        ...

    async def connect(self) -> None:
        """Return once connected; raise `AblyConnectionFailedError` if the connection fails."""
        ...

    async def subscribe(self, channel: str, deliver: MessageSink) -> None:
        """Attach to `channel` and hand each message to `deliver`, in order."""
        ...

    async def wait_failed(self) -> AblyConnectionFailedError:
        """Return (never raise) the error once the connection has failed for good."""
        ...

    async def close(self) -> None:
        """Close the connection; no message is delivered afterwards."""
        ...


def _reason_fields(reason: Any) -> dict[str, Any]:
    if reason is None:
        return {}
    return {
        "reason_code": getattr(reason, "code", None),
        "reason_status": getattr(reason, "status_code", None),
        "reason": getattr(reason, "message", str(reason)),
    }


def _failure_of(reason: Any) -> AblyConnectionFailedError:
    fields = _reason_fields(reason)
    return AblyConnectionFailedError(
        fields.get("reason_code"), fields.get("reason_status"), str(fields.get("reason") or "no reason given")
    )


class _ChannelWatch:
    """Listeners of one channel. The SDK accepts only functions and methods as listeners."""

    def __init__(self, name: str, deliver: MessageSink) -> None:
        self.name = name
        self._deliver = deliver
        self.attached_once = False

    def on_message(self, message: Any) -> None:
        data = message.data
        if isinstance(data, bytearray):
            data = bytes(data)  # the decoder reads bytes as UTF-8 JSON text
        received = ReceivedMessage(
            channel=self.name,
            name=message.name,
            data=data,
            message_id=message.id,
            timestamp_ms=message.timestamp,
        )
        try:
            self._deliver(received)
        except Exception:
            log.exception("ably message could not be accepted", channel=self.name, ably_message_id=message.id)

    def on_state_change(self, change: Any) -> None:
        current, previous = str(change.current.value), str(change.previous.value)
        fields = {"channel": self.name, "previous": previous, "state": current, "resumed": change.resumed}
        fields.update(_reason_fields(change.reason))
        if current == "attached" and self.attached_once and not change.resumed:
            log.warning(
                "channel re-attached without continuity: Ably could not resume it, so messages published "
                "meanwhile may be missing",
                **fields,
            )
        elif current in ("suspended", "failed"):
            log.warning("channel state changed", **fields)
        else:
            log.info("channel state changed", **fields)
        if current == "attached":
            self.attached_once = True


class AblySubscriber:
    """`Subscriber` over the real SDK (`AblyRealtime`), created inside the running event loop."""

    def __init__(
        self,
        api_key: str,
        client_options: Mapping[str, Any],
        *,
        rewind: str | None,
        attach_timeout_seconds: float = 15.0,
        close_timeout_seconds: float = 5.0,
    ) -> None:
        self._api_key = api_key
        self._options = dict(client_options)
        self._rewind = rewind
        self._attach_timeout = attach_timeout_seconds
        self._close_timeout = close_timeout_seconds
        self._client: Any = None
        self._channels: dict[str, Any] = {}
        self._settled = asyncio.Event()  # the first CONNECTED or FAILED
        self._failed = asyncio.Event()
        self._failure: AblyConnectionFailedError | None = None

    @property
    def state(self) -> str:
        if self._client is None:
            return "initialized"
        return str(self._client.connection.state.value)

    @property
    def connection_id(self) -> str | None:
        if self._client is None:
            return None
        # The SDK's Connection has no `id`; its connection manager holds it.
        connection_id = self._client.connection.connection_manager.connection_id
        return None if connection_id is None else str(connection_id)

    def channel_states(self) -> dict[str, str]:
        return {name: str(channel.state.value) for name, channel in self._channels.items()}

    async def connect(self) -> None:
        if self._client is None:
            log.info("connecting to ably", **{k: v for k, v in self._options.items() if k != "key"})
            self._client = AblyRealtime(self._api_key, **self._options)
            self._client.connection.on(self._on_connection_change)
        await self._settled.wait()
        if self._failure is not None:
            raise self._failure

    async def subscribe(self, channel: str, deliver: MessageSink) -> None:
        if self._client is None:
            raise RuntimeError("connect() before subscribe()")
        if channel in self._channels:
            raise ValueError(f"already subscribed to channel {channel!r}")
        options: dict[str, Any] = {"params": {"rewind": self._rewind}} if self._rewind else {}
        realtime_channel = self._client.channels.get(channel, **options)
        watch = _ChannelWatch(channel, deliver)
        realtime_channel.on(watch.on_state_change)
        self._channels[channel] = realtime_channel
        await self._attach(realtime_channel, lambda: realtime_channel.subscribe(watch.on_message))
        log.info("subscribed", channel=channel, rewind=self._rewind)

    async def _attach(self, channel: Any, first_attempt: Callable[[], Any]) -> None:
        """Subscribe (listener + attach) once; if that attach fails, only re-attach until it works."""
        attempt = first_attempt
        while True:
            try:
                await asyncio.wait_for(attempt(), self._attach_timeout)
                return
            except (TimeoutError, AblyException) as exc:
                if self._failure is not None:
                    raise self._failure from exc
                log.warning("channel attach failed, retrying", channel=channel.name, error=str(exc))
            attempt = channel.attach
            await asyncio.sleep(ATTACH_RETRY_PAUSE_SECONDS)

    async def wait_failed(self) -> AblyConnectionFailedError:
        await self._failed.wait()
        if self._failure is None:  # set together with the event; this guards a future change
            raise RuntimeError("ably connection marked failed without a reason")
        return self._failure

    async def close(self) -> None:
        if self._client is None:
            return
        if self._failure is not None or self.state in ("failed", "closed"):
            # A failed connection has no transport left: closing it only raises inside the SDK (whose
            # timers may even start connecting again). The REST half, an HTTP client the event broker
            # never uses, is closed on its own.
            await self._client.http.close()
            return
        try:
            await asyncio.wait_for(self._client.close(), self._close_timeout)
        except TimeoutError:
            log.warning("ably connection did not close in time", timeout_seconds=self._close_timeout)
        log.info("ably connection closed")

    def _on_connection_change(self, change: Any) -> None:
        current = str(change.current.value)
        fields: dict[str, Any] = {
            "previous": str(change.previous.value),
            "state": current,
            "connection_id": self.connection_id,
        }
        fields.update(_reason_fields(change.reason))
        if current == "failed":
            self._failure = _failure_of(change.reason)
            log.error("ably connection failed", **fields)
            self._failed.set()
            self._settled.set()
            return
        if current == "connected":
            self._settled.set()
            if fields.get("reason_code") == UNABLE_TO_RECOVER_CONNECTION:
                log.warning("ably connection not resumed: a new connection; channels re-attach", **fields)
                return
        if current in _QUIET_STATES and change.current != change.previous:
            log.info("ably connection state changed", **fields)
        else:
            log.warning("ably connection state changed", **fields)
