"""The engine through the real ib_async against the loopback TWS's habits of a real IB Gateway.

The fake, by default, sends every position twice in a reqPositions answer, shows a fill in the
positions only `position_lag_seconds` after the cash moved, names every contract's listing and
currency, and reports account values in the account's base currency (tests/fakes/tws/README.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TypedDict

import pytest
import structlog

from event_processor.brokers import IbkrBroker, OrderRequest, OrderResult
from event_processor.execution import print_rebalance, rebalance
from rebalancer_shared.accounts import RebalancingSettings
from rebalancer_shared.config import OrderSettings
from rebalancer_shared.errors import RebalancerError
from tests.fakes.tws import FakeTws, serve
from tests.fakes.tws.scenarios import (
    ACCOUNT,
    HOLDINGS,
    LONDON_SHEL,
    PRICES,
    TARGETS,
    drifted_state,
    hold_london_shel,
    ib_async_errors,
    ibkr_settings,
)

SETTINGS = RebalancingSettings()


class Timeouts(TypedDict):
    cancel_timeout_seconds: float
    fill_timeout_seconds: float


FAST = Timeouts(cancel_timeout_seconds=2.0, fill_timeout_seconds=2.0)


@pytest.fixture
async def fake(caplog: pytest.LogCaptureFixture) -> AsyncIterator[FakeTws]:
    caplog.set_level(logging.INFO, logger="ib_async")
    state = drifted_state()
    state.fill_delay_seconds = 0.05
    async with serve(state) as server:
        yield server
        assert server.errors == []
    assert ib_async_errors(caplog.records) == []


@pytest.fixture
async def broker(fake: FakeTws) -> AsyncIterator[IbkrBroker]:
    ibkr = IbkrBroker(ibkr_settings(fake.port), OrderSettings(), poll_interval_seconds=0.02)
    yield ibkr
    await ibkr.close()


def cash_of(fake: FakeTws) -> float:
    return fake.state.accounts[ACCOUNT].cash


def held(fake: FakeTws) -> dict[str, float]:
    return {key: p.quantity for key, p in fake.state.accounts[ACCOUNT].positions.items()}


async def test_duplicate_positions_never_make_a_sell_larger_than_the_holding(
    fake: FakeTws, broker: IbkrBroker
) -> None:
    fake.state.position_copies = 3  # ib_insync #575: three rows for one conId in one answer

    report = await rebalance(broker, ACCOUNT, TARGETS, SETTINGS, "event-1", **FAST)

    sells = {o.symbol: o.quantity for o in fake.state.received_orders if o.action == "SELL"}
    assert sells, "the drifted account has something to sell"
    for symbol, quantity in sells.items():
        assert quantity <= HOLDINGS[symbol], f"sold {quantity:g} {symbol}, held {HOLDINGS[symbol]:g}"
    assert sells["DDD"] == HOLDINGS["DDD"], "DDD is not a target: sold in full, once"
    assert all(quantity >= 0 for quantity in held(fake).values()), "no short position was opened"
    assert [(p.symbol, p.sec_type) for p in report.positions].count(("AAA", "STK")) == 1


async def test_the_london_listing_gets_no_order_and_is_reported_as_left_alone(
    fake: FakeTws, broker: IbkrBroker
) -> None:
    hold_london_shel(fake.state, 100.0)
    targets = {**TARGETS, "CCC": 0.3, "SHEL": 0.1}  # SHEL: the NYSE ADR, bought beside the LSE line

    report = await rebalance(broker, ACCOUNT, targets, SETTINGS, "event-1", **FAST)

    shel_orders = [o for o in fake.state.received_orders if o.symbol == "SHEL"]
    assert [o.action for o in shel_orders] == ["BUY"], "the ADR is bought, the LSE line never sold"
    assert {o.con_id for o in shel_orders} == {fake.state.con_id("SHEL")} != {fake.state.con_id(LONDON_SHEL)}
    assert all(o.con_id for o in fake.state.received_orders), "every order names its contract's conId"
    assert held(fake)[LONDON_SHEL] == 100.0
    assert held(fake)["SHEL"] == shel_orders[0].quantity
    assert report.plan is not None
    [left_alone] = [s for s in report.plan.skipped if s.symbol.startswith("SHEL ")]
    assert left_alone.reason == "other_currency"
    assert "LSE" in left_alone.detail
    assert "GBP" in left_alone.detail
    assert "left alone" in left_alone.detail


async def test_a_cad_account_places_nothing_and_says_why(fake: FakeTws, broker: IbkrBroker) -> None:
    account = fake.state.accounts[ACCOUNT]
    account.base_currency = "CAD"
    account.other_cash = {"CAD": 20_000.0}

    with pytest.raises(RebalancerError) as refused:
        await rebalance(broker, ACCOUNT, TARGETS, SETTINGS, "event-1", **FAST)
    with pytest.raises(RebalancerError) as dry_run_refused:
        await print_rebalance(broker, ACCOUNT, TARGETS, SETTINGS, "event-2")

    expected = f"account {ACCOUNT}: base currency CAD: not supported yet; only USD accounts are traded"
    assert str(refused.value) == expected
    assert str(dry_run_refused.value) == expected
    assert fake.state.received_orders == []
    assert fake.state.cancels == []


async def test_lagging_positions_never_spend_below_the_reserve(fake: FakeTws, broker: IbkrBroker) -> None:
    assert fake.state.position_lag_seconds > 0, "positions lag fills by default"

    report = await rebalance(broker, ACCOUNT, TARGETS, SETTINGS, "event-1", **FAST)

    assert report.buy_plan is not None
    assert report.buy_plan.buys(), "the sells' proceeds buy something"
    reserve = report.plan.equity_info.reserve_amount if report.plan else 0.0
    assert cash_of(fake) >= reserve, f"cash {cash_of(fake):.2f} went below the reserve {reserve:.2f}"
    await asyncio.sleep(fake.state.position_lag_seconds)  # until the positions show the buys too
    again = await print_rebalance(broker, ACCOUNT, TARGETS, SETTINGS, "event-2")
    assert again.plan is not None
    assert again.plan.orders == (), "the account is at its targets: the buys saw the sells' fills"


async def test_positions_lagging_past_the_wait_are_taken_from_the_fills(
    fake: FakeTws, broker: IbkrBroker
) -> None:
    fake.state.position_lag_seconds = 1.5

    with structlog.testing.capture_logs() as logs:
        report = await rebalance(
            broker, ACCOUNT, TARGETS, SETTINGS, "event-1", position_settle_timeout_seconds=0.2, **FAST
        )

    assert report.buy_plan is not None
    assert report.plan is not None
    assert cash_of(fake) >= report.plan.equity_info.reserve_amount
    waits = [e for e in logs if e["event"].startswith("positions do not show the fills yet")]
    assert len(waits) == 2, "after the sells, and after the buys"
    await asyncio.sleep(fake.state.position_lag_seconds)
    again = await print_rebalance(broker, ACCOUNT, TARGETS, SETTINGS, "event-2")
    assert again.plan is not None
    assert again.plan.orders == (), "planned from the fills, the buys reached the targets"


async def test_the_buys_are_planned_at_prices_read_after_the_sells(fake: FakeTws) -> None:
    class MarketMovesDuringTheSells(IbkrBroker):
        async def place_orders(
            self, account_id: str, orders: Sequence[OrderRequest], order_ref: str
        ) -> list[OrderResult]:
            placed = await super().place_orders(account_id, orders, order_ref)
            if all(o.action == "SELL" for o in orders):
                fake.state.set_price("CCC", 50.0)
            return placed

    broker = MarketMovesDuringTheSells(ibkr_settings(fake.port), OrderSettings(), poll_interval_seconds=0.02)
    try:
        report = await rebalance(broker, ACCOUNT, TARGETS, SETTINGS, "event-1", **FAST)
    finally:
        await broker.close()

    assert report.plan is not None
    assert report.buy_plan is not None
    assert {o.symbol: o.est_price for o in report.plan.buys()}["CCC"] == 40.0
    assert {o.symbol: o.est_price for o in report.buy_plan.buys()}["CCC"] == 50.0
    assert cash_of(fake) >= report.buy_plan.equity_info.reserve_amount


async def test_a_sell_left_by_an_earlier_run_that_fills_just_before_the_next_run_is_not_sold_again(
    fake: FakeTws,
) -> None:
    # A run that stopped (self-fenced, or killed) leaves its sell working; it fills as the next run of
    # the event starts. The positions show that fill only later (ib_async #15): read at once, they
    # still hold the shares, and the next run sells them a second time, opening a short position.
    fake.state.position_lag_seconds = 0.9  # within the broker's allowance (ibkr.position_lag_seconds)
    earlier = IbkrBroker(ibkr_settings(fake.port), OrderSettings(), poll_interval_seconds=0.02)
    try:
        [left] = await earlier.place_orders(
            ACCOUNT, [OrderRequest("DDD", "SELL", HOLDINGS["DDD"], PRICES["DDD"])], "event-1"
        )
        [done] = await earlier.wait_for_fills(ACCOUNT, [left.order_id], 2.0)
        assert done.status == "Filled"
    finally:
        await earlier.close()

    broker = IbkrBroker(ibkr_settings(fake.port), OrderSettings(), poll_interval_seconds=0.02)
    try:
        await rebalance(broker, ACCOUNT, TARGETS, SETTINGS, "event-1", **FAST)
    finally:
        await broker.close()

    ddd_sells = [o for o in fake.state.received_orders if o.symbol == "DDD" and o.action == "SELL"]
    assert len(ddd_sells) == 1, "DDD was sold once, by the earlier run"
    assert all(quantity >= 0 for quantity in held(fake).values()), "no short position was opened"
