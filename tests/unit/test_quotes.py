"""Which price a snapshot gives (event_processor.brokers.quotes): every field by its age and spread."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from event_processor.brokers.quotes import (
    PriceRules,
    Quote,
    choose_price,
    latest_session_close,
    limit_side,
    previous_session_close,
    price_problems,
)

# Tuesday 2024-01-09 10:00 New York (15:00 UTC).
TUESDAY_10 = datetime(2024, 1, 9, 15, 0, tzinfo=UTC)
RULES = PriceRules(max_age_seconds=900.0, max_spread_pct=5.0)


def quote(**fields: object) -> Quote:
    return Quote(symbol="X", received_at=TUESDAY_10, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("moment", "latest", "previous"),
    [
        (TUESDAY_10, "2024-01-08 21:00", "2024-01-08 21:00"),  # Monday's close, both
        (datetime(2024, 1, 9, 22, 0, tzinfo=UTC), "2024-01-09 21:00", "2024-01-08 21:00"),  # 17:00
        (datetime(2024, 1, 13, 15, 0, tzinfo=UTC), "2024-01-12 21:00", "2024-01-11 21:00"),  # Saturday
        (datetime(2024, 1, 15, 14, 0, tzinfo=UTC), "2024-01-12 21:00", "2024-01-11 21:00"),  # Mon 09:00
    ],
    ids=["in-session", "after-the-close", "saturday", "monday-before-the-open"],
)
def test_session_closes_are_weekdays_at_16_new_york(moment: datetime, latest: str, previous: str) -> None:
    assert latest_session_close(moment) == datetime.fromisoformat(latest).replace(tzinfo=UTC)
    assert previous_session_close(moment) == datetime.fromisoformat(previous).replace(tzinfo=UTC)


def test_preference_is_last_then_mid_then_close_when_each_is_fresh() -> None:
    fresh_last = TUESDAY_10 - timedelta(seconds=30)
    chosen = choose_price(quote(last=10.0, bid=9.9, ask=10.1, last_time=fresh_last), TUESDAY_10, RULES)
    assert chosen is not None
    assert (chosen.price, chosen.source) == (10.0, "last")
    mid = choose_price(quote(bid=9.75, ask=10.25), TUESDAY_10, RULES)
    assert mid is not None
    assert (mid.price, mid.source) == (10.0, "mid")
    close = choose_price(quote(close=8.0), TUESDAY_10, PriceRules(86_400.0, 5.0))
    assert close is not None
    assert (close.price, close.source) == (8.0, "close")


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"last": 10.0}, "last has no known time"),
        ({"last": 10.0, "last_time": TUESDAY_10 - timedelta(hours=1)}, "last is 3600 s old (max 900)"),
        ({"close": 8.0}, "close is 64800 s old (max 900)"),  # Monday 16:00 -> Tuesday 10:00
        ({"bid": 9.75, "ask": 10.25, "market_data_type": 3}, "mid is 1200 s old (max 900)"),
        ({"bid": 9.75, "ask": 10.25, "market_data_type": 2}, "mid is 64800 s old (max 900)"),
        (
            {"last": 10.0, "last_time": TUESDAY_10, "market_data_type": 3},
            "last is 1200 s old (max 900)",  # a delayed trade is at least as old as the delay
        ),
        ({"bid": 9.0, "ask": 11.0}, "bid/ask 9.0/11.0 wider than 5 % of the midpoint"),
        ({"bid": 10.5, "ask": 9.5}, "bid/ask 10.5/9.5 crossed"),
        ({"last": 0.0, "last_time": TUESDAY_10}, "last 0.0 is not a price"),
    ],
)
def test_a_field_is_not_used_and_the_reason_is_given(fields: dict[str, object], problem: str) -> None:
    q = quote(**fields)
    assert choose_price(q, TUESDAY_10, RULES) is None
    assert problem in price_problems(q, TUESDAY_10, RULES)


def test_a_limit_side_comes_only_from_a_fresh_quote_with_a_sane_spread() -> None:
    q = quote(bid=99.5, ask=100.5)
    assert limit_side(q, "BUY", TUESDAY_10, RULES) == 100.5
    assert limit_side(q, "SELL", TUESDAY_10, RULES) == 99.5
    assert limit_side(q, "BUY", TUESDAY_10 + timedelta(minutes=16), RULES) is None
    assert limit_side(q, "BUY", TUESDAY_10, PriceRules(900.0, 0.5)) is None
    assert limit_side(quote(bid=101.0, ask=99.0), "BUY", TUESDAY_10, RULES) is None
    assert limit_side(None, "BUY", TUESDAY_10, RULES) is None
