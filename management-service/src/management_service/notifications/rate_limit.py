"""A token bucket per target: at most `per_minute` messages a minute, in bursts of up to that many.

The excess is never dropped: the sender puts it back with the time a token will be there
(`wait_seconds`). The buckets live in each notifier process, so N management-service replicas
may together send up to N times the rate (their claims split the work, so usually far less).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets keyed by target id, on an injectable clock (seconds)."""

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self.capacity = float(per_minute)
        self.refill_per_second = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float:
        """Take a token: 0.0 when one was there, else the seconds until one will be (nothing taken)."""
        now = self._clock()
        bucket = self._buckets.setdefault(key, _Bucket(self.capacity, now))
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.at) * self.refill_per_second)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.refill_per_second
