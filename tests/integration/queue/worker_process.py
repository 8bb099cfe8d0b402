"""A worker process for crash tests: claims one event, then keeps working on it until it is killed.

Usage: python -m tests.integration.queue.worker_process PREFIX LEASE_SECONDS
It prints "claimed <event_id>" once it holds the event, then renews the lease and writes progress to
Redis in small random steps, so a SIGKILL can land anywhere in its work.
"""

from __future__ import annotations

import asyncio
import random
import sys

from rebalancer_shared.queue import EventQueue
from rebalancer_shared.redis_connection import open_redis
from tests.support.servers import REDIS_URL


async def main(prefix: str, lease_seconds: float) -> None:
    client = open_redis(REDIS_URL)
    queue = EventQueue(client, prefix, lease_seconds=lease_seconds)
    claim = await queue.claim_wait("crash-worker", wait_seconds=10)
    if claim is None:
        print("nothing to claim", flush=True)
        return
    print(f"claimed {claim.event.event_id}", flush=True)
    step = 0
    while True:
        step += 1
        await client.hset(f"{prefix}:progress", str(claim.event.event_id), step)
        if step % 5 == 0:
            await queue.renew(claim)
        await asyncio.sleep(random.uniform(0, lease_seconds / 10))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
