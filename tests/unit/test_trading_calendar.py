"""The NYSE trading calendar against NYSE's published holidays and early closes, the allowed windows
around open, close, weekends, holidays and DST, and the fake gateway's own calendar."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from event_processor.trading_calendar import Session, TradingCalendar
from tests.fakes.tws.market_hours import MarketCalendar

NEW_YORK = ZoneInfo("America/New_York")

# NYSE's published calendar, written out by hand (not read from the library under test).
PUBLISHED_HOLIDAYS = {
    2026: [
        "2026-01-01",  # New Year's Day
        "2026-01-19",  # Martin Luther King, Jr. Day
        "2026-02-16",  # Washington's Birthday
        "2026-04-03",  # Good Friday
        "2026-05-25",  # Memorial Day
        "2026-06-19",  # Juneteenth
        "2026-07-03",  # Independence Day, observed (July 4 is a Saturday)
        "2026-09-07",  # Labor Day
        "2026-11-26",  # Thanksgiving Day
        "2026-12-25",  # Christmas Day
    ],
    2027: [
        "2027-01-01",
        "2027-01-18",
        "2027-02-15",
        "2027-03-26",  # Good Friday
        "2027-05-31",
        "2027-06-18",  # Juneteenth, observed (June 19 is a Saturday)
        "2027-07-05",  # Independence Day, observed (July 4 is a Sunday)
        "2027-09-06",
        "2027-11-25",
        "2027-12-24",  # Christmas, observed (December 25 is a Saturday)
    ],
}
# 13:00 closes. None on 2026-07-02 or 2027-07-02 (Independence Day is observed on the Friday or the
# Monday, so there is no trading day "before Independence Day" that closes early), none on
# 2027-12-23 (Christmas observed on Friday the 24th), and New Year's Day 2028, a Saturday, is not
# observed on 2027-12-31, which is a full session.
PUBLISHED_EARLY_CLOSES = {2026: ["2026-11-27", "2026-12-24"], 2027: ["2027-11-26"]}


def ny(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=NEW_YORK)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


@pytest.fixture(scope="module")
def calendar() -> TradingCalendar:
    return TradingCalendar()


@pytest.fixture(scope="module")
def extended() -> TradingCalendar:
    return TradingCalendar(extended_hours=True)


# --- NYSE's published calendar ---------------------------------------------------------------------


@pytest.mark.parametrize("year", [2026, 2027])
def test_weekdays_closed_are_exactly_the_published_holidays(calendar: TradingCalendar, year: int) -> None:
    weekdays = [d for d in days(date(year, 1, 1), date(year, 12, 31)) if d.weekday() < 5]
    closed = [d.isoformat() for d in weekdays if calendar.session(d) is None]
    assert closed == PUBLISHED_HOLIDAYS[year]


@pytest.mark.parametrize("year", [2026, 2027])
def test_weekends_are_closed(calendar: TradingCalendar, year: int) -> None:
    weekends = [d for d in days(date(year, 1, 1), date(year, 12, 31)) if d.weekday() >= 5]
    assert [d for d in weekends if calendar.session(d) is not None] == []


@pytest.mark.parametrize("year", [2026, 2027])
def test_early_closes_are_exactly_the_published_ones_at_13_00(calendar: TradingCalendar, year: int) -> None:
    sessions = [s for d in days(date(year, 1, 1), date(year, 12, 31)) if (s := calendar.session(d))]
    early = [s.day.isoformat() for s in sessions if s.early_close]
    assert early == PUBLISHED_EARLY_CLOSES[year]
    for session in sessions:
        local_open, local_close = session.open.astimezone(NEW_YORK), session.close.astimezone(NEW_YORK)
        assert (local_open.hour, local_open.minute) == (9, 30), session
        assert (local_close.hour, local_close.minute) == ((13, 0) if session.early_close else (16, 0)), (
            session
        )


@pytest.mark.parametrize("day", ["2026-07-02", "2027-07-02", "2027-12-23", "2027-12-31"])
def test_days_next_to_weekend_holidays_are_full_sessions(calendar: TradingCalendar, day: str) -> None:
    session = calendar.session(date.fromisoformat(day))
    assert session is not None
    assert not session.early_close
    assert session.close == ny(f"{day} 16:00")


def test_session_gives_regular_and_extended_hours_in_utc(calendar: TradingCalendar) -> None:
    session = calendar.session(date(2026, 12, 2))
    assert session is not None
    assert (session.open, session.close) == (utc("2026-12-02 14:30"), utc("2026-12-02 21:00"))
    assert (session.extended_start, session.extended_end) == (
        utc("2026-12-02 09:00"),
        utc("2026-12-03 01:00"),
    )
    assert session.open.tzinfo is UTC


def test_an_early_close_day_ends_after_hours_at_17_00(calendar: TradingCalendar) -> None:
    session = calendar.session(date(2026, 11, 27))
    assert session is not None
    assert session.early_close
    assert (session.close, session.extended_end) == (ny("2026-11-27 13:00"), ny("2026-11-27 17:00"))


def test_session_refuses_a_datetime(calendar: TradingCalendar) -> None:
    with pytest.raises(TypeError, match="session_at"):
        calendar.session(ny("2026-12-02 10:00"))


# --- allowed windows ------------------------------------------------------------------------------


def test_a_saturday_waits_for_monday_open_plus_delay(calendar: TradingCalendar) -> None:
    saturday = ny("2026-12-05 11:00")
    assert not calendar.can_trade(saturday)
    assert calendar.session_at(saturday) is Session.CLOSED
    assert calendar.next_allowed(saturday) == ny("2026-12-07 09:35")


def test_a_holiday_waits_for_the_next_session(calendar: TradingCalendar) -> None:
    christmas = ny("2026-12-25 10:00")
    assert not calendar.can_trade(christmas)
    assert calendar.next_allowed(christmas) == ny("2026-12-28 09:35")
    assert calendar.next_allowed(ny("2026-11-26 10:00")) == ny("2026-11-27 09:35")  # Thanksgiving


def test_fifteen_minutes_before_an_early_close_waits_for_the_next_day(calendar: TradingCalendar) -> None:
    moment = ny("2026-11-27 12:45")
    assert calendar.session_at(moment) is Session.REGULAR
    assert not calendar.can_trade(moment)
    assert calendar.next_allowed(moment) == ny("2026-11-30 09:35")
    assert calendar.can_trade(ny("2026-11-27 12:39"))


def test_right_after_the_open_waits_for_the_open_delay(calendar: TradingCalendar) -> None:
    moment = ny("2026-12-02 09:31")
    assert calendar.session_at(moment) is Session.REGULAR
    assert not calendar.can_trade(moment)
    assert calendar.next_allowed(moment) == ny("2026-12-02 09:35")


def test_window_edges_start_included_end_excluded(calendar: TradingCalendar) -> None:
    assert calendar.can_trade(ny("2026-12-02 09:35"))
    assert not calendar.can_trade(ny("2026-12-02 09:34:59.999999"))
    assert calendar.can_trade(ny("2026-12-02 15:39:59.999999"))
    assert not calendar.can_trade(ny("2026-12-02 15:40"))
    assert calendar.next_allowed(ny("2026-12-02 15:40")) == ny("2026-12-03 09:35")


def test_a_tradeable_moment_is_its_own_next_allowed_in_utc(calendar: TradingCalendar) -> None:
    moment = ny("2026-12-02 11:00")
    assert calendar.can_trade(moment)
    allowed = calendar.next_allowed(moment)
    assert allowed == moment
    assert allowed.tzinfo is UTC


def test_the_regular_calendar_refuses_extended_hours(calendar: TradingCalendar) -> None:
    pre_market, after_hours = ny("2026-12-02 08:00"), ny("2026-12-02 17:00")
    assert calendar.session_at(pre_market) is Session.EXTENDED
    assert calendar.session_at(after_hours) is Session.EXTENDED
    assert not calendar.can_trade(pre_market)
    assert not calendar.can_trade(after_hours)
    assert calendar.next_allowed(pre_market) == ny("2026-12-02 09:35")
    assert calendar.next_allowed(after_hours) == ny("2026-12-03 09:35")


def test_extended_hours_allow_pre_market_and_after_hours(extended: TradingCalendar) -> None:
    assert not extended.can_trade(ny("2026-12-02 04:01"))
    assert extended.next_allowed(ny("2026-12-02 04:01")) == ny("2026-12-02 04:05")
    assert extended.can_trade(ny("2026-12-02 04:05"))
    assert extended.can_trade(ny("2026-12-02 09:31"))  # the delay applies to the day's first start only
    assert extended.can_trade(ny("2026-12-02 19:39"))
    assert not extended.can_trade(ny("2026-12-02 19:40"))
    assert extended.next_allowed(ny("2026-12-02 19:40")) == ny("2026-12-03 04:05")


def test_extended_hours_end_at_17_00_on_an_early_close_day(extended: TradingCalendar) -> None:
    assert extended.session_at(ny("2026-11-27 16:59")) is Session.EXTENDED
    assert extended.session_at(ny("2026-11-27 17:00")) is Session.CLOSED
    assert extended.can_trade(ny("2026-11-27 16:39"))
    assert not extended.can_trade(ny("2026-11-27 16:40"))
    assert extended.next_allowed(ny("2026-11-27 16:40")) == ny("2026-11-30 04:05")


def test_extended_hours_are_closed_on_holidays_and_weekends(extended: TradingCalendar) -> None:
    assert extended.session_at(ny("2026-12-25 08:00")) is Session.CLOSED
    assert not extended.can_trade(ny("2026-12-25 08:00"))
    assert not extended.can_trade(ny("2026-12-05 08:00"))


@pytest.mark.parametrize(
    ("day", "open_utc"),
    [
        ("2026-03-06", "2026-03-06 14:30"),  # EST, the Friday before the clocks change (Sunday 8 March)
        ("2026-03-09", "2026-03-09 13:30"),  # EDT
        ("2026-10-30", "2026-10-30 13:30"),  # EDT, the Friday before the clocks change back (1 November)
        ("2026-11-02", "2026-11-02 14:30"),  # EST
    ],
)
def test_the_open_is_09_30_new_york_across_dst(calendar: TradingCalendar, day: str, open_utc: str) -> None:
    session = calendar.session(date.fromisoformat(day))
    assert session is not None
    assert session.open == utc(open_utc)
    assert session.close == utc(open_utc) + timedelta(hours=6, minutes=30)


def test_next_allowed_across_a_dst_weekend(calendar: TradingCalendar) -> None:
    assert calendar.next_allowed(utc("2026-03-07 12:00")) == utc("2026-03-09 13:35")
    assert calendar.next_allowed(utc("2026-10-31 12:00")) == utc("2026-11-02 14:35")


def test_next_session_open_from_inside_a_session_is_the_next_days_window(calendar: TradingCalendar) -> None:
    assert calendar.next_session_open(ny("2026-12-02 11:00")) == ny("2026-12-03 09:35")
    assert calendar.next_session_open(ny("2026-12-02 09:35")) == ny("2026-12-03 09:35")
    assert calendar.next_session_open(ny("2026-12-04 11:00")) == ny("2026-12-07 09:35")  # a Friday
    assert calendar.next_session_open(ny("2026-12-24 11:00")) == ny("2026-12-28 09:35")  # before Christmas


def test_next_session_open_outside_a_window_is_the_next_window(calendar: TradingCalendar) -> None:
    assert calendar.next_session_open(ny("2026-12-02 07:00")) == ny("2026-12-02 09:35")
    assert calendar.next_session_open(ny("2026-12-02 17:00")) == ny("2026-12-03 09:35")
    assert calendar.next_session_open(ny("2026-12-05 11:00")) == ny("2026-12-07 09:35")


def test_margins_are_configurable() -> None:
    calendar = TradingCalendar(open_delay=timedelta(0), close_buffer=timedelta(0))
    assert calendar.can_trade(ny("2026-12-02 09:30"))
    assert calendar.can_trade(ny("2026-12-02 15:59"))
    assert not calendar.can_trade(ny("2026-12-02 16:00"))
    assert TradingCalendar(open_delay=timedelta(minutes=15)).next_allowed(ny("2026-12-02 09:00")) == ny(
        "2026-12-02 09:45"
    )


@pytest.mark.parametrize(
    ("open_delay", "close_buffer"),
    [
        (timedelta(minutes=-1), timedelta(0)),
        (timedelta(0), timedelta(seconds=-1)),
        (timedelta(hours=2), timedelta(hours=2)),
    ],
)
def test_margins_that_leave_no_window_are_refused(open_delay: timedelta, close_buffer: timedelta) -> None:
    with pytest.raises(ValueError, match="close_buffer"):
        TradingCalendar(open_delay=open_delay, close_buffer=close_buffer)


@pytest.mark.parametrize(
    "ask",
    [
        TradingCalendar.can_trade,
        TradingCalendar.session_at,
        TradingCalendar.next_allowed,
        TradingCalendar.next_session_open,
        TradingCalendar.describe,
    ],
)
def test_a_naive_datetime_is_refused(
    calendar: TradingCalendar, ask: Callable[[TradingCalendar, datetime], object]
) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ask(calendar, datetime(2026, 12, 2, 11, 0))


def test_any_zone_gives_the_same_answer(calendar: TradingCalendar) -> None:
    tokyo = datetime(2026, 12, 3, 1, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # 11:00 New York, 2 December
    assert calendar.can_trade(tokyo)
    assert calendar.next_session_open(tokyo) == ny("2026-12-03 09:35")


def test_moments_far_from_the_first_question_load_more_sessions() -> None:
    calendar = TradingCalendar()
    assert calendar.next_allowed(ny("2026-12-05 11:00")) == ny("2026-12-07 09:35")
    assert calendar.next_allowed(ny("2029-12-25 11:00")) == ny("2029-12-26 09:35")
    assert calendar.next_allowed(ny("2024-07-04 11:00")) == ny("2024-07-05 09:35")
    assert calendar.next_allowed(ny("2026-12-25 11:00")) == ny("2026-12-28 09:35")


# --- describe ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "line"),
    [
        ("2026-12-02 11:00", "market open (regular session until 16:00 New York)"),
        ("2026-11-27 11:00", "market open (regular session until 13:00 New York, early close)"),
        ("2026-12-25 11:00", "market closed (holiday); the next allowed window starts 2026-12-28 09:35 EST"),
        ("2026-12-05 11:00", "market closed (weekend); the next allowed window starts 2026-12-07 09:35 EST"),
        (
            "2026-12-02 02:00",
            "market closed (overnight); the next allowed window starts 2026-12-02 09:35 EST",
        ),
        (
            "2026-12-02 09:31",
            "market open (regular session until 16:00 New York), trading waits 5 minutes after the start; "
            "the next allowed window starts 2026-12-02 09:35 EST",
        ),
        (
            "2026-11-27 12:45",
            "market open (regular session until 13:00 New York, early close), inside the closing buffer "
            "(the last 20 minutes); the next allowed window starts 2026-11-30 09:35 EST",
        ),
        (
            "2026-12-02 17:00",
            "market open to extended-hours orders only (after-hours until 20:00 New York), which are off "
            "here; the next allowed window starts 2026-12-03 09:35 EST",
        ),
        ("2027-06-01 11:00", "market open (regular session until 16:00 New York)"),
        ("2027-06-18 11:00", "market closed (holiday); the next allowed window starts 2027-06-21 09:35 EDT"),
    ],
)
def test_describe(calendar: TradingCalendar, moment: str, line: str) -> None:
    assert calendar.describe(ny(moment)) == line


def test_describe_with_extended_hours(extended: TradingCalendar) -> None:
    assert extended.describe(ny("2026-12-02 05:00")) == "market open (pre-market until 09:30 New York)"
    assert extended.describe(ny("2026-11-27 16:00")) == "market open (after-hours until 17:00 New York)"
    assert extended.describe(ny("2026-12-02 03:00")) == (
        "market closed (overnight); the next allowed window starts 2026-12-02 04:05 EST"
    )


# --- the fake gateway's own calendar ---------------------------------------------------------------


def test_the_fake_gateway_agrees_with_the_product_calendar(calendar: TradingCalendar) -> None:
    fake = MarketCalendar()
    disagreements = []
    for day in days(date(2026, 11, 1), date(2027, 12, 31)):
        session = calendar.session(day)
        ours = (
            None
            if session is None
            else ((session.open, session.close), (session.extended_start, session.extended_end))
        )
        regular, extended = fake.regular(day), fake.extended(day)
        theirs = None if regular is None or extended is None else (regular, extended)
        if ours != theirs:
            disagreements.append(f"{day}: product {ours}, fake {theirs}")
    assert disagreements == []


# --- cost -------------------------------------------------------------------------------------------


def test_importing_the_module_does_not_import_pandas() -> None:
    code = (
        "import sys; import event_processor.trading_calendar as c; "
        "assert 'pandas' not in sys.modules and 'exchange_calendars' not in sys.modules; "
        "c.TradingCalendar().can_trade(c.datetime.now(c.UTC)); assert 'exchange_calendars' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
