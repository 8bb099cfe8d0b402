"""Which price to trust from a market data snapshot (pure; the IBKR adapter feeds it tickers).

Order of preference: the last trade, then the bid/ask midpoint, then the previous close; a field is
used only when it is a real price (never zero, negative, NaN or infinite) no older than
`max_age_seconds`. Every field has an age, live, frozen and delayed data alike:

- last: its own timestamp (tick 45, or 88 for delayed data); a last trade without one is not used;
- bid/ask: live ones are as old as the snapshot; delayed ones lag by `DELAYED_DATA_SECONDS` (IB's
  delayed data is 15-20 minutes behind: the larger is assumed); frozen ones (a closed market's last
  values) date from the latest session's close;
- close: it is the previous session's close, so it dates from the close before the latest open.

A delayed last trade is never taken as fresher than the delay, nor a frozen one than the close.
A crossed quote (ask below bid) or one wider than `max_spread_pct` of its midpoint gives neither a
midpoint nor a limit price.
Session times are Mon-Fri 09:30-16:00 New York; holidays are not modelled (after one, a close is
older than computed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
SESSION_OPEN = time(9, 30)
SESSION_CLOSE = time(16, 0)
DELAYED_DATA_SECONDS = 20 * 60.0
FROZEN_TYPES = frozenset({2, 4})  # frozen, delayed frozen
DELAYED_TYPES = frozenset({3, 4})  # delayed, delayed frozen


def is_usable(value: float | None) -> bool:
    """A real, positive, finite price (IB uses -1, 0 and NaN for "none")."""
    return value is not None and math.isfinite(value) and value > 0


@dataclass(frozen=True)
class PriceRules:
    """How old a field may be, and how wide a spread may be, to be used."""

    max_age_seconds: float
    max_spread_pct: float


@dataclass(frozen=True)
class Quote:
    """One symbol's snapshot, in the adapter's words; None for a value IB did not send.

    `received_at` is when the snapshot was taken (None: unknown, and then only a timestamped last
    trade has an age).
    """

    symbol: str
    last: float | None = None
    bid: float | None = None
    ask: float | None = None
    close: float | None = None
    last_time: datetime | None = None
    market_data_type: int = 1
    received_at: datetime | None = None

    def spread_ok(self, max_spread_pct: float) -> bool:
        """Bid and ask are prices, not crossed, and at most `max_spread_pct` % of their midpoint apart."""
        bid, ask = self.bid, self.ask
        if bid is None or ask is None or not (is_usable(bid) and is_usable(ask)) or ask < bid:
            return False
        return (ask - bid) <= max_spread_pct / 100 * (ask + bid) / 2

    def midpoint(self, max_spread_pct: float = math.inf) -> float | None:
        if not self.spread_ok(max_spread_pct):
            return None
        return ((self.bid or 0.0) + (self.ask or 0.0)) / 2


@dataclass(frozen=True)
class ChosenPrice:
    price: float
    source: str  # "last" | "mid" | "close"


def _weekday_at(moment: datetime, at: time) -> datetime:
    """The latest Mon-Fri `at` (New York time) not after `moment`."""
    local = moment.astimezone(NEW_YORK)
    day = local.date()
    while True:
        candidate = datetime.combine(day, at, NEW_YORK)
        if day.weekday() < 5 and candidate <= local:
            return candidate
        day -= timedelta(days=1)


def latest_session_close(moment: datetime) -> datetime:
    """The latest regular close at or before `moment` (what frozen data dates from)."""
    return _weekday_at(moment, SESSION_CLOSE)


def previous_session_close(moment: datetime) -> datetime:
    """The close before the latest open at or before `moment` (what IB's close tick is)."""
    return _weekday_at(_weekday_at(moment, SESSION_OPEN), SESSION_CLOSE)  # 16:00 > 09:30: a day before


def _quoted_at(quote: Quote) -> datetime | None:
    """When the snapshot's bid/ask were the market's: delayed data lags, frozen data is the close's."""
    at = quote.received_at
    if at is None:
        return None
    if quote.market_data_type in DELAYED_TYPES:
        at -= timedelta(seconds=DELAYED_DATA_SECONDS)
    if quote.market_data_type in FROZEN_TYPES:
        at = latest_session_close(at)
    return at


def _traded_at(quote: Quote) -> datetime | None:
    """When the last trade happened: its timestamp, never later than the data it came with."""
    quoted = _quoted_at(quote)
    if quote.last_time is None or quoted is None:
        return quote.last_time
    return min(quote.last_time, quoted)


def _closed_at(quote: Quote) -> datetime | None:
    return None if quote.received_at is None else previous_session_close(quote.received_at)


def _problem(name: str, price: float | None, when: datetime | None, now: datetime, max_age: float) -> str:
    """Why a field cannot be used ("" when it can)."""
    if price is None or not is_usable(price):
        return f"no {name}" if price is None else f"{name} {price} is not a price"
    if when is None:
        return f"{name} has no known time"
    age = (now - when).total_seconds()
    return f"{name} is {age:.0f} s old (max {max_age:g})" if age > max_age else ""


def _fields(quote: Quote, rules: PriceRules) -> list[tuple[str, float | None, datetime | None, str]]:
    """(source, price, time, a problem known before ages) in order of preference."""
    mid = quote.midpoint(rules.max_spread_pct)
    spread = ""
    if mid is None and quote.midpoint() is not None:
        spread = f"bid/ask {quote.bid}/{quote.ask} wider than {rules.max_spread_pct:g} % of the midpoint"
    elif mid is None and is_usable(quote.bid) and is_usable(quote.ask):
        spread = f"bid/ask {quote.bid}/{quote.ask} crossed"
    return [
        ("last", quote.last, _traded_at(quote), ""),
        ("mid", mid, _quoted_at(quote), spread),
        ("close", quote.close, _closed_at(quote), ""),
    ]


def _judged(quote: Quote, now: datetime, rules: PriceRules) -> list[tuple[str, float | None, str]]:
    return [
        (name, price, known or _problem(name, price, when, now, rules.max_age_seconds))
        for name, price, when, known in _fields(quote, rules)
    ]


def price_problems(quote: Quote, now: datetime, rules: PriceRules) -> list[str]:
    """Why each field of the quote is not used, in order of preference ("" for a usable one)."""
    return [problem for _, _, problem in _judged(quote, now, rules)]


def choose_price(quote: Quote, now: datetime, rules: PriceRules) -> ChosenPrice | None:
    """The price to plan with, or None when the snapshot has no usable one."""
    for name, price, problem in _judged(quote, now, rules):
        if not problem and price is not None:
            return ChosenPrice(float(price), name)
    return None


def limit_side(quote: Quote | None, action: str, now: datetime, rules: PriceRules) -> float | None:
    """The ask (buy) or bid (sell) to set a limit from: only from a fresh quote with a sane spread."""
    if quote is None or not quote.spread_ok(rules.max_spread_pct):
        return None
    side = quote.ask if action == "BUY" else quote.bid
    return None if _problem("quote", side, _quoted_at(quote), now, rules.max_age_seconds) else side
