"""What the routes use: the queue, the lifecycle, the history store, the accounts, the health policy.

`open_services` builds them from the settings for the life of the server (the app's lifespan): it
reconciles the queue with the history once, drains the outbox in the background like every
long-running process, and runs the notifier (management_service.notifications) beside it. Tests build
`Services` themselves against their own key prefix and database and hand it to `create_app`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import structlog

from management_service.health import HealthPolicy
from management_service.notifications import Notifier, Target, resolve_targets
from rebalancer_shared.accounts import Account
from rebalancer_shared.config import Settings, environment
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.recovery import reconcile_queue
from rebalancer_shared.resources import open_resources
from rebalancer_shared.store import EventStore

log = structlog.get_logger(__name__)


STOP_SECONDS = 5.0


@dataclass(frozen=True)
class Services:
    """The live resources the API reads and changes (changes only through `lifecycle`)."""

    lifecycle: EventLifecycle
    accounts: Mapping[str, Account]
    health_policy: HealthPolicy

    @property
    def queue(self) -> EventQueue:
        return self.lifecycle.queue

    @property
    def store(self) -> EventStore:
        return self.lifecycle.store


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings, targets: Sequence[Target] | None = None
) -> AsyncIterator[Services]:
    """Read the accounts, connect (Redis fails fast: /health must answer within seconds), reconcile
    the queue with the history, drain the outbox and notify meanwhile; close everything after.
    `targets`: the notification targets the caller resolved already (else they are resolved here)."""
    async with open_resources(settings, fail_fast=True) as res:
        if targets is None:
            targets = resolve_targets(settings, res.accounts, environment())
        policy = HealthPolicy.from_settings(settings)
        report = await reconcile_queue(res.lifecycle, settings.processing.lease_seconds)
        log.info(
            "management service ready",
            accounts=len(res.accounts),
            redis_was_wiped=report.redis_was_wiped,
            restored=report.restored,
        )
        notifier = Notifier(res.queue, res.store, targets, settings.notifications, policy)
        tasks = [
            asyncio.create_task(res.lifecycle.outbox.run_drainer(), name="outbox drainer"),
            asyncio.create_task(notifier.run(), name="notifier"),
        ]
        try:
            yield Services(res.lifecycle, res.accounts, policy)
        finally:
            notifier.stop()
            await _stop(tasks)


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    """Let the background tasks end their rounds (the notifier was asked to stop), then cancel what
    is left, but do not wait forever: a task stuck in a call that ignores its cancellation (a
    database that does not answer) must not hold the shutdown."""
    _, running = await asyncio.wait(tasks, timeout=STOP_SECONDS)
    for task in running:
        task.cancel()
    if not running:
        return
    _, stuck = await asyncio.wait(running, timeout=STOP_SECONDS)
    for task in stuck:
        log.warning("a background task did not stop in time; leaving it", task=task.get_name())
