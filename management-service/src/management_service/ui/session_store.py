"""The console's server-side state in Redis: signed-in sessions and the sign-in throttle.

A session is a random id (256 bits) made at sign-in. The cookie carries the id; Redis keeps only its
SHA-256 (`QueueKeys.console_session`), so neither a copy of Redis nor its logs let anyone sign in.
The key's TTL is the session's absolute life, set once at sign-in and never extended by use: a tab
left open and refreshing every few seconds is still signed out when it runs out. Sign-out deletes
the key, so a copy of the cookie is worth nothing afterwards.

The throttle counts failed sign-ins per client address in a fixed window: the first failure opens
the window (SET NX with its TTL) and every failure adds one (INCR keeps the TTL), in one MULTI, so a
crash between the two steps can never leave a counter without an expiry (a lock-out for good).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from rebalancer_shared.queue import QueueKeys

SESSION_SECONDS = 8 * 3600
MAX_FAILED_SIGN_INS = 10
FAILURE_WINDOW_SECONDS = 15 * 60
# A Redis that does not answer within this long is treated as down (the page must still render).
REDIS_WAIT_SECONDS = 2.0
T = TypeVar("T")
# What a Redis that is down or too slow raises.
REDIS_UNAVAILABLE = (RedisError, OSError, TimeoutError)


@dataclass(frozen=True)
class Throttle:
    """Failed sign-ins from one address in the current window, and when the window closes."""

    failures: int
    retry_after_seconds: int

    @property
    def blocked(self) -> bool:
        return self.failures >= MAX_FAILED_SIGN_INS


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


async def _bounded(call: Awaitable[T]) -> T:
    return await asyncio.wait_for(call, REDIS_WAIT_SECONDS)


class ConsoleSessions:
    """Sessions and the sign-in throttle, under the deployment's key prefix."""

    def __init__(self, redis: Redis, keys: QueueKeys) -> None:
        self._redis = redis
        self._keys = keys

    async def create(self, client: str) -> str:
        """A new session's id (for the cookie); Redis keeps its hash for SESSION_SECONDS."""
        session_id = secrets.token_urlsafe(32)
        record = json.dumps({"client": client, "created_at": time.time()})
        key = self._keys.console_session(_hash(session_id))
        await _bounded(self._redis.set(key, record, ex=SESSION_SECONDS))
        return session_id

    async def is_live(self, session_id: str) -> bool:
        """True while the session was neither revoked nor expired."""
        return bool(await _bounded(self._redis.exists(self._keys.console_session(_hash(session_id)))))

    async def revoke(self, session_id: str) -> None:
        await _bounded(self._redis.delete(self._keys.console_session(_hash(session_id))))

    async def throttle(self, client: str) -> Throttle:
        """How many sign-ins from `client` failed in the current window."""
        key = self._keys.console_signin_failures(client)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.ttl(key)
            count, ttl = await _bounded(pipe.execute())
        return Throttle(int(count or 0), max(int(ttl), 0))

    async def count_failure(self, client: str) -> Throttle:
        """Add a failed sign-in from `client` (the first one opens a window)."""
        key = self._keys.console_signin_failures(client)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(key, 0, ex=FAILURE_WINDOW_SECONDS, nx=True)
            pipe.incr(key)
            pipe.ttl(key)
            _, count, ttl = await _bounded(pipe.execute())
        return Throttle(int(count), max(int(ttl), 0))

    async def clear_failures(self, client: str) -> None:
        await _bounded(self._redis.delete(self._keys.console_signin_failures(client)))
