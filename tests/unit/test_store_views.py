"""The store's views: times read back from any database are aware and in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from rebalancer_shared.store.views import as_utc


def test_a_naive_time_as_sqlite_returns_it_is_taken_as_utc() -> None:
    assert as_utc(datetime(2026, 11, 21, 10, 0)) == datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    assert as_utc(datetime(2026, 11, 21, 10, 0)).tzinfo is UTC


def test_an_aware_time_in_another_zone_is_the_same_moment_in_utc() -> None:
    paris = datetime(2026, 11, 21, 11, 0, tzinfo=timezone(timedelta(hours=1)))
    moved = as_utc(paris)
    assert (moved, moved.tzinfo, moved.hour) == (paris, UTC, 10)
