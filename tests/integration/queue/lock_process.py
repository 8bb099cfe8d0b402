"""A process that takes one account's mutating-command lock again and again, logging entry and exit.

Usage: python -m tests.integration.queue.lock_process PREFIX ACCOUNT ROUNDS
"""

from __future__ import annotations

import asyncio
import os
import random
import sys

from rebalancer_shared.queue import AccountLock
from rebalancer_shared.redis_connection import open_redis
from tests.support.servers import REDIS_URL


async def main(prefix: str, account: str, rounds: int) -> None:
    client = open_redis(REDIS_URL)
    me = str(os.getpid())
    for _ in range(rounds):
        lock = AccountLock(client, prefix, account, ttl_seconds=5)
        assert await lock.acquire(wait_seconds=30, poll_interval=0.001)
        await client.rpush(f"{prefix}:timeline", f"enter:{me}")
        await asyncio.sleep(random.uniform(0, 0.003))
        await client.rpush(f"{prefix}:timeline", f"exit:{me}")
        assert await lock.release()
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
