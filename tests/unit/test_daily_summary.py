"""The `daily` summary's day: it ends at the configured local time, is 23 or 25 hours across a
change of summer time, and a zone or time that cannot be used is refused naming the setting."""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from management_service.notifications.daily import day_ending
from management_service.notifications.daily_facts import DayFacts, OrderTally, Tally
from management_service.notifications.messages import daily_message
from rebalancer_shared.config import load_settings
from rebalancer_shared.errors import ConfigError
from rebalancer_shared.notification_targets import NotifyOn

NEW_YORK = ZoneInfo("America/New_York")
AFTER_CLOSE = time(17, 30)


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_the_day_ends_at_the_summary_time_today_once_it_has_passed_else_yesterday() -> None:
    # 17:30 New York in December is 22:30 UTC.
    assert day_ending(utc(2026, 12, 3, 22, 30), AFTER_CLOSE, NEW_YORK) == (
        utc(2026, 12, 2, 22, 30),
        utc(2026, 12, 3, 22, 30),
    )
    assert day_ending(utc(2026, 12, 3, 22, 29), AFTER_CLOSE, NEW_YORK)[1] == utc(2026, 12, 2, 22, 30)
    # 01:00 UTC on the 4th is still the 3rd in New York: that day's 17:30 has passed.
    assert day_ending(utc(2026, 12, 4, 1, 0), AFTER_CLOSE, NEW_YORK)[1] == utc(2026, 12, 3, 22, 30)


def test_a_day_across_a_change_of_summer_time_is_23_or_25_hours() -> None:
    start, end = day_ending(utc(2026, 3, 9, 0, 0), AFTER_CLOSE, NEW_YORK)  # clocks went forward on 8 March
    assert (start, end) == (utc(2026, 3, 7, 22, 30), utc(2026, 3, 8, 21, 30))
    assert (end - start).total_seconds() == 23 * 3600
    start, end = day_ending(utc(2026, 11, 2, 0, 0), AFTER_CLOSE, NEW_YORK)  # back on 1 November
    assert (end - start).total_seconds() == 25 * 3600


def test_a_summary_time_skipped_by_summer_time_is_the_hour_after() -> None:
    assert day_ending(utc(2026, 3, 8, 12, 0), time(2, 30), NEW_YORK)[1] == utc(2026, 3, 8, 7, 30)  # 03:30 EDT


def test_the_settings_are_read_from_config_yaml_and_bad_ones_named(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "notifications:\n  daily_summary_at: '18:05'\n  daily_summary_timezone: Europe/Zurich\n"
        "  targets:\n    - url: json://127.0.0.1/hook\n      on: [daily]\n"
    )
    notifications = load_settings(config, environ={}).notifications
    assert notifications.daily_summary_at == time(18, 5)
    assert notifications.daily_zone == ZoneInfo("Europe/Zurich")
    assert notifications.targets[0].on == (NotifyOn.DAILY,)

    config.write_text("notifications:\n  daily_summary_timezone: New York\n")
    with pytest.raises(ConfigError, match=r"daily_summary_timezone.*unknown time zone 'New York'"):
        load_settings(config, environ={})
    config.write_text("notifications:\n  daily_summary_at: '25:00'\n")
    with pytest.raises(ConfigError, match=r"daily_summary_at"):
        load_settings(config, environ={})


def test_a_summary_of_many_accounts_lists_thirty_and_counts_the_rest() -> None:
    tallies = tuple(Tally(f"DU{n:03}", "rebalance", "completed", 1) for n in range(45))
    orders = (OrderTally("DU000", 4, 2, 1, 1234.5),)  # one of a stopped run, not settled
    message = daily_message(
        utc(2026, 12, 2, 22, 30), utc(2026, 12, 3, 22, 30), NEW_YORK, DayFacts(tallies, orders)
    )
    lines = message.body.splitlines()
    assert lines[0] == "24 hours to 2026-12-03 17:30 EST (2026-12-03 22:30:00 UTC)."
    assert "Live 4 orders, 2 filled, 1 ended unfilled, 1 outcome unknown (1,234.50 in value)." in lines
    assert sum(line.startswith("- DU") for line in lines) == 30
    assert lines[-1] == "- ... and 15 more accounts"
    assert message.title == "rebalancer daily summary 2026-12-03: 2 orders filled, 0 failed runs"
