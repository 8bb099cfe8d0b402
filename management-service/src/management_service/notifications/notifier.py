"""The notifier: a background task of the management service that never touches an event.

Every `poll_seconds` it (1) queues the messages of new transitions (intake.py), (2) queues health
changes (health_watch.py), (3) sends what is due (sender.py). Each step is its own transaction and
idempotent, so several replicas may run it at once and a crash at any point loses nothing: queued
messages are in PostgreSQL, unseen transitions keep their flag. An error is logged and the loop goes
on; events are never waited for, failed or slowed by it (they are written to the history first, by
the processes that run them, and looked at here afterwards).

With no targets configured it still marks transitions seen, so turning notifications on later does
not send the past.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import structlog
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import async_sessionmaker

from management_service.health import HealthPolicy
from management_service.notifications.health_watch import HealthWatch
from management_service.notifications.intake import INTAKE_BATCH, take_transitions
from management_service.notifications.rate_limit import RateLimiter
from management_service.notifications.rows import insert_drafts
from management_service.notifications.sender import Deliver, Sender, deliver_with_apprise
from management_service.notifications.targets import Target
from rebalancer_shared.metrics import count_notification
from rebalancer_shared.notification_targets import NotificationSettings
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore

log = structlog.get_logger(__name__)


class Notifier:
    """Intake, health watch and sender in one loop (see the module doc)."""

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
    ) -> None:
        self.targets = tuple(targets)
        self.settings = settings
        self._redis: Redis = queue.redis
        self._prefix = queue.keys.prefix
        self._sessions = async_sessionmaker(store.engine, expire_on_commit=False)
        self._clock = clock
        self._health = HealthWatch(queue, store, policy, settings.unhealthy_after_seconds, clock)
        self.sender = Sender(
            self._sessions,
            self.targets,
            max_attempts=settings.max_attempts,
            limiter=RateLimiter(settings.per_target_per_minute, clock),
            clock=clock,
            count=self._count,
            deliver=deliver,
            quick_wait_max_seconds=quick_wait_max_seconds,
        )

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def _count(self, outcome: str) -> None:
        try:
            await count_notification(self._redis, self._prefix, outcome)
        except Exception as exc:  # a counter must never stop a delivery being recorded
            log.warning("notification counter not written", outcome=outcome, error=str(exc).splitlines()[0])

    async def take_transitions(self) -> int:
        """Queue the messages of every unseen transition; return how many transitions were seen."""
        seen = 0
        while True:
            async with self._sessions.begin() as session:
                taken = await take_transitions(session, self.targets, self._now())
            seen += taken
            if taken < INTAKE_BATCH:
                return seen

    async def watch_health(self) -> None:
        """Queue the health changes due now."""
        drafts = await self._health.drafts(self.targets)
        if drafts:
            async with self._sessions.begin() as session:
                await insert_drafts(session, drafts, self._now())

    async def run_once(self) -> None:
        """One round: intake, health, send (each step's failure is logged, the others still run)."""
        for step in (self.take_transitions, self.watch_health, self.sender.send_due):
            try:
                await step()
            except Exception as exc:
                log.warning(
                    "notifier step failed; it runs again", step=step.__name__, error=str(exc).splitlines()[0]
                )

    async def run(self) -> None:
        """Run rounds forever, `poll_seconds` apart (a background task; cancel it to stop)."""
        log.info("notifier started", targets=[t.target_id for t in self.targets])
        while True:
            await self.run_once()
            await asyncio.sleep(self.settings.poll_seconds)
