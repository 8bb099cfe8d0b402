"""What the routes use: the queue, the history store, the accounts and the health policy.

`open_services` builds them from the settings for the life of the server (the app's lifespan); tests
build `Services` themselves against their own key prefix and database and hand it to `create_app`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog

from management_service.health import HealthPolicy
from rebalancer_shared.accounts import Account, load_accounts
from rebalancer_shared.config import Settings
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.recovery import ensure_queue_state
from rebalancer_shared.redis_connection import open_redis
from rebalancer_shared.store import EventStore

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Services:
    """The live resources the API reads and changes."""

    queue: EventQueue
    store: EventStore
    accounts: Mapping[str, Account]
    health_policy: HealthPolicy


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Read the accounts, connect, and make sure the queue survived (ensure_queue_state); close after."""
    accounts = load_accounts(settings.accounts_file, settings.rebalancing_defaults)
    # Fail fast: a Redis that is down must make /health answer "error" within a couple of seconds.
    redis = open_redis(settings.redis.url, fail_fast=True)
    store = EventStore.from_url(settings.database.url)
    try:
        queue = EventQueue(redis, settings.redis.key_prefix, lease_seconds=settings.processing.lease_seconds)
        report = await ensure_queue_state(queue, store)
        log.info(
            "management service ready",
            accounts=len(accounts),
            redis_was_wiped=report.redis_was_wiped,
            restored=report.restored,
        )
        yield Services(
            queue=queue,
            store=store,
            accounts=accounts,
            health_policy=HealthPolicy.from_settings(settings),
        )
    finally:
        await redis.aclose()
        await store.close()
