"""Which price to trust from a market data snapshot (pure; the IBKR adapter feeds it tickers).

Order of preference: the last trade, unless IB says it is older than `max_age_seconds`; then the
bid/ask midpoint; then the previous close. Zero, negative, NaN and infinite values are never used:
a symbol whose snapshot has none of the three is reported as having no price at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime


def is_usable(value: float | None) -> bool:
    """A real, positive, finite price (IB uses -1, 0 and NaN for "none")."""
    return value is not None and math.isfinite(value) and value > 0


@dataclass(frozen=True)
class Quote:
    """One symbol's snapshot, in the adapter's words; None for a value IB did not send."""

    symbol: str
    last: float | None = None
    bid: float | None = None
    ask: float | None = None
    close: float | None = None
    last_time: datetime | None = None
    market_data_type: int = 1

    def midpoint(self) -> float | None:
        if is_usable(self.bid) and is_usable(self.ask) and (self.ask or 0.0) >= (self.bid or 0.0):
            return ((self.bid or 0.0) + (self.ask or 0.0)) / 2
        return None


@dataclass(frozen=True)
class ChosenPrice:
    price: float
    source: str  # "last" | "mid" | "close"


def choose_price(quote: Quote, now: datetime, max_age_seconds: float) -> ChosenPrice | None:
    """The price to plan with, or None when the snapshot has no usable one."""
    last_is_fresh = quote.last_time is None or (now - quote.last_time).total_seconds() <= max_age_seconds
    if is_usable(quote.last) and last_is_fresh:
        return ChosenPrice(float(quote.last or 0.0), "last")
    mid = quote.midpoint()
    if mid is not None:
        return ChosenPrice(mid, "mid")
    if is_usable(quote.close):
        return ChosenPrice(float(quote.close or 0.0), "close")
    return None
