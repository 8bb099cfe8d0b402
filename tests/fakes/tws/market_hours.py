"""The fake gateway's exchange calendar: when US stocks trade, on a clock the test sets.

Like IB, the fake tells the sessions through contract details (`tradingHours`, `liquidHours` in the
contract's time zone, `US/Eastern`, in IB's "20261202:0930-20261202:1600;20261205:CLOSED" form), its
time through reqCurrentTime, and it holds market orders outside regular hours (`PreSubmitted`,
warning 399) until the open. Regular session 09:30-16:00 New York; extended 04:00-20:00; weekends
and the exchange holidays below closed; the early closes at 13:00 (NYSE's published calendar for 2026
and 2027, written out by hand: the fake stays a model of IB apart from the product's calendar, and a
unit test holds the two in agreement).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
TIME_ZONE_ID = "US/Eastern"
REGULAR = (time(9, 30), time(16, 0))
EXTENDED = (time(4, 0), time(20, 0))
EARLY_CLOSE = time(13, 0)
HOLIDAYS = frozenset(
    date.fromisoformat(d)
    for d in (
        "2026-01-01",
        "2026-01-19",
        "2026-02-16",
        "2026-04-03",
        "2026-05-25",
        "2026-06-19",
        "2026-07-03",
        "2026-09-07",
        "2026-11-26",
        "2026-12-25",
        "2027-01-01",
        "2027-01-18",
        "2027-02-15",
        "2027-03-26",
        "2027-05-31",
        "2027-06-18",
        "2027-07-05",
        "2027-09-06",
        "2027-11-25",
        "2027-12-24",
    )
)
EARLY_CLOSES = frozenset(date.fromisoformat(d) for d in ("2026-11-27", "2026-12-24", "2027-11-26"))
# A Wednesday at 11:00 in New York: the clock of every test that does not set one.
DEFAULT_MARKET_TIME = datetime(2026, 12, 2, 11, 0, tzinfo=NEW_YORK).timestamp()


@dataclass(frozen=True)
class MarketCalendar:
    holidays: frozenset[date] = HOLIDAYS
    early_closes: frozenset[date] = EARLY_CLOSES
    days_listed: int = field(default=7)

    def regular(self, day: date) -> tuple[datetime, datetime] | None:
        """The regular session of `day` in New York, or None when the exchange is closed."""
        if day.weekday() >= 5 or day in self.holidays:
            return None
        close = EARLY_CLOSE if day in self.early_closes else REGULAR[1]
        return _at(day, REGULAR[0]), _at(day, close)

    def extended(self, day: date) -> tuple[datetime, datetime] | None:
        """The whole trading day (pre-market to after-hours), or None when closed."""
        if self.regular(day) is None:
            return None
        close = time(17, 0) if day in self.early_closes else EXTENDED[1]
        return _at(day, EXTENDED[0]), _at(day, close)

    def is_regular(self, moment: datetime) -> bool:
        session = self.regular(moment.astimezone(NEW_YORK).date())
        return session is not None and session[0] <= moment < session[1]

    def is_extended(self, moment: datetime) -> bool:
        session = self.extended(moment.astimezone(NEW_YORK).date())
        return session is not None and session[0] <= moment < session[1] and not self.is_regular(moment)

    def next_open(self, moment: datetime) -> datetime:
        day = moment.astimezone(NEW_YORK).date()
        for offset in range(14):
            session = self.regular(day + timedelta(days=offset))
            if session is not None and session[0] > moment:
                return session[0]
        raise ValueError("no session in the next two weeks")

    def hours(self, moment: datetime, extended: bool) -> str:
        """IB's hours string for the days around `moment` (yesterday and the next week)."""
        first = moment.astimezone(NEW_YORK).date() - timedelta(days=1)
        parts = []
        for offset in range(self.days_listed + 1):
            day = first + timedelta(days=offset)
            session = self.extended(day) if extended else self.regular(day)
            parts.append(f"{day:%Y%m%d}:CLOSED" if session is None else _span(*session))
        return ";".join(parts)


def _at(day: date, moment: time) -> datetime:
    return datetime.combine(day, moment, NEW_YORK)


def _span(start: datetime, end: datetime) -> str:
    return f"{start:%Y%m%d:%H%M}-{end:%Y%m%d:%H%M}"
