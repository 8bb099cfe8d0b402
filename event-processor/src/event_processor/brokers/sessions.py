"""Whether US stocks trade now, as IB Gateway says (pure: the adapter feeds it IB's own answers).

IB describes a contract's sessions in its contract details, in the contract's time zone: `liquidHours`
(the regular session) and `tradingHours` (with the extended sessions), as
"20261202:0930-20261202:1600;20261205:CLOSED;...". Compared with the gateway's clock
(reqCurrentTime), they tell whether a market order would execute now, or IB would hold it (warning
399) until the open: the engine does not place it then, and says when the market opens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from event_processor.trading_calendar import Session

__all__ = ["MarketHours", "Session", "market_hours", "parse_hours", "zone"]

_SPAN = re.compile(r"^(\d{8}):(\d{4})-(\d{8}):(\d{4})$")
# IB's time zone ids and their IANA names (IB uses a few legacy ones).
_ZONES = {"US/Eastern": "America/New_York", "EST": "America/New_York", "EST5EDT": "America/New_York"}


@dataclass(frozen=True)
class MarketHours:
    """A contract's sessions as IB listed them."""

    regular: tuple[tuple[datetime, datetime], ...]
    trading: tuple[tuple[datetime, datetime], ...]

    def session_at(self, moment: datetime) -> Session:
        if any(start <= moment < end for start, end in self.regular):
            return Session.REGULAR
        if any(start <= moment < end for start, end in self.trading):
            return Session.EXTENDED
        return Session.CLOSED

    def next_regular_open(self, moment: datetime) -> datetime | None:
        upcoming = [start for start, _ in self.regular if start > moment]
        return min(upcoming) if upcoming else None


def zone(time_zone_id: str) -> ZoneInfo:
    """IB's time zone id as a `ZoneInfo` (New York when IB sends nothing usable)."""
    try:
        return ZoneInfo(_ZONES.get(time_zone_id, time_zone_id or "America/New_York"))
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("America/New_York")


def parse_hours(text: str, tz: ZoneInfo) -> tuple[tuple[datetime, datetime], ...]:
    """IB's hours string as (start, end) pairs; CLOSED days and unreadable parts are skipped."""
    spans = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        match = _SPAN.match(part)
        if match is None:
            continue
        day1, hm1, day2, hm2 = match.groups()
        start = datetime.strptime(day1 + hm1, "%Y%m%d%H%M").replace(tzinfo=tz)
        end = datetime.strptime(day2 + hm2, "%Y%m%d%H%M").replace(tzinfo=tz)
        spans.append((start, end))
    return tuple(spans)


def market_hours(liquid_hours: str, trading_hours: str, time_zone_id: str) -> MarketHours:
    """The sessions of a contract from its contract details."""
    tz = zone(time_zone_id)
    return MarketHours(parse_hours(liquid_hours, tz), parse_hours(trading_hours, tz))
