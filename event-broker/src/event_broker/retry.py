"""Keep trying a Redis or PostgreSQL write through an outage, saying so loudly while it fails.

A trigger lives only in the broker's memory between its arrival from Ably and its enqueue in Redis,
so giving up on a write would lose it. Each operation is tried a few times with a short exponential
backoff (a "round"); a round that still fails is logged as an error and followed by another after a
pause, for as long as the process runs (`abandon` ends the waiting when the broker stops). Only
errors that mean "the server is unreachable or busy" are retried this way; any other error is a bug
or bad data, which retrying cannot fix, and goes to the caller at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import InterfaceError, OperationalError

from event_broker.errors import BrokerError

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Unreachable, restarting or overloaded servers. OSError covers refused and reset sockets.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OperationalError,
    InterfaceError,
    OSError,
    TimeoutError,
)


class WritesAbandonedError(BrokerError):
    """The broker is stopping and gave up retrying a write (the trigger stays unhandled)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one round tries (attempts, backoff) and how long it waits before the next round."""

    attempts: int = 4
    first_delay_seconds: float = 0.2
    max_delay_seconds: float = 2.0
    round_pause_seconds: float = 5.0

    def delays(self) -> list[float]:
        """The waits between the attempts of one round."""
        return [
            min(self.first_delay_seconds * 2**n, self.max_delay_seconds) for n in range(self.attempts - 1)
        ]


class Retrier:
    """Runs operations under a `RetryPolicy` and remembers whether writes are failing right now."""

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self.failing_since: float | None = None
        self.last_error: str | None = None
        self._abandoned = asyncio.Event()

    @property
    def failing(self) -> bool:
        """True while an operation is waiting for Redis or PostgreSQL to come back."""
        return self.failing_since is not None

    def abandon(self) -> None:
        """Give up: operations waiting to retry raise `WritesAbandonedError` (used when stopping)."""
        self._abandoned.set()

    async def run(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """Run `operation` until it succeeds; transient errors are retried, others raised."""
        rounds = 0
        while True:
            try:
                result = await self._round(operation)
            except TRANSIENT_ERRORS as exc:
                rounds += 1
                self._note_failure(exc)
                log.error(
                    "write failed: Redis or PostgreSQL unavailable; the trigger is NOT queued yet "
                    "and is held in memory, retrying",
                    operation=what,
                    rounds=rounds,
                    attempts=self.policy.attempts * rounds,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_seconds=self.policy.round_pause_seconds,
                )
                await self._pause(self.policy.round_pause_seconds, what)
                continue
            if rounds:
                log.warning("write succeeded after failing", operation=what, rounds=rounds)
            self.failing_since = None
            self.last_error = None
            return result

    async def _round(self, operation: Callable[[], Awaitable[T]]) -> T:
        for delay in self.policy.delays():
            try:
                return await operation()
            except TRANSIENT_ERRORS as exc:
                self._note_failure(exc)
                log.warning("write failed, retrying", error=f"{type(exc).__name__}: {exc}", delay=delay)
                await self._pause(delay, "retry")
        return await operation()

    async def _pause(self, seconds: float, what: str) -> None:
        """Sleep between attempts, or raise at once when abandoned."""
        if not self._abandoned.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._abandoned.wait()
        if self._abandoned.is_set():
            raise WritesAbandonedError(f"gave up on {what!r} while stopping; last error: {self.last_error}")

    def _note_failure(self, exc: BaseException) -> None:
        if self.failing_since is None:
            self.failing_since = time.time()
        self.last_error = f"{type(exc).__name__}: {exc}"
