"""SimulatedBroker: the in-memory account behind the demo and the benchmarks."""

from __future__ import annotations

import math
import time

import pytest

from event_processor.brokers import (
    Broker,
    BrokerError,
    OrderRequest,
    ReadOnlyBroker,
    ReadOnlyBrokerView,
    SimulatedBroker,
)


def _broker(**knobs: object) -> SimulatedBroker:
    broker = SimulatedBroker({"AAA": 50.0, "BBB": 100.0}, **knobs)  # type: ignore[arg-type]
    broker.add_account("SIM1", 1_000.0, {"AAA": 10.0}, other_positions={"BOND1": ("BOND", 3.0)})
    return broker


async def test_market_orders_fill_at_the_given_prices_and_move_shares_and_cash() -> None:
    broker = _broker()

    placed = await broker.place_orders(
        "SIM1", [OrderRequest("AAA", "SELL", 4, 50.0), OrderRequest("BBB", "BUY", 5, 100.0)], order_ref="ev"
    )
    results = await broker.wait_for_fills("SIM1", [p.order_id for p in placed], timeout_seconds=1)

    assert [(r.status, r.filled_quantity, r.avg_fill_price) for r in results] == [
        ("Filled", 4.0, 50.0),
        ("Filled", 5.0, 100.0),
    ]
    values = await broker.get_account_values("SIM1")
    assert values.total_cash == 1_000.0 + 4 * 50 - 5 * 100
    assert values.net_liquidation == values.total_cash + 6 * 50 + 5 * 100
    stocks = {p.symbol: p.quantity for p in await broker.get_positions("SIM1") if p.sec_type == "STK"}
    assert stocks == {"AAA": 6.0, "BBB": 5.0}


async def test_every_order_placed_is_recorded_with_its_order_ref() -> None:
    broker = _broker()

    await broker.place_orders("SIM1", [OrderRequest("AAA", "SELL", 1, 50.0)], order_ref="ev-1")
    await broker.place_orders("SIM1", [OrderRequest("BBB", "BUY", 1, 100.0)], order_ref="ev-2")

    assert [(o.symbol, o.action, o.order_ref) for o in broker.placed_orders] == [
        ("AAA", "SELL", "ev-1"),
        ("BBB", "BUY", "ev-2"),
    ]
    assert len({o.order_id for o in broker.placed_orders}) == 2


async def test_a_partial_fill_leaves_the_rest_open_until_it_is_cancelled() -> None:
    broker = _broker(partial_fills={"BBB": 0.4})

    [placed] = await broker.place_orders("SIM1", [OrderRequest("BBB", "BUY", 5, 100.0)], order_ref="ev")
    [result] = await broker.wait_for_fills("SIM1", [placed.order_id], timeout_seconds=0.01)

    assert (result.status, result.filled_quantity) == ("Submitted", 2.0)
    assert [o.order_id for o in await broker.get_open_orders("SIM1")] == [placed.order_id]
    cancelled = await broker.cancel_open_orders("SIM1", timeout_seconds=1)
    assert [o.order_id for o in cancelled] == [placed.order_id]
    assert await broker.get_open_orders("SIM1") == []
    [after] = await broker.wait_for_fills("SIM1", [placed.order_id], timeout_seconds=0.01)
    assert after.status == "Cancelled"


async def test_a_rejected_symbol_fills_nothing_and_says_why() -> None:
    broker = _broker(rejections={"BBB": "no permission"})

    [placed] = await broker.place_orders("SIM1", [OrderRequest("BBB", "BUY", 5, 100.0)], order_ref="ev")

    assert placed.filled_quantity == 0
    assert placed.is_done
    assert "no permission" in placed.message
    assert (await broker.get_account_values("SIM1")).total_cash == 1_000.0


async def test_prices_leave_out_zero_nan_negative_and_unknown_symbols() -> None:
    broker = _broker()
    broker.prices.update({"ZERO": 0.0, "NAN": math.nan, "NEG": -1.0})

    prices = await broker.get_prices(["AAA", "ZERO", "NAN", "NEG", "NONE"])

    assert prices == {"AAA": 50.0}


async def test_every_call_waits_the_configured_latency() -> None:
    broker = _broker(latency_seconds=0.05)

    started = time.monotonic()
    await broker.get_positions("SIM1")
    await broker.get_prices(["AAA"])

    assert time.monotonic() - started >= 0.1


async def test_cancels_never_confirmed_raise_after_the_timeout() -> None:
    broker = _broker(confirm_cancels=False)
    broker.add_open_order("SIM1", "AAA", "SELL", 2)

    with pytest.raises(BrokerError, match=r"1 open order\(s\) not cancelled within 0\.05 s"):
        await broker.cancel_open_orders("SIM1", timeout_seconds=0.05)


async def test_an_unknown_account_is_a_broker_error_naming_it() -> None:
    with pytest.raises(BrokerError, match="NOPE"):
        await _broker().get_positions("NOPE")


async def test_the_read_only_view_reads_through_but_has_no_write_attributes() -> None:
    broker = _broker()
    view = ReadOnlyBrokerView(broker)

    assert isinstance(broker, Broker)
    assert isinstance(view, ReadOnlyBroker)
    assert not isinstance(view, Broker)
    assert await view.get_positions("SIM1") == await broker.get_positions("SIM1")
    for write in ("place_orders", "cancel_open_orders", "wait_for_fills", "close"):
        assert not hasattr(view, write)
    with pytest.raises(AttributeError):
        view.place_orders = broker.place_orders  # type: ignore[attr-defined]


async def test_a_rejected_sell_means_no_buys_are_placed_so_cash_never_goes_below_the_reserve() -> None:
    import pytest

    from event_processor.execution import ExecutionFailed, rebalance
    from rebalancer_shared.accounts import RebalancingSettings

    broker = SimulatedBroker({"AAA": 100.0, "BBB": 100.0}, rejections={"AAA": "halted"})
    broker.add_account("DU1", 1_000.0, {"AAA": 490})
    with pytest.raises(ExecutionFailed):
        await rebalance(broker, "DU1", {"AAA": 0.5, "BBB": 0.5}, RebalancingSettings(), "ev-1")
    assert [o.action for o in broker.placed_orders] == ["SELL"]
    assert broker.accounts["DU1"].cash == 1_000.0


async def test_every_stock_is_its_symbols_us_listing_and_each_position_has_a_conid_of_its_own() -> None:
    broker = _broker()

    positions = {p.symbol: p for p in await broker.get_positions("SIM1")}
    listings = await broker.get_listings(["AAA", "BBB"])

    assert listings["AAA"].con_id == positions["AAA"].con_id != positions["BOND1"].con_id
    assert (positions["AAA"].currency, listings["BBB"].currency) == ("USD", "USD")
    assert len({p.con_id for p in positions.values()} | {listings["BBB"].con_id}) == 3
    assert (await broker.get_account_values("SIM1")).currency == "USD"


async def test_its_own_fills_are_the_days_executions_and_day_trades_are_unlimited_unless_set() -> None:
    from datetime import UTC, datetime, timedelta

    from event_processor.brokers import BrokerExecution

    clock = [datetime(2026, 12, 2, 15, 0, tzinfo=UTC)]
    broker = SimulatedBroker({"AAA": 50.0, "BBB": 100.0}, clock=lambda: clock[0])
    broker.add_account("SIM1", 1_000.0, {"AAA": 10.0})
    broker.add_account("SIM2", 1_000.0, day_trades_remaining=2)
    broker.add_execution("SIM1", BrokerExecution("BBB", 7, "SELL", 1, 100.0, clock[0] - timedelta(days=1)))

    await broker.place_orders("SIM1", [OrderRequest("AAA", "SELL", 4, 50.0)], order_ref="ev")
    today = await broker.get_todays_executions("SIM1")
    clock[0] += timedelta(days=1)
    tomorrow = await broker.get_todays_executions("SIM1")

    assert [(e.symbol, e.side, e.shares, e.price, e.time) for e in today] == [
        ("AAA", "SELL", 4.0, 50.0, datetime(2026, 12, 2, 15, 0, tzinfo=UTC))
    ]
    assert tomorrow == []
    assert await broker.get_day_trades_remaining("SIM1") == -1
    assert await broker.get_day_trades_remaining("SIM2") == 2
    view = ReadOnlyBrokerView(broker)
    assert await view.get_todays_executions("SIM2") == []
    assert await view.get_day_trades_remaining("SIM2") == 2


async def test_the_guard_withholds_a_day_trade_on_the_simulated_broker_too() -> None:
    from datetime import UTC, datetime

    from event_processor.execution import rebalance
    from rebalancer_shared.accounts import PdtProtection, RebalancingSettings

    now = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
    broker = SimulatedBroker({"AAA": 100.0, "BBB": 100.0}, clock=lambda: now)
    broker.add_account("DU1", 0.0, {"BBB": 10}, day_trades_remaining=0)
    settings = RebalancingSettings(pdt_protection=PdtProtection.SKIP)
    await rebalance(broker, "DU1", {"AAA": 0.5, "BBB": 0.5}, settings, "ev-1")  # buys 5 AAA: this morning
    placed_before = len(broker.placed_orders)

    report = await rebalance(broker, "DU1", {"BBB": 1.0}, settings, "ev-2")  # back: two round trips

    assert broker.placed_orders[placed_before:] == []
    assert report.plan is not None
    assert [(w.action, w.symbol) for w in report.plan.withheld] == [("SELL", "AAA"), ("BUY", "BBB")]
    assert report.message == "nothing placed; withheld by the pattern-day-trader guard: SELL 5 AAA, BUY 5 BBB"
