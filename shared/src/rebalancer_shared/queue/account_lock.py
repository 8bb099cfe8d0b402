"""The per-account lock: one mutating command (rebalance, cancel-orders) per account at a time.

A Redis string `P:q:lock:{account}` holds the holder's random token with a TTL (the lease period),
renewed with the event's lease heartbeat. Only the holder's token can renew or release it (compare in
Lua), so a holder that lost its lock to expiry cannot delete the next holder's lock. A holder that
dies stops renewing and the lock frees itself after one TTL, as its event's lease does. With replicas
to wait for (durability.py), a take or renewal counts only once the replicas confirmed it.
"""

from __future__ import annotations

import asyncio
import uuid

from redis.asyncio import Redis

from rebalancer_shared.queue import scripts
from rebalancer_shared.queue.durability import Durability
from rebalancer_shared.queue.keys import QueueKeys


class AccountLock:
    """Acquire, renew and release the mutating-command lock of one account."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        account_id: str,
        ttl_seconds: float = 30.0,
        durability: Durability | None = None,
    ) -> None:
        self.redis = redis
        self.durability = durability or Durability()
        self.key = QueueKeys(prefix).account_lock(account_id)
        self.account_id = account_id
        self.ttl_ms = round(ttl_seconds * 1000)
        self.token = uuid.uuid4().hex
        self._acquire = redis.register_script(scripts.LOCK_ACQUIRE)
        self._renew = redis.register_script(scripts.LOCK_RENEW)
        self._release = redis.register_script(scripts.LOCK_RELEASE)

    async def try_acquire(self) -> bool:
        """Take the lock if nobody else holds it (one atomic step), confirmed by the replicas."""
        taken, confirmed = await self.durability.attempt(
            self.redis, self._acquire, [self.key], [self.token, self.ttl_ms]
        )
        return bool(taken) and confirmed

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
        """Extend our lock by its TTL; False when it is no longer ours (`NotReplicatedError` when the
        replicas did not confirm the renewal: not renewed)."""
        what = f"renewal of the lock of account {self.account_id}"
        return bool(
            await self.durability.write(self.redis, self._renew, [self.key], [self.token, self.ttl_ms], what)
        )

    async def release(self) -> bool:
        """Free the lock if it is still ours."""
        return bool(await self._release(keys=[self.key], args=[self.token]))
