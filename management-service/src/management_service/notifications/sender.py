"""Deliver due messages: per target, claim what its rate allows, send through apprise, retry, give up.

Each target has its own task (`keep_sending`), so a slow or dead receiver delays only its own
messages, and the intake and health watch never wait for a delivery. A target's messages go one
after another, in the order they were queued. A round takes the target's rate-limit tokens first and
claims at most that many due messages (at most `CLAIM_BATCH`), under a lease long enough for each of
them to time out (`delivery_timeout`), and with a claim token: if the lease still runs out, only the
sender that holds the row's current claim can mark it. Due messages over the rate wait in the table
until a token will be there (counted `deferred`), never dropped.

Each message is tried a few times at once (tenacity: a receiver that blinked), all of it bounded by
the delivery timeout; if that fails it waits `backoff(attempts)` in the table (5 s, doubling, at
most 5 minutes) and is tried again, until it is older than `give_up_after` (24 h by default): then
it is marked `failed`, logged with the target's id and privacy URL (never the URL itself) and
counted. An outage of the receiver shorter than that loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from rebalancer_shared.metrics import NotificationOutcome
from rebalancer_shared.store.views import as_utc

log = structlog.get_logger(__name__)

QUICK_ATTEMPTS = 3
QUICK_WAIT_MAX_SECONDS = 2.0
DELIVERY_TIMEOUT_SECONDS = 30.0  # one message, its quick retries included
LEASE_MARGIN = timedelta(seconds=30)
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 300.0


class DeliveryError(Exception):
    """A message did not reach its target; the text names the target's privacy URL and why."""


Deliver = Callable[[Target, str, str], Awaitable[None]]
CountOutcome = Callable[[NotificationOutcome, int], Awaitable[None]]


async def deliver_with_apprise(target: Target, title: str, body: str) -> None:
    """Send through apprise (its blocking plugins run in its executor, not on the event loop)."""
    client = apprise.Apprise()
    client.add(target.url)
    result = await client.async_notify(body=body, title=title)
    if not result:
        raise DeliveryError(f"{target.shown}: delivery {getattr(result.status, 'value', result.status)}")


def backoff(attempts: int) -> timedelta:
    """5 s, 10 s, 20 s, ... up to 5 minutes, after the n-th failed attempt."""
    return timedelta(seconds=min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1)))


class Sender:
    """Sends the due messages of the configured targets (see the module doc)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        targets: Sequence[Target],
        *,
        give_up_after: timedelta,
        limiter: RateLimiter,
        clock: Callable[[], float],
        count: CountOutcome,
        deliver: Deliver = deliver_with_apprise,
        quick_wait_max_seconds: float = QUICK_WAIT_MAX_SECONDS,
        delivery_timeout_seconds: float = DELIVERY_TIMEOUT_SECONDS,
    ) -> None:
        self._sessions = sessions
        self._targets: Mapping[str, Target] = {t.target_id: t for t in targets}
        self._give_up_after = give_up_after
        self._limiter = limiter
        self._clock = clock
        self._count = count
        self._deliver = deliver
        self._quick_wait_max = quick_wait_max_seconds
        self._timeout = delivery_timeout_seconds

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def send_due(self) -> int:
        """One round for every target at once; return how many messages were claimed."""
        sent = await asyncio.gather(*(self.send_round(t) for t in self._targets.values()))
        return sum(sent)

    async def keep_sending(self, target: Target, poll_seconds: float, stopping: asyncio.Event) -> None:
        """One target's task: rounds until `stopping` is set, `poll_seconds` apart when nothing was due."""
        while not stopping.is_set():
            try:
                claimed = await self.send_round(target)
            except Exception as exc:
                claimed = 0
                log.warning(
                    "notification round failed; it runs again",
                    target=target.target_id,
                    error=redact_text(str(exc)).splitlines()[0][:300],
                )
            if not claimed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), poll_seconds)

    async def send_round(self, target: Target) -> int:
        """Claim what this target's rate allows now, and send it; return how many were claimed."""
        granted = self._limiter.take_up_to(target.target_id, rows.CLAIM_BATCH)
        now = self._now()
        lease = timedelta(seconds=self._timeout * max(granted, 1)) + LEASE_MARGIN
        async with self._sessions.begin() as session:
            claimed = await rows.claim_due(session, target.target_id, now, lease, granted)
            deferred = await self._defer_over_rate(session, target, granted, now)
        self._limiter.give_back(target.target_id, granted - len(claimed))
        if deferred:
            await self._count(NotificationOutcome.DEFERRED, deferred)
        for message in claimed:
            await self._send_one(target, message)
        return len(claimed)

    async def _defer_over_rate(
        self, session: AsyncSession, target: Target, granted: int, now: datetime
    ) -> int:
        if granted >= rows.CLAIM_BATCH:  # not held back by the rate: what is left is claimed next round
            return 0
        wait = self._limiter.wait_seconds(target.target_id)
        return await rows.defer_due(session, target.target_id, now, now + timedelta(seconds=max(wait, 1.0)))

    async def _attempt(self, target: Target, message: rows.Claimed) -> None:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(QUICK_ATTEMPTS),
            wait=wait_exponential(multiplier=0.25, max=self._quick_wait_max),
            retry=retry_if_exception_type(Exception),
            reraise=True,
        )
        async with asyncio.timeout(self._timeout):
            async for attempt in retrying:
                with attempt:
                    await self._deliver(target, message.title, message.body)

    async def _send_one(self, target: Target, message: rows.Claimed) -> None:
        try:
            await self._attempt(target, message)
        except TimeoutError:
            await self._failed(target, message, f"no answer within {self._timeout:g} s")
            return
        except Exception as exc:
            await self._failed(target, message, redact_text(f"{type(exc).__name__}: {exc}"))
            return
        async with self._sessions.begin() as session:
            await rows.mark_sent(session, message, self._now())
        await self._count(NotificationOutcome.SENT, 1)
        log.info("notification sent", key=message.key, target=target.target_id, service=target.shown)

    async def _failed(self, target: Target, message: rows.Claimed, error: str) -> None:
        context = {"key": message.key, "target": target.target_id, "service": target.shown, "error": error}
        now = self._now()
        if now - as_utc(message.created_at) >= self._give_up_after:
            async with self._sessions.begin() as session:
                await rows.mark_failed(session, message, error)
            await self._count(NotificationOutcome.FAILED, 1)
            log.error(
                "notification failed: not delivered within the age limit; given up",
                attempts=message.attempts,
                give_up_after_hours=self._give_up_after.total_seconds() / 3600,
                **context,
            )
            return
        due = now + backoff(message.attempts)
        async with self._sessions.begin() as session:
            await rows.mark_retry(session, message, due, error)
        await self._count(NotificationOutcome.RETRIED, 1)
        log.warning(
            "notification not delivered; it waits and is tried again",
            attempts=message.attempts,
            due=due.isoformat(),
            **context,
        )
