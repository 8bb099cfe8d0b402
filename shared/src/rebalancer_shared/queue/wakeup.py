"""`ClaimWakeup`: idle worker slots sleep until there is something to claim, instead of polling.

A claim is one Lua script (scripts.py) and scripts cannot block, so a slot that found nothing waits
here, on an asyncio primitive, until the first of:

- a nudge: every script that makes an event claimable publishes one message per event on the
  wake-up channel (`QueueKeys.wake`). One subscription per process (`listen`) turns each message
  into the wake-up of one idle slot; a message with a delay (a failed event, claimable at its due
  time) arms the timer instead;
- the earliest due time: a claim that finds nothing answers how long until the earliest waiting
  event is due, and the process keeps one timer at the earliest such time (a scheduled retry is
  claimed when it is due, without a nudge and without polling);
- the fallback: the slot's own timeout (`processing.claim_poll_seconds`), for a nudge that was lost.

Nudges are hints: the claim script decides who gets an event, so a wake-up that finds nothing is
only a wasted claim, and a lost one only a later claim. One wake-up goes to one slot; wake-ups that
find no idle slot are kept (up to the number of slots), so a nudge arriving between a slot's empty
claim and its wait is not lost. When the subscription (re)connects, every idle slot looks once, since
nudges published while it was away are gone; a connection that stops answering its keep-alive PING
is dropped and made again. With an injected clock (tests) due times are not real time: the timer is
not used, and the slots fall back to polling.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import Connection
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)
# A subscription that has heard nothing for this long sends a PING; no answer by the next period and
# it is taken for dead (a silently cut connection) and made again.
KEEPALIVE_SECONDS = 15.0
RECONNECT_PAUSE_SECONDS = 1.0


class ClaimWakeup:
    """The wake-ups of one process's idle worker slots: nudges, the earliest due time, shutdown."""

    def __init__(
        self,
        redis: Redis,
        channel: str,
        *,
        slots: int = 1,
        follow_due_times: bool = True,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
    ) -> None:
        self.redis = redis
        self.channel = channel
        self._max_pending = max(1, slots)
        self._follow_due_times = follow_due_times
        self._keepalive_seconds = keepalive_seconds
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._pending = 0
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self.subscribed = asyncio.Event()

    @property
    def closed(self) -> bool:
        """Closed (shutdown): waits return at once and slots stop claiming."""
        return self._closed

    def expect(self, delay_seconds: float | None) -> None:
        """An event becomes claimable in `delay_seconds` (0: now, None: nothing waits): wake one
        idle slot now, or when it is due."""
        if delay_seconds is None:
            return
        if delay_seconds <= 0:
            self._wake_one()
            return
        if not self._follow_due_times:
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay_seconds
        if self._timer is not None and self._timer.when() <= due:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(due, self._due)

    def wake_all(self) -> None:
        """Every idle slot looks once (nudges may have been lost), and so does the next one to wait
        (it may have claimed before the nudges it missed)."""
        while self._waiters:
            self._wake_one()
        self._wake_one()

    def close(self) -> None:
        """Stop: wake every waiting slot and make later waits return at once."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.wake_all()

    async def wait(self, seconds: float) -> bool:
        """Sleep until a wake-up (True) or for `seconds` (False)."""
        if self._closed:
            return True
        if self._pending:
            self._pending -= 1
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait((waiter,), timeout=seconds)
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._wake_one()  # this slot is going away: its wake-up goes to another
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
        return not waiter.cancelled()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._pending = min(self._pending + 1, self._max_pending)

    def _due(self) -> None:
        self._timer = None
        self._wake_one()

    async def listen(self) -> None:
        """Follow the wake-up channel until cancelled, subscribing again whenever the connection is
        lost (idle slots poll at their fallback meanwhile)."""
        while not self._closed:
            try:
                await self._follow()
            except (RedisError, OSError) as exc:
                log.warning(
                    "wake-up subscription lost; subscribing again (idle slots poll meanwhile)",
                    error=str(exc) or type(exc).__name__,
                )
            self.subscribed.clear()
            await asyncio.sleep(RECONNECT_PAUSE_SECONDS)

    async def _follow(self) -> None:
        # A cluster client learns the slot map on its first command; its pub/sub needs it to pick the
        # node of the channel's slot (a plain client's initialize does nothing).
        await self.redis.initialize()
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            if pubsub.connection is not None:
                # redis-py may reconnect and resubscribe by itself; nudges sent meanwhile are lost.
                pubsub.connection.register_connect_callback(self._reconnected)
            self.subscribed.set()
            self.wake_all()
            await self._read(pubsub)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated

    async def _read(self, pubsub: PubSub) -> None:
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=self._keepalive_seconds)
            if message is None:
                if pinged:
                    raise ConnectionError("the wake-up subscription did not answer its keep-alive PING")
                await pubsub.ping()
                pinged = True
                continue
            pinged = False
            if message["type"] == "message":
                self.expect(_delay_seconds(message["data"]))

    def _reconnected(self, _connection: Connection) -> None:
        log.info("wake-up subscription reconnected; idle slots look for events")
        self.wake_all()


def _delay_seconds(data: object) -> float:
    """A nudge's delay: its text in ms; anything unreadable counts as "now" (a wasted claim at worst)."""
    text = data.decode() if isinstance(data, bytes) else str(data)
    try:
        return max(0.0, int(text) / 1000)
    except ValueError:
        log.warning("unreadable wake-up nudge; treated as due now", data=text[:100])
        return 0.0
