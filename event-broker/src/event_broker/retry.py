"""Keep trying a Redis or PostgreSQL write through an outage, saying so loudly while it fails.

A trigger lives only in the event broker's memory between its arrival from Ably and its enqueue in
Redis, so giving up on a write would lose it. Each operation is tried a few times with a short
exponential backoff (a "round"); a round that still fails is logged as an error and followed by
another after a pause, for as long as the process runs (`abandon` ends the waiting when the event
broker stops). Only transient errors (`rebalancer_shared.transient.is_transient`: unreachable,
restarting or busy servers, a Redis out of memory or read-only, a full connection pool) are retried
this way; any other error is a bug or bad data, which retrying cannot fix, and goes to the caller
at once. tenacity does the retrying; this module only says when to wait, how long, and what to log.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog
from tenacity import AsyncRetrying, RetryCallState, stop_never

from event_broker.errors import EventBrokerError
from rebalancer_shared.transient import retry_if_transient

log = structlog.get_logger(__name__)

T = TypeVar("T")


class WritesAbandonedError(EventBrokerError):
    """The event broker is stopping and gave up retrying a write (the trigger stays unhandled)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one round tries (attempts, backoff) and how long it waits before the next round."""

    attempts: int = 4
    first_delay_seconds: float = 0.2
    max_delay_seconds: float = 2.0
    round_pause_seconds: float = 5.0

    def ends_round(self, attempt: int) -> bool:
        """True when failed attempt number `attempt` (from 1) is the last of its round."""
        return attempt % self.attempts == 0

    def wait_after(self, attempt: int) -> float:
        """The wait after failed attempt number `attempt`: backoff within a round, the pause after it."""
        if self.ends_round(attempt):
            return self.round_pause_seconds
        position = (attempt - 1) % self.attempts
        return min(self.first_delay_seconds * 2.0**position, self.max_delay_seconds)


def _error_text(state: RetryCallState) -> str:
    exc = state.outcome.exception() if state.outcome is not None else None
    return f"{type(exc).__name__}: {exc}"


class OutageRetry:
    """Runs writes under a `RetryPolicy` and remembers whether writes are failing right now."""

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
        """Run `operation` until it succeeds; transient errors are retried, others raised at once."""

        async def pause(seconds: float) -> None:
            await self._pause(seconds, what)

        retrying = AsyncRetrying(
            retry=retry_if_transient,
            stop=stop_never,
            wait=lambda state: self.policy.wait_after(state.attempt_number),
            sleep=pause,
            before_sleep=lambda state: self._failed(what, state),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                result = await operation()
        rounds = (attempt.retry_state.attempt_number - 1) // self.policy.attempts
        if rounds:
            log.warning("write succeeded after failing", operation=what, rounds=rounds)
        self.failing_since = None
        self.last_error = None
        return result

    def _failed(self, what: str, state: RetryCallState) -> None:
        """Note and log a failed attempt that is about to be retried (tenacity's `before_sleep`)."""
        if self.failing_since is None:
            self.failing_since = time.time()
        self.last_error = error = _error_text(state)
        attempt = state.attempt_number
        delay = self.policy.wait_after(attempt)
        if not self.policy.ends_round(attempt):
            log.warning("write failed, retrying", operation=what, error=error, delay=delay)
            return
        log.error(
            "write failed: Redis or PostgreSQL unavailable or busy; the trigger is NOT queued yet "
            "and is held in memory, retrying",
            operation=what,
            rounds=attempt // self.policy.attempts,
            attempts=attempt,
            error=error,
            retry_in_seconds=delay,
        )

    async def _pause(self, seconds: float, what: str) -> None:
        """Sleep between attempts, or raise at once when abandoned."""
        if not self._abandoned.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._abandoned.wait()
        if self._abandoned.is_set():
            raise WritesAbandonedError(f"gave up on {what!r} while stopping; last error: {self.last_error}")
