"""Deliver due messages: claim, rate-limit, send through apprise, retry, give up after N attempts.

Each claimed message is sent with a few quick retries inside the call (tenacity: a receiver that
blinked); if it still fails it waits `backoff(attempts)` in the table (the claim already counted the
attempt) and after `max_attempts` it is marked `failed`, logged with the target's id and privacy URL
(never the URL itself) and counted. Messages to one target go one after another (its rate limit, its
order); targets are served concurrently, so a slow or dead receiver delays only its own messages.
Nothing here is awaited by an event: the notifier is a background task of the management service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import apprise
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from management_service.notifications import rows
from management_service.notifications.rate_limit import RateLimiter
from management_service.notifications.targets import Target
from rebalancer_shared.logging import redact_text

log = structlog.get_logger(__name__)

CLAIM_LEASE = timedelta(seconds=60)  # longer than one delivery with its quick retries can take
QUICK_ATTEMPTS = 3
QUICK_WAIT_MAX_SECONDS = 2.0
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 3600.0


class DeliveryError(Exception):
    """A message did not reach its target; the text names the target's privacy URL and why."""


Deliver = Callable[[Target, str, str], Awaitable[None]]
CountOutcome = Callable[[str], Awaitable[None]]


async def deliver_with_apprise(target: Target, title: str, body: str) -> None:
    """Send through apprise (its blocking plugins run in its executor, not on the event loop)."""
    client = apprise.Apprise()
    client.add(target.url)
    result = await client.async_notify(body=body, title=title)
    if not result:
        raise DeliveryError(f"{target.shown}: delivery {getattr(result.status, 'value', result.status)}")


def backoff(attempts: int) -> timedelta:
    """5 s, 10 s, 20 s, ... up to an hour, after the n-th failed attempt."""
    return timedelta(seconds=min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1)))


class Sender:
    """Sends the due messages of the configured targets (see the module doc)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        targets: Sequence[Target],
        *,
        max_attempts: int,
        limiter: RateLimiter,
        clock: Callable[[], float],
        count: CountOutcome,
        deliver: Deliver = deliver_with_apprise,
        quick_wait_max_seconds: float = QUICK_WAIT_MAX_SECONDS,
    ) -> None:
        self._sessions = sessions
        self._targets: Mapping[str, Target] = {t.target_id: t for t in targets}
        self._max_attempts = max_attempts
        self._limiter = limiter
        self._clock = clock
        self._count = count
        self._deliver = deliver
        self._quick_wait_max = quick_wait_max_seconds

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def send_due(self) -> int:
        """Claim and send the due messages; return how many were claimed."""
        if not self._targets:
            return 0
        async with self._sessions.begin() as session:
            claimed = await rows.claim_due(session, list(self._targets), self._now(), CLAIM_LEASE)
        by_target: dict[str, list[rows.Claimed]] = {}
        for message in claimed:
            by_target.setdefault(message.target_id, []).append(message)
        await asyncio.gather(
            *(self._send_all(self._targets[t], messages) for t, messages in by_target.items())
        )
        return len(claimed)

    async def _send_all(self, target: Target, messages: Sequence[rows.Claimed]) -> None:
        for message in messages:
            wait = self._limiter.take(target.target_id)
            if wait > 0:
                async with self._sessions.begin() as session:
                    await rows.defer(session, message.row_id, self._now() + timedelta(seconds=wait))
                await self._count("deferred")
                continue
            await self._send_one(target, message)

    async def _attempt(self, target: Target, message: rows.Claimed) -> None:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(QUICK_ATTEMPTS),
            wait=wait_exponential(multiplier=0.25, max=self._quick_wait_max),
            retry=retry_if_exception_type(Exception),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._deliver(target, message.title, message.body)

    async def _send_one(self, target: Target, message: rows.Claimed) -> None:
        try:
            await self._attempt(target, message)
        except Exception as exc:
            await self._failed(target, message, redact_text(f"{type(exc).__name__}: {exc}"))
            return
        async with self._sessions.begin() as session:
            await rows.mark_sent(session, message.row_id, self._now())
        await self._count("sent")
        log.info("notification sent", key=message.key, target=target.target_id, service=target.shown)

    async def _failed(self, target: Target, message: rows.Claimed, error: str) -> None:
        context = {"key": message.key, "target": target.target_id, "service": target.shown, "error": error}
        if message.attempts >= self._max_attempts:
            async with self._sessions.begin() as session:
                await rows.mark_failed(session, message.row_id, error)
            await self._count("failed")
            log.error("notification failed: no attempts left", attempts=message.attempts, **context)
            return
        due = self._now() + backoff(message.attempts)
        async with self._sessions.begin() as session:
            await rows.mark_retry(session, message.row_id, due, error)
        await self._count("retried")
        log.warning(
            "notification not delivered; it waits and is tried again",
            attempts=message.attempts,
            due=due.isoformat(),
            **context,
        )
