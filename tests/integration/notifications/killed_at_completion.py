"""A processor's last moment, as a process: it completes an event in Redis and is SIGKILLed before
the history write (`python -m tests.integration.notifications.killed_at_completion REDIS DB PREFIX ACCOUNT`).

The completion's transition is then only in the outbox stream, as after a real processor killed at
that instant; it prints the event id first so the test can find it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from redis.asyncio import Redis

from rebalancer_shared.events import Command
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore
from tests.integration.notifications.helpers import live_run, new_event


async def main(redis_url: str, database_url: str, prefix: str, account_id: str) -> None:
    redis = Redis.from_url(redis_url)
    store = EventStore.from_url(database_url)
    lifecycle = EventLifecycle(EventQueue(redis, prefix, lease_seconds=30.0), store)
    event = new_event(account_id, Command.REBALANCE)
    print(event.event_id, flush=True)
    await lifecycle.submit(event)
    claim = await lifecycle.claim("doomed-processor", wait_seconds=5.0)
    assert claim is not None
    run, orders = live_run(event)
    await store.save_run(run)
    await store.save_orders(run.run_id, event.event_id, orders)
    await lifecycle.queue.complete(claim)  # the Redis step: the transition is in the outbox only
    os.kill(os.getpid(), signal.SIGKILL)  # before lifecycle.complete would write the history


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
