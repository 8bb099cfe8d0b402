"""`open_resources`: the one wiring of Redis, the queue, the history store, the lifecycle and the
accounts, for every service and the CLI (each opens them this way and closes them on exit)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from rebalancer_shared.accounts import Account, load_accounts
from rebalancer_shared.config import Settings
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.queue.durability import Durability
from rebalancer_shared.redis_connection import open_redis
from rebalancer_shared.store import EventStore


@dataclass(frozen=True)
class Resources:
    """What a process works with; `lifecycle` is the only way to change an event's state."""

    settings: Settings
    accounts: Mapping[str, Account]
    redis: Redis
    queue: EventQueue
    store: EventStore
    lifecycle: EventLifecycle


@contextlib.asynccontextmanager
async def open_resources(
    settings: Settings,
    *,
    accounts: Mapping[str, Account] | None = None,
    fail_fast: bool = False,
    store_pool_size: int = 5,
) -> AsyncIterator[Resources]:
    """Open everything from `settings` (the accounts are read unless given); close it all after.

    `fail_fast` gives Redis short timeouts (the management API and the CLI answer people);
    `store_pool_size` sizes the PostgreSQL pool (a processor: its concurrency).
    """
    known = (
        accounts
        if accounts is not None
        else load_accounts(settings.accounts_file, settings.rebalancing_defaults)
    )
    redis = open_redis(settings.redis.url, fail_fast=fail_fast)
    store = EventStore.from_url(settings.database.url, pool_size=store_pool_size)
    durability = Durability(settings.redis.replicas_to_wait_for(), settings.redis.wait_timeout_seconds)
    queue = EventQueue(
        redis,
        settings.redis.key_prefix,
        lease_seconds=settings.processing.lease_seconds,
        durability=durability,
    )
    try:
        yield Resources(settings, known, redis, queue, store, EventLifecycle(queue, store))
    finally:
        await store.close()
        await redis.aclose()
