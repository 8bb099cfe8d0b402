"""The NYSE trading calendar: may a live rebalance run at this moment, and if not, when next.

The sessions (holidays, early closes, regular open and close) come from `exchange_calendars`
(calendar "XNYS"). It needs pandas, slow to import and heavy in memory, so it is imported only when
sessions are first needed, and its schedule is turned once into plain `datetime` tuples covering
10 days before to 400 days after the moment asked (extended when a later question falls outside):
every question after that is pure Python, a bisection over sorted tuples.

Extended hours are not in the library and are derived: pre-market from 04:00 New York to the open,
after-hours from the close to 20:00 (17:00 on early-close days), on session days only.

A moment is tradeable inside the allowed window of a session day: from the open plus `open_delay`
to the close minus `close_buffer` (the first quotes after the open are wide, and a rebalance started
just before the close may not finish); with `extended_hours`, from the pre-market start plus
`open_delay` to the after-hours end minus `close_buffer`.

Every moment passed in must be timezone-aware (any zone); every moment returned is in UTC. IB's own
view of the sessions (`liquidHours`, `tradingHours`) is still checked by the broker at run time, so
an unscheduled closure the library does not know yet holds the orders rather than trading.
"""

from __future__ import annotations

import functools
import warnings
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
PRE_MARKET_START = time(4, 0)
AFTER_HOURS_END = time(20, 0)
EARLY_CLOSE_AFTER_HOURS_END = time(17, 0)
# The shortest regular session (an early close, 09:30-13:00): delay and buffer must leave a window.
SHORTEST_SESSION = timedelta(hours=3, minutes=30)
_LOOK_BACK = timedelta(days=10)
_LOOK_AHEAD = timedelta(days=400)
# Sessions that must stay loaded after a moment, so the next window is always found: no NYSE
# closure since the 1933 bank holiday has lasted a week (the longest, after 11 September 2001, 4 days).
_MARGIN = timedelta(days=31)


class Session(StrEnum):
    """What the market is doing at a moment."""

    REGULAR = "regular"
    EXTENDED = "extended"  # pre-market or after-hours: only limit orders with outsideRth
    CLOSED = "closed"


@dataclass(frozen=True)
class DaySession:
    """One NYSE session day; every moment in UTC."""

    day: date
    open: datetime
    close: datetime
    extended_start: datetime  # pre-market start, 04:00 New York
    extended_end: datetime  # after-hours end, 20:00 New York (17:00 after an early close)
    early_close: bool

    def session_at(self, moment: datetime) -> Session:
        """The market's state at `moment` (UTC) by this day's sessions alone."""
        if self.open <= moment < self.close:
            return Session.REGULAR
        if self.extended_start <= moment < self.extended_end:
            return Session.EXTENDED
        return Session.CLOSED


@dataclass(frozen=True)
class _Loaded:
    """Sessions converted from the library, and the allowed windows derived from them."""

    first: date
    last: date
    by_day: dict[date, DaySession]
    sessions: tuple[DaySession, ...]
    extended_starts: tuple[datetime, ...]
    starts: tuple[datetime, ...]  # allowed windows, sorted and disjoint
    ends: tuple[datetime, ...]
    safe_from: datetime  # a moment in [safe_from, safe_until) needs no reload
    safe_until: datetime


class TradingCalendar:
    """When a live rebalance may run, by NYSE's calendar and this deployment's margins."""

    def __init__(
        self,
        *,
        open_delay: timedelta = timedelta(minutes=5),
        close_buffer: timedelta = timedelta(minutes=20),
        extended_hours: bool = False,
    ) -> None:
        if open_delay < timedelta(0) or close_buffer < timedelta(0):
            raise ValueError(
                f"open_delay ({open_delay}) and close_buffer ({close_buffer}) cannot be negative"
            )
        if open_delay + close_buffer >= SHORTEST_SESSION:
            raise ValueError(
                f"open_delay ({open_delay}) plus close_buffer ({close_buffer}) leave no time to trade "
                f"in an early-close session ({SHORTEST_SESSION} long)"
            )
        self.open_delay = open_delay
        self.close_buffer = close_buffer
        self.extended_hours = extended_hours
        self._loaded: _Loaded | None = None

    def session(self, day: date) -> DaySession | None:
        """The NYSE session of `day` (a New York calendar day), or None when the exchange is closed."""
        if isinstance(day, datetime):
            raise TypeError(f"session() takes a date, not the datetime {day}; use session_at() for a moment")
        noon = datetime.combine(day, time(12, 0), NEW_YORK).astimezone(UTC)
        return self._sessions(noon).by_day.get(day)

    def session_at(self, moment: datetime) -> Session:
        """The market's state at `moment`: regular, extended (pre-market or after-hours) or closed."""
        at = _utc(moment)
        loaded = self._sessions(at)
        index = bisect_right(loaded.extended_starts, at) - 1
        return loaded.sessions[index].session_at(at) if index >= 0 else Session.CLOSED

    def can_trade(self, moment: datetime) -> bool:
        """Whether `moment` is inside an allowed window."""
        at = _utc(moment)
        loaded = self._sessions(at)
        index = bisect_right(loaded.ends, at)
        return loaded.starts[index] <= at

    def next_allowed(self, moment: datetime) -> datetime:
        """`moment` (in UTC) when it is inside an allowed window, else the start of the next window."""
        at = _utc(moment)
        loaded = self._sessions(at)
        return max(at, loaded.starts[bisect_right(loaded.ends, at)])

    def next_session_open(self, moment: datetime) -> datetime:
        """The start of the first allowed window that begins strictly after `moment`.

        Inside a window this is the next session day's window; before today's window opens
        (pre-market, or during the open delay) it is today's.
        """
        at = _utc(moment)
        loaded = self._sessions(at)
        return loaded.starts[bisect_right(loaded.starts, at)]

    def window(self, day: DaySession) -> tuple[datetime, datetime]:
        """The allowed window of a session day (UTC): where `can_trade` is true that day."""
        if self.extended_hours:
            return day.extended_start + self.open_delay, day.extended_end - self.close_buffer
        return day.open + self.open_delay, day.close - self.close_buffer

    def describe(self, moment: datetime) -> str:
        """One line for an operator: is the market open to us now, and if not, why and until when.

        "market open (regular session until 16:00 New York)", or "market closed (holiday); the next
        allowed window starts 2026-12-28 09:35 EST".
        """
        at = _utc(moment)
        day = self.session(at.astimezone(NEW_YORK).date())
        if day is None:
            reason = "market closed (weekend)" if _weekend(at) else "market closed (holiday)"
        elif self.can_trade(at):
            return f"market open ({_phase(day, at)})"
        else:
            reason = self._waiting_reason(day, at)
        return f"{reason}; the next allowed window starts {_local(self.next_allowed(at))}"

    def _waiting_reason(self, day: DaySession, at: datetime) -> str:
        state = day.session_at(at)
        if state is Session.CLOSED:
            return "market closed (overnight)"
        if state is Session.EXTENDED and not self.extended_hours:
            return f"market open to extended-hours orders only ({_phase(day, at)}), which are off here"
        if at < self.window(day)[0]:
            return (
                f"market open ({_phase(day, at)}), trading waits {_duration(self.open_delay)} after the start"
            )
        buffer = _duration(self.close_buffer)
        return f"market open ({_phase(day, at)}), inside the closing buffer (the last {buffer})"

    def _sessions(self, at: datetime) -> _Loaded:
        loaded = self._loaded
        if loaded is None or not loaded.safe_from <= at < loaded.safe_until:
            loaded = self._load(at)
        return loaded

    def _load(self, at: datetime) -> _Loaded:
        today = at.astimezone(NEW_YORK).date()
        first, last = today - _LOOK_BACK, today + _LOOK_AHEAD
        if self._loaded is not None:
            first, last = min(first, self._loaded.first), max(last, self._loaded.last)
        sessions = _nyse_sessions(first, last)
        windows = [self.window(day) for day in sessions]
        self._loaded = _Loaded(
            first=first,
            last=last,
            by_day={day.day: day for day in sessions},
            sessions=sessions,
            extended_starts=tuple(day.extended_start for day in sessions),
            starts=tuple(start for start, _ in windows),
            ends=tuple(end for _, end in windows),
            safe_from=datetime.combine(first + timedelta(days=1), time(0), NEW_YORK).astimezone(UTC),
            safe_until=datetime.combine(last, time(0), NEW_YORK).astimezone(UTC) - _MARGIN,
        )
        return self._loaded


@functools.lru_cache(maxsize=4)
def _nyse_sessions(first: date, last: date) -> tuple[DaySession, ...]:
    """NYSE's session days from `first` to `last`, from exchange_calendars (imported here: it is slow).

    Cached: every calendar of the process asking for the same days shares one load."""
    # The library ships no type information.
    import exchange_calendars  # type: ignore[import-untyped]

    with warnings.catch_warnings():
        # exchange_calendars 4.13 reads `Series.values` on its schedule, which pandas 3.1 deprecates
        # (Pandas4Warning); the values it reads are still right. Ignored here only, by its text.
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        calendar = exchange_calendars.get_calendar("XNYS", start=first.isoformat(), end=last.isoformat())
    schedule = calendar.schedule
    early = {label.date() for label in calendar.early_closes}
    return tuple(
        _day_session(label.date(), opened, closed, label.date() in early)
        for label, opened, closed in zip(
            schedule.index,
            schedule["open"].dt.to_pydatetime(),
            schedule["close"].dt.to_pydatetime(),
            strict=True,
        )
    )


def _day_session(day: date, opened: datetime, closed: datetime, early_close: bool) -> DaySession:
    end = EARLY_CLOSE_AFTER_HOURS_END if early_close else AFTER_HOURS_END
    return DaySession(
        day=day,
        open=opened.astimezone(UTC),
        close=closed.astimezone(UTC),
        extended_start=datetime.combine(day, PRE_MARKET_START, NEW_YORK).astimezone(UTC),
        extended_end=datetime.combine(day, end, NEW_YORK).astimezone(UTC),
        early_close=early_close,
    )


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"the trading calendar needs a timezone-aware datetime, got the naive {moment.isoformat()} "
            "(use datetime.now(UTC), or attach the zone it was read in)"
        )
    return moment.astimezone(UTC)


def _weekend(at: datetime) -> bool:
    return at.astimezone(NEW_YORK).weekday() >= 5


def _phase(day: DaySession, at: datetime) -> str:
    """Which part of an open day `at` is in, and until when: "regular session until 16:00 New York"."""
    if day.open <= at < day.close:
        name, end = "regular session", day.close
    elif at < day.open:
        name, end = "pre-market", day.open
    else:
        name, end = "after-hours", day.extended_end
    early = ", early close" if day.early_close and end == day.close else ""
    return f"{name} until {end.astimezone(NEW_YORK):%H:%M} New York{early}"


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds // 60} minutes" if seconds % 60 == 0 else f"{seconds} seconds"


def _local(moment: datetime) -> str:
    return f"{moment.astimezone(NEW_YORK):%Y-%m-%d %H:%M %Z}"


class AlwaysOpen:
    """A market that is always open (the simulated broker's demo, tests): `market_calendar: always_open`.

    With a real gateway IB's own hours still hold market orders outside the session (the broker
    checks them at run time); a failure that waits for "the next session" waits `reopen_after`.
    """

    def __init__(self, reopen_after: timedelta = timedelta(days=1)) -> None:
        self.reopen_after = reopen_after

    def can_trade(self, moment: datetime) -> bool:
        _utc(moment)
        return True

    def next_allowed(self, moment: datetime) -> datetime:
        return _utc(moment)

    def next_session_open(self, moment: datetime) -> datetime:
        return _utc(moment) + self.reopen_after

    def describe(self, moment: datetime) -> str:
        _utc(moment)
        return "market always open (market_calendar: always_open)"
