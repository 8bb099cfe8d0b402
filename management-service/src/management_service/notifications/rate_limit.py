"""A token bucket per target: at most `per_minute` messages a minute, in bursts of up to that many.

The sender takes the tokens before it claims (`take_up_to`), so it never claims more of a target's
messages than it may send now, and gives back what it did not use. The excess is never dropped: it
waits in the table until a token will be there (`wait_seconds`). The buckets live in each notifier
process, so N management-service replicas may together send up to N times the rate (their claims
split the work, so usually far less).
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

    def _bucket(self, key: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.setdefault(key, _Bucket(self.capacity, now))
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.at) * self.refill_per_second)
        bucket.at = now
        return bucket

    def take_up_to(self, key: str, most: int) -> int:
        """Take as many whole tokens as there are, up to `most`; how many were taken."""
        bucket = self._bucket(key)
        taken = min(most, int(bucket.tokens))
        bucket.tokens -= taken
        return max(0, taken)

    def give_back(self, key: str, tokens: int) -> None:
        """Return tokens taken and not used."""
        bucket = self._bucket(key)
        bucket.tokens = min(self.capacity, bucket.tokens + tokens)

    def wait_seconds(self, key: str) -> float:
        """Seconds until a token will be there (0.0: there is one now)."""
        bucket = self._bucket(key)
        return 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / self.refill_per_second
