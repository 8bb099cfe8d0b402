"""`LeaseFence`: how long this process may still act for a claimed event, by its own clock.

A lease lives in Redis for `lease_seconds` from the moment Redis executed the claim or the last
renewal. The fence counts from the moment this process *sent* that call (earlier, so never later
than Redis's own expiry) on the local monotonic clock, minus a margin for the two clocks running at
slightly different rates. A renewal that is not confirmed (Redis unreachable, the connection cut
silently) does not move the fence, so a run cut off from Redis stops placing orders before another
processor can have reaped its event and started trading it too: with the account lock and the lease,
at most one run of an account trades at any time, even across a network partition.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rebalancer_shared.errors import RebalancerError

# The margin: a fifth of the lease, at most 5 s (30 s leases: the fence closes 5 s early).
MARGIN_FRACTION = 0.2
MAX_MARGIN_SECONDS = 5.0


class LeaseExpiredError(RebalancerError):
    """The run's lease may have expired (no renewal confirmed in time): it must stop acting."""


def fence_margin(lease_seconds: float) -> float:
    """The safety margin taken off a lease of `lease_seconds`."""
    return min(lease_seconds * MARGIN_FRACTION, MAX_MARGIN_SECONDS)


class LeaseFence:
    """The local deadline of one claim's lease."""

    def __init__(
        self, lease_seconds: float, sent_at: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.lease_seconds = lease_seconds
        self.margin = fence_margin(lease_seconds)
        self._clock = clock
        self._valid_until = sent_at + lease_seconds - self.margin

    def now(self) -> float:
        """The clock the fence runs on (send times must be read from it)."""
        return self._clock()

    def confirm(self, sent_at: float) -> None:
        """A renewal sent at `sent_at` was confirmed by Redis."""
        self._valid_until = max(self._valid_until, sent_at + self.lease_seconds - self.margin)

    def remaining(self) -> float:
        """Seconds this process may still act (0 when the fence has closed)."""
        return max(0.0, self._valid_until - self._clock())

    def check(self, action: str) -> None:
        """Raise `LeaseExpiredError` unless the run may still `action` (e.g. "place orders")."""
        if self.remaining() <= 0:
            raise LeaseExpiredError(
                f"cannot {action}: no lease renewal was confirmed in time, so another processor may "
                "hold the event by now (the run stops; its orders are recorded)"
            )
