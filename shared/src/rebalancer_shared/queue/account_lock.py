"""The per-account lock: one mutating command (rebalance, cancel-orders) per account at a time.

A Redis string `P:q:lock:{account}` holds the holder's random token with a TTL (the lease period),
renewed with the event's lease heartbeat. Only the holder's token can renew or release it (compare in
Lua), so a holder that lost its lock to expiry cannot delete the next holder's lock. A holder that
dies stops renewing and the lock frees itself after one TTL, as its event's lease does.
"""

from __future__ import annotations

import asyncio
import uuid

from redis.asyncio import Redis

from rebalancer_shared.queue import scripts
from rebalancer_shared.queue.keys import QueueKeys


class AccountLock:
    """Acquire, renew and release the mutating-command lock of one account."""

    def __init__(self, redis: Redis, prefix: str, account_id: str, ttl_seconds: float = 30.0) -> None:
        self.redis = redis
        self.key = QueueKeys(prefix).account_lock(account_id)
        self.account_id = account_id
        self.ttl_ms = round(ttl_seconds * 1000)
        self.token = uuid.uuid4().hex
        self._renew = redis.register_script(scripts.LOCK_RENEW)
        self._release = redis.register_script(scripts.LOCK_RELEASE)

    async def try_acquire(self) -> bool:
        """Take the lock if nobody holds it (SET NX PX: one atomic step)."""
        return bool(await self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    async def acquire(self, wait_seconds: float, poll_interval: float = 0.05) -> bool:
        """Wait up to `wait_seconds` for the lock; True when it is ours."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while not await self.try_acquire():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(poll_interval)
        return True

    async def renew(self) -> bool:
        """Extend our lock by its TTL; False when it is no longer ours."""
        return bool(await self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))

    async def release(self) -> bool:
        """Free the lock if it is still ours."""
        return bool(await self._release(keys=[self.key], args=[self.token]))
