"""The execution engine against both brokers: IbkrBroker + loopback TWS, and SimulatedBroker.

Each scenario runs through a small harness that sets the account up and reads back what the broker
saw, so the same assertions hold for the real client library and for the in-memory account.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol, TypedDict

import pytest

from event_processor.brokers import Broker, BrokerError, IbkrBroker, ReadOnlyBrokerView, SimulatedBroker
from event_processor.execution import (
    ExecutionFailed,
    Outcome,
    cancel_orders,
    print_equity,
    print_orders,
    print_positions,
    print_rebalance,
    rebalance,
)
from event_processor.planner import PlanError
from rebalancer_shared.accounts import RebalancingSettings
from rebalancer_shared.config import OrderSettings
from rebalancer_shared.events import Command
from tests.fakes.tws import FakeOrder, FakeQuote, FakeTws, TwsState, serve
from tests.fakes.tws.scenarios import (
    ACCOUNT,
    CASH,
    HOLDINGS,
    OPTION,
    PRICES,
    TARGETS,
    TRADING_CLIENT_ID,
    drifted_state,
    ib_async_errors,
    ibkr_settings,
)

SETTINGS = RebalancingSettings()


class Timeouts(TypedDict):
    cancel_timeout_seconds: float
    fill_timeout_seconds: float


FAST = Timeouts(cancel_timeout_seconds=2.0, fill_timeout_seconds=2.0)


@dataclass(frozen=True)
class Sent:
    """An order as the broker's far side received it, in arrival order."""

    symbol: str
    action: str
    quantity: float
    order_ref: str


class Harness(Protocol):
    @property
    def broker(self) -> Broker: ...

    def stock_positions(self) -> dict[str, float]: ...
    def sent(self) -> list[Sent]: ...
    def cancel_count(self) -> int: ...
    def bought(self) -> dict[str, float]: ...
    def sells_filled_before_first_buy(self) -> bool: ...
    def add_open_order(self, symbol: str, action: str, quantity: float) -> None: ...
    def set_price(self, symbol: str, price: float) -> None: ...
    def configure(
        self, *, partial: dict[str, float], rejections: dict[str, str], confirm_cancels: bool = True
    ) -> None: ...


class TwsHarness:
    def __init__(self, fake: FakeTws) -> None:
        self.fake = fake
        self.state = fake.state
        self.state.fill_delay_seconds = 0.05  # fills arrive after the order, as at a real venue
        self.broker = IbkrBroker(ibkr_settings(fake.port), OrderSettings(), poll_interval_seconds=0.02)

    def stock_positions(self) -> dict[str, float]:
        held = self.state.accounts[ACCOUNT].positions
        return {k: p.quantity for k, p in held.items() if p.sec_type == "STK"}

    def sent(self) -> list[Sent]:
        return [Sent(o.symbol, o.action, o.quantity, o.order_ref) for o in self.state.received_orders]

    def cancel_count(self) -> int:
        return len(self.state.cancels)

    def bought(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for fill in self.state.fills:
            if fill.action == "BUY":
                totals[fill.symbol] = totals.get(fill.symbol, 0.0) + fill.shares
        return totals

    def sells_filled_before_first_buy(self) -> bool:
        buys = [o.received_at for o in self.state.received_orders if o.action == "BUY"]
        sells = [f.filled_at for f in self.state.fills if f.action == "SELL"]
        return not buys or not sells or max(sells) <= min(buys)

    def add_open_order(self, symbol: str, action: str, quantity: float) -> None:
        order_id = self.state.take_order_id()
        perm_id = self.state.take_perm_id()
        side: Literal["BUY", "SELL"] = "BUY" if action == "BUY" else "SELL"
        self.state.open_orders.append(
            FakeOrder(TRADING_CLIENT_ID, order_id, perm_id, ACCOUNT, symbol, side, quantity)
        )

    def set_price(self, symbol: str, price: float) -> None:
        self.state.quotes[symbol] = FakeQuote(last=price, bid=price, ask=price, close=price)

    def configure(
        self, *, partial: dict[str, float], rejections: dict[str, str], confirm_cancels: bool = True
    ) -> None:
        self.state.partial_fills = dict(partial)
        self.state.rejections = dict(rejections)
        self.state.confirm_cancels = confirm_cancels


class SimulatedHarness:
    def __init__(self) -> None:
        self.broker = SimulatedBroker(PRICES)
        self.broker.add_account(ACCOUNT, CASH, HOLDINGS, other_positions={OPTION: ("OPT", 2.0)})
        self._bought: dict[str, float] = {}

    def stock_positions(self) -> dict[str, float]:
        return dict(self.broker.accounts[ACCOUNT].positions)

    def sent(self) -> list[Sent]:
        return [Sent(o.symbol, o.action, o.quantity, o.order_ref) for o in self.broker.placed_orders]

    def cancel_count(self) -> int:
        return len(self.broker.cancelled_orders)

    def bought(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for order in self.broker.placed_orders:
            if order.action == "BUY":
                totals[order.symbol] = totals.get(order.symbol, 0.0) + order.filled_quantity
        return totals

    def sells_filled_before_first_buy(self) -> bool:
        # In memory an order fills as it is placed: arrival order is fill order.
        actions = [o.action for o in self.broker.placed_orders]
        return "SELL" not in actions[actions.index("BUY") :] if "BUY" in actions else True

    def add_open_order(self, symbol: str, action: str, quantity: float) -> None:
        self.broker.add_open_order(ACCOUNT, symbol, action, quantity)

    def set_price(self, symbol: str, price: float) -> None:
        self.broker.prices[symbol] = price

    def configure(
        self, *, partial: dict[str, float], rejections: dict[str, str], confirm_cancels: bool = True
    ) -> None:
        self.broker.partial_fills = dict(partial)
        self.broker.rejections = dict(rejections)
        self.broker.confirm_cancels = confirm_cancels


@pytest.fixture(params=["ibkr", "simulated"])
async def harness(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Harness]:
    caplog.set_level(logging.INFO, logger="ib_async")
    if request.param == "simulated":
        yield SimulatedHarness()
        return
    async with serve(drifted_state()) as fake:
        tws = TwsHarness(fake)
        yield tws
        await tws.broker.close()
        assert fake.errors == []
    assert ib_async_errors(caplog.records) == []


@pytest.fixture
async def tws() -> AsyncIterator[TwsHarness]:
    async with serve(drifted_state()) as fake:
        harness = TwsHarness(fake)
        yield harness
        await harness.broker.close()


def _stocks(quantities: dict[str, float]) -> dict[str, float]:
    return {s: q for s, q in quantities.items() if q}


async def test_live_rebalance_sells_first_then_buys_and_ends_at_the_planned_positions(
    harness: Harness,
) -> None:
    report = await rebalance(harness.broker, ACCOUNT, TARGETS, SETTINGS, "event-1", **FAST)

    assert report.outcome == "filled"
    assert report.plan is not None
    assert report.buy_plan is not None
    actions = [s.action for s in harness.sent()]
    assert actions == sorted(actions, key=lambda a: a != "SELL")
    assert {s.symbol for s in harness.sent() if s.action == "SELL"} == {"AAA", "DDD"}
    assert harness.sells_filled_before_first_buy()
    assert {s.order_ref for s in harness.sent()} == {"event-1"}
    assert harness.stock_positions() == _stocks(dict(report.buy_plan.projected_quantities))
    assert "DDD" not in harness.stock_positions()
    assert [o.status for o in report.orders] == ["Filled"] * len(harness.sent())
    assert all(o.order_id > 0 and o.perm_id > 0 for o in report.orders)


async def test_running_again_at_the_targets_places_nothing(harness: Harness) -> None:
    await rebalance(harness.broker, ACCOUNT, TARGETS, SETTINGS, "event-1", **FAST)
    sent_before = len(harness.sent())

    again = await rebalance(harness.broker, ACCOUNT, TARGETS, SETTINGS, "event-2", **FAST)

    assert again.outcome == "filled"
    assert again.orders == ()
    assert len(harness.sent()) == sent_before


async def test_dry_run_sends_no_order_and_no_cancel_even_with_open_orders(harness: Harness) -> None:
    harness.add_open_order("BBB", "BUY", 5)
    view = ReadOnlyBrokerView(harness.broker)

    report = await print_rebalance(view, ACCOUNT, TARGETS, SETTINGS, "event-1")
    full_broker_report = await print_rebalance(harness.broker, ACCOUNT, TARGETS, SETTINGS, "event-2")

    assert harness.sent() == []
    assert harness.cancel_count() == 0
    assert report.outcome == "read_only"
    assert report.plan is not None
    assert {o.symbol for o in report.plan.sells()} == {"AAA", "DDD"}
    assert len(report.open_orders) == 1
    assert full_broker_report.plan == report.plan
    for write in ("place_orders", "cancel_open_orders", "wait_for_fills", "close"):
        assert not hasattr(view, write)


async def test_open_orders_are_cancelled_before_any_new_order(harness: Harness) -> None:
    harness.add_open_order("BBB", "BUY", 5)

    report = await rebalance(harness.broker, ACCOUNT, TARGETS, SETTINGS, "event-1", **FAST)

    assert [(o.symbol, o.action, o.quantity) for o in report.cancelled_orders] == [("BBB", "BUY", 5.0)]
    assert harness.cancel_count() == 1
    assert report.outcome == "filled"


async def test_cancels_that_never_confirm_fail_the_run_with_no_new_order(harness: Harness) -> None:
    harness.add_open_order("BBB", "BUY", 5)
    harness.configure(partial={}, rejections={}, confirm_cancels=False)

    with pytest.raises(BrokerError, match=r"not cancelled within 0\.3 s"):
        await rebalance(
            harness.broker,
            ACCOUNT,
            TARGETS,
            SETTINGS,
            "event-1",
            cancel_timeout_seconds=0.3,
            fill_timeout_seconds=1,
        )

    assert harness.sent() == []


async def test_partial_fill_and_rejection_fail_the_run_and_the_retry_completes_without_buying_twice(
    harness: Harness,
) -> None:
    harness.configure(partial={"CCC": 0.5}, rejections={"BBB": "no trading permission"})

    with pytest.raises(ExecutionFailed) as failed:
        await rebalance(
            harness.broker,
            ACCOUNT,
            TARGETS,
            SETTINGS,
            "event-1",
            cancel_timeout_seconds=2,
            fill_timeout_seconds=0.3,
        )

    first = failed.value.report
    assert first.outcome is Outcome.PARTIAL
    assert str(failed.value).startswith(f"account {ACCOUNT}: rebalance partial: ")
    by_symbol = {o.symbol: o for o in first.orders}
    assert by_symbol["BBB"].filled_quantity == 0
    assert "no trading permission" in by_symbol["BBB"].message
    assert 0 < by_symbol["CCC"].filled_quantity < by_symbol["CCC"].quantity

    harness.configure(partial={}, rejections={})
    second = await rebalance(harness.broker, ACCOUNT, TARGETS, SETTINGS, "event-1", **FAST)

    assert second.outcome == "filled"
    assert second.buy_plan is None or second.buy_plan.sells() == ()
    plan = second.buy_plan or second.plan
    assert plan is not None
    final = harness.stock_positions()
    assert final == _stocks(dict(plan.projected_quantities))
    # Every share bought across both runs is in the final position: nothing was bought twice.
    for symbol, shares in harness.bought().items():
        assert shares == final[symbol] - HOLDINGS.get(symbol, 0.0)


@pytest.mark.parametrize("bad", [0.0, math.nan], ids=["zero", "nan"])
async def test_a_zero_or_nan_price_gives_a_plan_error_and_no_orders(harness: Harness, bad: float) -> None:
    harness.set_price("CCC", bad)

    with pytest.raises(PlanError, match="CCC"):
        await rebalance(harness.broker, ACCOUNT, TARGETS, SETTINGS, "event-1", **FAST)

    assert harness.sent() == []


async def test_read_only_commands_report_positions_equity_and_orders(harness: Harness) -> None:
    harness.add_open_order("BBB", "BUY", 5)

    positions = await print_positions(harness.broker, ACCOUNT, "e")
    equity = await print_equity(
        harness.broker, ACCOUNT, RebalancingSettings(equity_reserve_percentage=2), "e"
    )
    orders = await print_orders(harness.broker, ACCOUNT, "e")

    held = {(p.symbol if p.sec_type == "STK" else p.local_symbol): p.quantity for p in positions.positions}
    assert held == {**HOLDINGS, OPTION: 2.0}
    assert equity.equity_info is not None
    assert equity.account_values is not None
    assert equity.equity_info.reserve_percentage == 2
    nav = equity.account_values.net_liquidation
    assert equity.equity_info.available_for_trading == pytest.approx(nav * 0.98)
    assert [(o.symbol, o.quantity) for o in orders.open_orders] == [("BBB", 5.0)]
    assert {r.outcome for r in (positions, equity, orders)} == {"read_only"}
    assert harness.sent() == []
    assert harness.cancel_count() == 0


async def test_cancel_orders_command_cancels_and_reports(harness: Harness) -> None:
    harness.add_open_order("BBB", "BUY", 5)
    harness.add_open_order("AAA", "SELL", 3)

    report = await cancel_orders(harness.broker, ACCOUNT, "e", cancel_timeout_seconds=2)

    assert report.outcome == "cancelled"
    assert sorted(o.symbol for o in report.cancelled_orders) == ["AAA", "BBB"]
    assert (await print_orders(harness.broker, ACCOUNT, "e")).open_orders == ()


async def test_report_serialises_to_json_ready_data(harness: Harness) -> None:
    import json

    report = await rebalance(harness.broker, ACCOUNT, TARGETS, SETTINGS, "event-1", **FAST)

    assert (report.command, report.outcome) == (Command.REBALANCE, Outcome.FILLED)
    raw = report.to_dict()
    assert (raw["command"], raw["outcome"]) == ("rebalance", "filled")
    assert {type(raw["command"]), type(raw["outcome"])} == {str}, "plain strings, as stored before"
    data = json.loads(json.dumps(raw))
    assert data["outcome"] == "filled"
    assert len(data["orders"]) == len(report.orders)
    assert data["plan"]["equity_info"]["total_equity"] == report.plan.equity_info.total_equity  # type: ignore[union-attr]


async def test_connection_dropped_mid_run_is_a_broker_error(tws: TwsHarness) -> None:
    tws.state.drop_on_order = 1

    with pytest.raises(BrokerError, match="lost"):
        await rebalance(tws.broker, ACCOUNT, TARGETS, SETTINGS, "event-1", **FAST)

    assert len(tws.state.received_orders) == 1


@pytest.mark.parametrize("size", [40, 80])
async def test_a_large_rebalance_stays_under_the_gateways_50_messages_a_second(
    caplog: pytest.LogCaptureFixture, size: int
) -> None:
    caplog.set_level(logging.INFO, logger="ib_async")
    symbols = [f"T{i:02d}" for i in range(size)]
    state = TwsState()
    state.add_account(ACCOUNT, 1_500.0 * size, {s: 400.0 for s in symbols[: size // 4]})  # sells first
    for i, symbol in enumerate(symbols):
        state.set_price(symbol, 20.0 + i % 40)
    targets = {s: 1 / len(symbols) for s in symbols}

    async with serve(state) as fake:
        broker = IbkrBroker(ibkr_settings(fake.port), OrderSettings(), poll_interval_seconds=0.02)
        try:
            report = await rebalance(
                broker, ACCOUNT, targets, SETTINGS, "e", cancel_timeout_seconds=5, fill_timeout_seconds=15
            )
        finally:
            await broker.close()

    assert fake.state.paced_out == []
    assert [r.getMessage() for r in caplog.records if "Error 100," in r.getMessage()] == []
    assert report.outcome == "filled"
    assert {o.action for o in report.orders} == {"BUY", "SELL"}
    assert len(report.orders) == len(symbols)
    assert ib_async_errors(caplog.records) == []
