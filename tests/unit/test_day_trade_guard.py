"""The pattern-day-trader guard's pure decision, and the day-trade facts a broker hands it."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from event_processor.brokers import BrokerExecution, OrderResult
from event_processor.brokers.day_trades import on_trading_day, parse_day_trades_remaining, trading_day
from event_processor.execution.day_trade_guard import (
    PATTERN_DAY_TRADER,
    DayTradeLimit,
    TradesToday,
    decide,
    deferral_message,
)
from event_processor.execution.engine import guard_day_trades
from event_processor.planner import Holding, Plan, PlanInput, PlannedOrder, plan_rebalance
from rebalancer_shared.accounts import PdtProtection
from rebalancer_shared.failures import WaitForSession

SELL_AAA = PlannedOrder("AAA", "SELL", 10, 50.0, 500.0, "not a target")
SELL_DDD = PlannedOrder("DDD", "SELL", 20, 25.0, 500.0, "not a target")
BUY_BBB = PlannedOrder("BBB", "BUY", 3, 100.0, 300.0, "under target")
BUY_CCC = PlannedOrder("CCC", "BUY", 5, 40.0, 200.0, "under target")
PLAN = (SELL_AAA, SELL_DDD, BUY_BBB, BUY_CCC)
# This morning: bought AAA and DDD, sold CCC; BBB not traded.
TODAY = TradesToday(bought=frozenset({"AAA", "DDD"}), sold=frozenset({"CCC"}))


def limit(remaining: int, protection: PdtProtection = PdtProtection.SKIP) -> DayTradeLimit:
    return DayTradeLimit(remaining, protection, TODAY)


def filled(order: PlannedOrder, shares: float | None = None) -> OrderResult:
    quantity = order.quantity if shares is None else shares
    return OrderResult(
        order.symbol, order.action, order.quantity, "MKT", None, "DAY", False, 1, 1, "ev", "Filled", quantity
    )


def test_a_day_trade_is_the_opposite_side_of_todays_trade_in_the_same_stock() -> None:
    assert TODAY.opened_by("AAA", "SELL") == "bought today"
    assert TODAY.opened_by("CCC", "BUY") == "sold today"
    assert TODAY.opened_by("AAA", "BUY") is None, "buying more of what was bought today is no round trip"
    assert TODAY.opened_by("CCC", "SELL") is None
    assert TODAY.opened_by("BBB", "SELL") is None


def test_without_a_limit_or_with_off_every_order_is_placed_where_skip_would_withhold() -> None:
    for unguarded in (decide(PLAN, None), decide(PLAN, limit(0, PdtProtection.OFF))):
        assert unguarded.place == PLAN
        assert unguarded.withheld == ()
        assert not unguarded.defers
    assert decide(PLAN, limit(0)).place == (BUY_BBB,), "the same plan and count under skip"


def test_enough_remaining_places_every_order() -> None:
    decision = decide(PLAN, limit(3))
    assert decision.place == PLAN
    assert decision.day_trades == (SELL_AAA, SELL_DDD, BUY_CCC)
    assert decision.excess == ()


def test_skip_with_none_remaining_withholds_every_day_trade_and_places_the_rest() -> None:
    decision = decide(PLAN, limit(0))
    assert decision.place == (BUY_BBB,)
    assert [(w.symbol, w.action, w.reason) for w in decision.withheld] == [
        ("AAA", "SELL", PATTERN_DAY_TRADER),
        ("DDD", "SELL", PATTERN_DAY_TRADER),
        ("CCC", "BUY", PATTERN_DAY_TRADER),
    ]
    assert decision.withheld[0].detail == (
        "SELL 10 AAA would be a day trade (AAA bought today) beyond DayTradesRemaining 0 "
        "(pdt_protection: skip)"
    )
    assert not decision.defers


def test_skip_places_as_many_day_trades_as_remain_in_plan_order() -> None:
    decision = decide(PLAN, limit(2))
    assert decision.place == (SELL_AAA, SELL_DDD, BUY_BBB)
    assert [w.symbol for w in decision.withheld] == ["CCC"]


def test_defer_goes_ahead_within_the_limit_and_beyond_it_places_nothing_naming_the_excess() -> None:
    within = decide(PLAN, limit(3, PdtProtection.DEFER))
    assert not within.defers
    assert within.place == PLAN
    beyond = decide(PLAN, limit(1, PdtProtection.DEFER))
    assert beyond.defers
    assert beyond.excess == (SELL_DDD, BUY_CCC)
    assert beyond.withheld == ()


def test_the_deferral_message_names_the_trades_the_count_and_the_wait() -> None:
    day_limit = limit(1, PdtProtection.DEFER)
    message = deferral_message("DU1", decide(PLAN, day_limit), day_limit, "nothing placed")
    assert message == (
        "account DU1: pattern-day-trader guard: 3 day trade(s) planned (SELL AAA (bought today), "
        "SELL DDD (bought today), BUY CCC (sold today)) but DayTradesRemaining is 1; nothing placed "
        "(pdt_protection: defer): the run waits for the next session"
    )


def test_the_sells_that_traded_use_the_count_and_what_they_sold_becomes_a_day_trade_to_buy() -> None:
    day_limit = DayTradeLimit(2, PdtProtection.SKIP, TradesToday(bought=frozenset({"AAA"})))
    after = day_limit.after([filled(SELL_AAA), filled(SELL_DDD), filled(BUY_BBB, 0)])
    assert after.remaining == 1, "only the AAA sale was a day trade"
    assert after.today.sold == {"AAA", "DDD"}
    assert after.today.bought == {"AAA"}, "an order that traded nothing adds nothing"
    assert day_limit.after([filled(SELL_AAA)] * 3).remaining == 0, "never below zero"


def test_todays_trades_come_from_the_executions() -> None:
    at = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
    executions = [
        BrokerExecution("AAA", 1, "BUY", 10, 50.0, at),
        BrokerExecution("CCC", 3, "SELL", 5, 40.0, at),
    ]
    assert TradesToday.of(executions) == TradesToday(frozenset({"AAA"}), frozenset({"CCC"}))


def _plan() -> Plan:
    return plan_rebalance(
        PlanInput({"BBB": 1.0}, {"AAA": Holding(10)}, {"AAA": 50.0, "BBB": 100.0}, 0.0, 500.0)
    )


def test_the_engine_withholds_with_skip_and_waits_with_defer() -> None:
    plan = _plan()
    assert [(o.action, o.symbol) for o in plan.orders] == [("SELL", "AAA"), ("BUY", "BBB")]
    today = TradesToday(bought=frozenset({"AAA"}))

    skipped = guard_day_trades(plan, plan.orders, DayTradeLimit(0, PdtProtection.SKIP, today), "DU1", "-")
    assert [(o.action, o.symbol) for o in skipped.orders] == [("BUY", "BBB")]
    assert [(w.action, w.symbol) for w in skipped.withheld] == [("SELL", "AAA")]
    assert skipped.to_dict()["withheld"][0]["reason"] == PATTERN_DAY_TRADER

    with pytest.raises(WaitForSession, match=r"SELL AAA \(bought today\).*is 0; nothing placed"):
        guard_day_trades(
            plan, plan.orders, DayTradeLimit(0, PdtProtection.DEFER, today), "DU1", "nothing placed"
        )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("-1", -1), ("0", 0), ("3", 3), ("2.0", 2), ("", None), (None, None), ("abc", None), ("nan", None)],
)
def test_day_trades_remaining_is_a_count_minus_one_or_none(raw: str | None, expected: int | None) -> None:
    assert parse_day_trades_remaining(raw) == expected


def test_the_trading_day_is_the_new_york_date() -> None:
    evening = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)  # 21:00 on the 1st in New York
    assert trading_day(evening) == date(2026, 12, 1)
    late = BrokerExecution("AAA", 1, "BUY", 1, 1.0, evening)
    noon = BrokerExecution("AAA", 1, "BUY", 1, 1.0, datetime(2026, 12, 2, 17, 0, tzinfo=UTC))
    assert on_trading_day([late, noon], date(2026, 12, 2)) == [noon]
