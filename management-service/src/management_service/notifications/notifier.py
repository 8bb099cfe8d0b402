"""The notifier: a background task of the management service that never touches an event.

Two kinds of loop run side by side, so neither waits for the other:
- every `poll_seconds`: queue the messages of new transitions (intake.py), the health changes
  (health_watch.py) and, once a day, the daily summary (daily.py); fail the pending rows of targets
  no longer configured, and delete sent rows older than `keep_sent_days`;
- one task per target (sender.py): send what is due, as its rate allows; a receiver that hangs
  holds up only its own task.
Each step is its own transaction and idempotent, so several replicas may run it at once and a crash
at any point loses nothing: queued messages are in PostgreSQL, unseen transitions keep their flag.
An error is logged and the loop goes on; events are never waited for, failed or slowed by it (they
are written to the history first, by the processes that run them, and looked at here afterwards).

With no target that wants transitions (none configured, or only `health`), the intake clears the
flags in one UPDATE without reading a row, so turning notifications on later does not send the past.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import async_sessionmaker

from management_service.health import HealthPolicy
from management_service.notifications import rows
from management_service.notifications.daily import DailySummary
from management_service.notifications.health_watch import HealthWatch
from management_service.notifications.intake import (
    INTAKE_BATCH,
    MAX_AGE,
    IntakeReport,
    clear_flags,
    take_transitions,
)
from management_service.notifications.rate_limit import RateLimiter
from management_service.notifications.sender import (
    DELIVERY_TIMEOUT_SECONDS,
    Deliver,
    Sender,
    deliver_with_apprise,
)
from management_service.notifications.targets import Target
from rebalancer_shared.metrics import NotificationOutcome, count_notification
from rebalancer_shared.notification_targets import NotificationSettings, NotifyOn
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore

log = structlog.get_logger(__name__)


IDLE_POLL_SECONDS = 60.0


class DraftSource(Protocol):
    """What queues messages of its own (health changes, the daily summary): drafts, then a confirm."""

    async def drafts(self, targets: Sequence[Target]) -> list[rows.Draft]: ...

    def confirm(self) -> None: ...


class Notifier:
    """Intake, health watch, housekeeping and one sender task per target (see the module doc)."""

    def __init__(
        self,
        queue: EventQueue,
        store: EventStore,
        targets: Sequence[Target],
        settings: NotificationSettings,
        policy: HealthPolicy,
        *,
        clock: Callable[[], float] = time.time,
        deliver: Deliver = deliver_with_apprise,
        quick_wait_max_seconds: float = 2.0,
        delivery_timeout_seconds: float = DELIVERY_TIMEOUT_SECONDS,
    ) -> None:
        self.targets = tuple(targets)
        self.settings = settings
        self._redis: Redis = queue.redis
        self._prefix = queue.keys.prefix
        self._sessions = async_sessionmaker(store.engine, expire_on_commit=False)
        self._stopping = asyncio.Event()
        self._clock = clock
        self._health = HealthWatch(queue, store, policy, settings.unhealthy_after_seconds, clock)
        self._daily = DailySummary(self._sessions, settings, clock)
        self._wants_transitions = any(t.on - {NotifyOn.HEALTH, NotifyOn.DAILY} for t in self.targets)
        self.sender = Sender(
            self._sessions,
            self.targets,
            give_up_after=timedelta(hours=settings.give_up_after_hours),
            limiter=RateLimiter(settings.per_target_per_minute, clock),
            clock=clock,
            count=self._count,
            deliver=deliver,
            quick_wait_max_seconds=quick_wait_max_seconds,
            delivery_timeout_seconds=delivery_timeout_seconds,
        )

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def _count(self, outcome: NotificationOutcome, by: int = 1) -> None:
        try:
            await count_notification(self._redis, self._prefix, outcome, by)
        except Exception as exc:  # a counter must never stop a delivery being recorded
            log.warning("notification counter not written", outcome=outcome, error=str(exc).splitlines()[0])

    async def take_transitions(self) -> int:
        """Queue the messages of every unseen transition; return how many transitions were seen."""
        if not self._wants_transitions:
            async with self._sessions.begin() as session:
                return await clear_flags(session)
        seen = 0
        while True:
            async with self._sessions.begin() as session:
                report = await take_transitions(session, self.targets, self._now())
            await self._report(report)
            seen += report.seen
            if report.seen < INTAKE_BATCH:
                return seen

    async def _report(self, report: IntakeReport) -> None:
        if report.skipped_old:
            log.warning(
                "notification intake: transitions older than the age limit were not sent",
                count=report.skipped_old,
                max_age_hours=MAX_AGE.total_seconds() / 3600,
            )
        for outcome, count in (
            (NotificationOutcome.SKIPPED_OLD, report.skipped_old),
            (NotificationOutcome.SUPPRESSED, report.suppressed),
            (NotificationOutcome.INTAKE_ERROR, report.errors),
        ):
            if count:
                await self._count(outcome, count)

    async def _queue_from(self, source: DraftSource) -> None:
        drafts = await source.drafts(self.targets)
        if drafts:
            async with self._sessions.begin() as session:
                await rows.insert_drafts(session, drafts, self._now())
        source.confirm()  # remembered only once queued: a failed insert is worked out again

    async def watch_health(self) -> None:
        """Queue the health changes due now; the watch remembers them only once they are queued."""
        await self._queue_from(self._health)

    async def queue_daily(self) -> None:
        """Queue the newest ended day's summary, once per process and day (see daily.py)."""
        await self._queue_from(self._daily)

    async def tidy(self) -> None:
        """Fail the pending rows of targets no longer configured; delete sent rows past retention."""
        before = self._now() - timedelta(days=self.settings.keep_sent_days)
        async with self._sessions.begin() as session:
            removed = await rows.fail_unconfigured(session, [t.target_id for t in self.targets])
            await rows.delete_sent_before(session, before)
        for target_id, count in removed:
            log.error(
                "notifications failed: their target is no longer configured",
                target=target_id,
                count=count,
            )
            await self._count(NotificationOutcome.TARGET_REMOVED, count)

    async def queue_round(self) -> None:
        """Intake, health, daily summary, tidy (each step's failure is logged, the others still run)."""
        for step in (self.take_transitions, self.watch_health, self.queue_daily, self.tidy):
            try:
                await step()
            except Exception as exc:
                log.warning(
                    "notifier step failed; it runs again", step=step.__name__, error=str(exc).splitlines()[0]
                )

    async def run_once(self) -> None:
        """One queue round, then one sending round of every target (tests; `run` overlaps them)."""
        await self.queue_round()
        try:
            await self.sender.send_due()
        except Exception as exc:
            log.warning(
                "notifier step failed; it runs again", step="send_due", error=str(exc).splitlines()[0]
            )

    async def _queue_forever(self) -> None:
        # Without a target there is nothing to send: only the flags to clear (and, once, the rows of
        # targets removed from the configuration to fail), so the database is not asked every second.
        interval = self.settings.poll_seconds if self.targets else IDLE_POLL_SECONDS
        while not self._stopping.is_set():
            await self.queue_round()
            await self.pause(interval)

    async def pause(self, seconds: float) -> None:
        """Wait `seconds`, or less when asked to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def stop(self) -> None:
        """Finish the rounds under way, then return from `run` (no query is cut off midway: a
        cancelled database call can leave its connection unclosed)."""
        self._stopping.set()

    async def run(self) -> None:
        """Queue rounds and each target's sender, until `stop` (or cancelled: a background task)."""
        log.info("notifier started", targets=[t.target_id for t in self.targets])
        poll = self.settings.poll_seconds
        tasks = [asyncio.create_task(self._queue_forever())] + [
            asyncio.create_task(self.sender.keep_sending(t, poll, self._stopping)) for t in self.targets
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
