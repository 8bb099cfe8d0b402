"""Failure classes: what a failed or deferred run means for its event, and when it runs again.

Every failed run is put in exactly one class, decided in one place from the error
(`event_processor.failures.classify`), and the class decides the event's next state:

==================  ===================  ==============================================================
class               event state          runs again
==================  ===================  ==============================================================
transient           retrying             after `retry_delay_seconds` (connection lost, timeout, gateway
                                         not logged in, HTTP 5xx or 429, Redis/PostgreSQL busy)
market_closed       scheduled            at the next allowed session's start plus
                                         `market_open_delay_seconds` (market closed, half day over,
                                         pattern-day-trader guard deferring to the next session)
needs_attention     needs_attention      at the next session's open, or at once when an operator asks
                                         (order rejected, unknown symbol, invalid allocations, an order
                                         no API client can cancel, an account not configured)
==================  ===================  ==============================================================

The exceptions below are how code far from the classifier says which class it means.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from rebalancer_shared.errors import RebalancerError


class FailureClass(StrEnum):
    """Why an event is waiting, and so which retry rule it follows."""

    TRANSIENT = "transient"
    MARKET_CLOSED = "market_closed"
    NEEDS_ATTENTION = "needs_attention"


class WaitForSession(RebalancerError):
    """Nothing was traded: the run must wait for a trading session (class `market_closed`).

    `not_before`: the earliest moment the run may happen (for example IB's next open for the
    contract); None means the next allowed session by the trading calendar.
    """

    def __init__(self, message: str, not_before: datetime | None = None) -> None:
        super().__init__(message)
        self.not_before = not_before


class NeedsAttention(RebalancerError):
    """Retrying by itself will not help: a person must look (class `needs_attention`)."""
