"""IbkrBroker through the real ib_async against the loopback TWS (tests/fakes/tws)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from ib_async import IB

from event_processor.brokers import BrokerError, IbkrBroker, OrderRequest
from rebalancer_shared.config import OrderSettings
from tests.fakes.tws import FakeOrder, FakeQuote, FakeTws, FakeTwsThread, TwsState, serve
from tests.fakes.tws.control import ControlServer
from tests.fakes.tws.scenarios import (
    ACCOUNT,
    CLIENT_ID,
    LONDON_SHEL,
    OPTION,
    TRADING_CLIENT_ID,
    drifted_state,
    hold_london_shel,
    ib_async_errors,
    ibkr_settings,
)

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
# Tuesday 2024-01-09: 15:00 UTC is 10:00 in New York (regular hours), 23:00 UTC is 18:00 (after hours).
REGULAR_HOURS = datetime(2024, 1, 9, 15, 0, tzinfo=UTC)
AFTER_HOURS = datetime(2024, 1, 9, 23, 0, tzinfo=UTC)
TWO_DAYS = 2 * 86_400.0


def ago(seconds: float) -> int:
    """An IB trade time `seconds` before the brokers' clock (REGULAR_HOURS)."""
    return int(REGULAR_HOURS.timestamp() - seconds)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTws]:
    async with serve(drifted_state()) as server:
        yield server


@pytest.fixture
async def make_broker(fake: FakeTws) -> AsyncIterator[Callable[..., IbkrBroker]]:
    """Brokers against the fake (closed at teardown); `now` is the clock orders and prices see."""
    brokers: list[IbkrBroker] = []

    def make(
        orders: OrderSettings | None = None, now: datetime = REGULAR_HOURS, **settings: Any
    ) -> IbkrBroker:
        broker = IbkrBroker(
            ibkr_settings(fake.port, **settings), orders or OrderSettings(), clock=lambda: now
        )
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        await broker.close()


@pytest.fixture(autouse=True)
def _ib_async_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ib_async")


async def test_snapshot_of_an_account_with_several_positions_reads_every_field_without_decoder_errors(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker], caplog: pytest.LogCaptureFixture
) -> None:
    fake.state.open_orders.append(
        FakeOrder(TRADING_CLIENT_ID, 3, 800_001, ACCOUNT, "BBB", "BUY", 5.0, order_ref="earlier-event")
    )
    broker = make_broker()
    values = await broker.get_account_values(ACCOUNT)
    positions = await broker.get_positions(ACCOUNT)
    prices = await broker.get_prices(["AAA", "BBB", "CCC", "DDD"])
    open_orders = await broker.get_open_orders(ACCOUNT)

    assert values.total_cash == 5_000.0
    assert values.net_liquidation == 5_000.0 + 100 * 50 + 10 * 100 + 20 * 25 + 2 * 120
    held = {(p.symbol, p.sec_type, p.local_symbol): p.quantity for p in positions}
    assert held == {
        ("AAA", "STK", "AAA"): 100.0,
        ("BBB", "STK", "BBB"): 10.0,
        ("DDD", "STK", "DDD"): 20.0,
        ("AAA", "OPT", OPTION): 2.0,
    }
    assert prices == {"AAA": 50.0, "BBB": 100.0, "CCC": 40.0, "DDD": 25.0}
    assert [(o.order_id, o.symbol, o.action, o.quantity, o.order_ref) for o in open_orders] == [
        (3, "BBB", "BUY", 5.0, "earlier-event")
    ]
    assert ib_async_errors(caplog.records) == []
    assert fake.errors == []


async def test_positions_come_once_per_conid_with_their_listing_and_currency(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker], caplog: pytest.LogCaptureFixture
) -> None:
    fake.state.position_copies = 3  # ib_insync #575: three rows for one conId
    fake.state.unknown_symbols.add("NOPE")
    hold_london_shel(fake.state, 100.0)
    broker = make_broker()

    positions = await broker.get_positions(ACCOUNT)
    listings = await broker.get_listings(["SHEL", "AAA", "NOPE"])

    by_con_id = {p.con_id: p for p in positions}
    assert len(positions) == len(by_con_id) == 5
    shel = by_con_id[fake.state.con_id(LONDON_SHEL)]
    assert (shel.symbol, shel.exchange, shel.currency, shel.quantity) == ("SHEL", "LSE", "GBP", 100.0)
    aaa = by_con_id[fake.state.con_id("AAA")]
    assert (aaa.symbol, aaa.sec_type, aaa.exchange, aaa.currency) == ("AAA", "STK", "NASDAQ", "USD")
    assert set(listings) == {"SHEL", "AAA"}, "a symbol IB does not know has no listing"
    assert listings["SHEL"].con_id == fake.state.con_id("SHEL") != shel.con_id
    assert (listings["SHEL"].currency, listings["AAA"].con_id) == ("USD", aaa.con_id)
    assert ib_async_errors(caplog.records) == []


async def test_positions_lag_a_fill_while_the_cash_has_already_moved(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker]
) -> None:
    fake.state.position_lag_seconds = 0.5
    broker = make_broker()
    await _place(broker, OrderRequest("AAA", "SELL", 10, 50.0))

    cash = (await broker.get_account_values(ACCOUNT)).total_cash
    lagging = {p.symbol: p.quantity for p in await broker.get_positions(ACCOUNT) if p.sec_type == "STK"}
    await asyncio.sleep(0.5)
    settled = {p.symbol: p.quantity for p in await broker.get_positions(ACCOUNT) if p.sec_type == "STK"}

    assert cash == 5_000.0 + 10 * 50.0
    assert lagging["AAA"] == 100.0
    assert settled["AAA"] == 90.0


async def test_account_values_carry_the_base_currency(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker], caplog: pytest.LogCaptureFixture
) -> None:
    account = fake.state.accounts[ACCOUNT]
    account.base_currency = "CAD"
    account.other_cash = {"CAD": 1_000.0}
    broker = make_broker()

    values = await broker.get_account_values(ACCOUNT)

    rate = fake.state.exchange_rates["USD"] / fake.state.exchange_rates["CAD"]
    assert values.currency == "CAD"
    assert values.total_cash == pytest.approx(1_000.0 + 5_000.0 * rate)
    assert values.net_liquidation == pytest.approx(fake.state.net_liquidation(account))
    assert ib_async_errors(caplog.records) == []


async def test_account_updates_carry_cash_and_exchange_rates_per_currency(
    fake: FakeTws, caplog: pytest.LogCaptureFixture
) -> None:
    account = fake.state.accounts[ACCOUNT]
    account.other_cash = {"GBP": 200.0}
    hold_london_shel(fake.state, 100.0)
    ib = IB()
    await ib.connectAsync("127.0.0.1", fake.port, clientId=3, timeout=3)
    try:
        values = {(v.tag, v.currency): v.value for v in ib.accountValues(ACCOUNT)}
    finally:
        ib.disconnect()

    assert values[("NetLiquidation", "USD")] == repr(fake.state.net_liquidation(account))
    assert float(values[("CashBalance", "USD")]) == 5_000.0
    assert float(values[("CashBalance", "GBP")]) == 200.0
    assert float(values[("CashBalance", "BASE")]) == pytest.approx(5_000.0 + 200.0 * 1.27)
    assert float(values[("ExchangeRate", "GBP")]) == pytest.approx(1.27)
    assert values[("ExchangeRate", "BASE")] == "1.00"
    assert ib_async_errors(caplog.records) == []


async def test_account_values_are_read_fresh_after_cash_changes(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker]
) -> None:
    broker = make_broker()
    before = await broker.get_account_values(ACCOUNT)
    fake.state.accounts[ACCOUNT].cash = 7_500.0
    after = await broker.get_account_values(ACCOUNT)
    assert (before.total_cash, after.total_cash) == (5_000.0, 7_500.0)


async def test_price_falls_back_from_last_to_mid_to_close_and_from_live_to_frozen_to_delayed(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker], caplog: pytest.LogCaptureFixture
) -> None:
    # Every field is young enough for a two-day limit on a Tuesday at 10:00 New York: the close is
    # Monday's (18 h), frozen data Monday's close, delayed data 20 minutes behind.
    fake.state.quotes = {
        "LAST": FakeQuote(last=10.0, bid=9.75, ask=10.25, close=8.0, last_timestamp=ago(5)),
        "MID": FakeQuote(bid=19.75, ask=20.25, close=18.0),
        "CLOSE": FakeQuote(close=30.0),
        "STALE": FakeQuote(last=1.0, bid=39.75, ask=40.25, last_timestamp=ago(3 * 86_400)),
        "FROZEN": FakeQuote(last=50.0, data_type=2, last_timestamp=ago(3_600)),
        "DELAYED": FakeQuote(last=60.0, bid=59.75, ask=60.25, data_type=3),
    }
    broker = make_broker(max_price_age_seconds=TWO_DAYS)
    prices = await broker.get_prices(list(fake.state.quotes))
    assert prices == {
        "LAST": 10.0,
        "MID": 20.0,
        "CLOSE": 30.0,
        "STALE": 40.0,
        "FROZEN": 50.0,
        "DELAYED": 60.0,
    }
    assert ib_async_errors(caplog.records) == []


async def test_a_stale_field_is_never_used_last_mid_or_close_live_frozen_or_delayed(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker], caplog: pytest.LogCaptureFixture
) -> None:
    fake.state.quotes = {
        "LIVE_LAST": FakeQuote(last=10.0, last_timestamp=ago(3_600)),
        "LIVE_CLOSE": FakeQuote(close=30.0),  # Monday's close, 18 h before Tuesday 10:00
        "FROZEN_MID": FakeQuote(bid=19.75, ask=20.25, data_type=2),  # from Monday's close
        "FROZEN_LAST": FakeQuote(last=50.0, data_type=2),
        "DELAYED_LAST": FakeQuote(last=60.0, data_type=3),  # 15-20 minutes behind
        "DELAYED_MID": FakeQuote(bid=59.75, ask=60.25, data_type=3),
        "DELAYED_CLOSE": FakeQuote(close=75.0, data_type=3),
        "WIDE_MID": FakeQuote(bid=90.0, ask=110.0),  # 20 % of the midpoint
        "CROSSED_MID": FakeQuote(bid=41.0, ask=39.0),
        "FRESH_LAST": FakeQuote(last=10.0, close=9.0, last_timestamp=ago(5)),
        "FRESH_MID": FakeQuote(bid=19.75, ask=20.25, close=18.0),
    }
    broker = make_broker(max_price_age_seconds=900.0)
    with structlog.testing.capture_logs() as logs:
        prices = await broker.get_prices(list(fake.state.quotes))
    assert prices == {"FRESH_LAST": 10.0, "FRESH_MID": 20.0}
    why = {e["symbol"]: e["problems"] for e in logs if e["event"] == "snapshot has no usable price"}
    assert "mid is 1200 s old (max 900)" in why["DELAYED_MID"]
    assert any("wider than 5 % of the midpoint" in p for p in why["WIDE_MID"])
    assert ib_async_errors(caplog.records) == []


@pytest.mark.parametrize("lines", [None, 40], ids=["lines-default-90", "lines-40"])
async def test_150_symbols_on_a_login_with_50_market_data_lines_all_get_their_price(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker], caplog: pytest.LogCaptureFixture, lines: int | None
) -> None:
    fake.state.market_data_lines = 50
    wanted = {f"S{i:03d}": 10.0 + i for i in range(150)}
    for symbol, price in wanted.items():
        fake.state.set_price(symbol, price)
    settings: dict[str, Any] = {} if lines is None else {"market_data_lines": lines}
    broker = make_broker(**settings)

    prices = await broker.get_prices(list(wanted))

    assert prices == wanted
    if lines is not None:  # batches under the login's lines: IB never had to refuse one
        assert fake.state.market_data_refusals == []
    for _ in range(200):  # the last batch's cancels leave at the paced rate
        if fake.lines.in_use == 0:
            break
        await asyncio.sleep(0.02)
    assert fake.lines.in_use == 0, "every snapshot ended or was cancelled"
    assert fake.state.paced_out == []
    assert ib_async_errors(caplog.records) == []


@pytest.mark.parametrize("bad", [0.0, math.nan, -5.0, None])
async def test_zero_nan_negative_or_absent_prices_are_left_out_never_returned(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker], bad: float | None
) -> None:
    fake.state.quotes["CCC"] = FakeQuote(last=bad, bid=bad, ask=bad, close=bad)
    broker = make_broker()
    prices = await broker.get_prices(["AAA", "CCC"])
    assert prices == {"AAA": 50.0}


async def test_a_symbol_ib_does_not_know_is_a_broker_error_naming_it(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker]
) -> None:
    fake.state.unknown_symbols.add("NOPE")
    broker = make_broker()
    with pytest.raises(BrokerError, match="NOPE"):
        await broker.get_prices(["AAA", "NOPE"])


async def _place(broker: IbkrBroker, *requests: OrderRequest) -> None:
    await broker.get_prices(sorted({r.symbol for r in requests}))  # the quotes LMT prices come from
    placed = await broker.place_orders(ACCOUNT, list(requests), order_ref="event-42")
    await broker.wait_for_fills(ACCOUNT, [p.order_id for p in placed], timeout_seconds=2.0)


async def test_default_orders_are_day_market_orders_tagged_with_the_event_id(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker]
) -> None:
    broker = make_broker()
    await _place(broker, OrderRequest("AAA", "SELL", 10, 50.0))
    [order] = fake.state.received_orders
    assert (order.order_type, order.time_in_force, order.outside_rth, order.limit_price) == (
        "MKT",
        "DAY",
        False,
        None,
    )
    trading_id = broker.trading_client_id(ACCOUNT)  # the account's own, not the reads connection's
    assert (order.order_ref, order.account, order.client_id) == ("event-42", ACCOUNT, trading_id)
    assert trading_id != CLIENT_ID
    assert (order.symbol, order.action, order.quantity) == ("AAA", "SELL", 10.0)


async def test_limit_gtc_orders_buy_above_the_ask_and_sell_below_the_bid_by_the_slippage(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker]
) -> None:
    fake.state.quotes["AAA"] = FakeQuote(last=50.0, bid=49.9, ask=50.1)
    fake.state.quotes["BBB"] = FakeQuote(last=100.0, bid=99.5, ask=100.5)
    orders = OrderSettings(order_type="LMT", time_in_force="GTC", limit_slippage_bps=25)
    broker = make_broker(orders)
    await _place(broker, OrderRequest("AAA", "SELL", 10, 50.0), OrderRequest("BBB", "BUY", 3, 100.0))
    sell, buy = fake.state.received_orders
    assert (sell.order_type, sell.time_in_force, sell.limit_price) == ("LMT", "GTC", 49.77)  # 49.9 x 0.9975
    assert (buy.order_type, buy.time_in_force, buy.limit_price) == ("LMT", "GTC", 100.76)  # 100.5 x 1.0025 up
    assert not sell.outside_rth
    assert not buy.outside_rth
    assert fake.state.accounts[ACCOUNT].positions["BBB"].quantity == 13.0  # the limits were marketable


@pytest.mark.parametrize(
    ("quote", "max_spread_pct"),
    [
        (FakeQuote(last=100.0, bid=90.0, ask=110.0, last_timestamp=ago(5)), None),  # default 5 %
        (FakeQuote(last=100.0, bid=101.0, ask=99.0, last_timestamp=ago(5)), None),
        (FakeQuote(last=100.0, bid=99.5, ask=100.5, last_timestamp=ago(5)), 0.5),
    ],
    ids=["wide", "crossed", "wider-than-configured"],
)
async def test_a_limit_is_not_set_from_a_crossed_or_too_wide_quote_but_from_the_planning_price(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker], quote: FakeQuote, max_spread_pct: float | None
) -> None:
    fake.state.quotes["BBB"] = quote
    spread: dict[str, Any] = {} if max_spread_pct is None else {"max_spread_pct": max_spread_pct}
    broker = make_broker(OrderSettings(order_type="LMT", limit_slippage_bps=10), **spread)
    assert await broker.get_prices(["BBB"]) == {"BBB": 100.0}
    await broker.place_orders(ACCOUNT, [OrderRequest("BBB", "BUY", 3, 100.0)], order_ref="e")
    for _ in range(100):
        if fake.state.received_orders:
            break
        await asyncio.sleep(0.02)
    [order] = fake.state.received_orders
    assert order.limit_price == 100.1  # the planning price x 1.001, not the ask x 1.001


async def test_a_limit_is_not_set_from_a_bid_ask_that_aged_past_the_limit_before_the_order(
    fake: FakeTws,
) -> None:
    fake.state.quotes["BBB"] = FakeQuote(last=100.0, bid=99.5, ask=100.5, last_timestamp=ago(5))
    clock = [REGULAR_HOURS]
    orders = OrderSettings(order_type="LMT", limit_slippage_bps=10)
    broker = IbkrBroker(ibkr_settings(fake.port), orders, clock=lambda: clock[0])
    try:
        assert await broker.get_prices(["BBB"]) == {"BBB": 100.0}
        clock[0] += timedelta(minutes=16)  # the sells took their time
        await broker.place_orders(ACCOUNT, [OrderRequest("BBB", "BUY", 3, 100.0)], order_ref="e")
        for _ in range(100):
            if fake.state.received_orders:
                break
            await asyncio.sleep(0.02)
    finally:
        await broker.close()
    [order] = fake.state.received_orders
    assert order.limit_price == 100.1  # not 100.5 x 1.001: that ask is 16 minutes old


@pytest.mark.parametrize(
    ("now", "expected"),
    [(AFTER_HOURS, ("LMT", True)), (REGULAR_HOURS, ("MKT", False))],
    ids=["after-hours", "regular-hours"],
)
async def test_extended_hours_sends_limit_orders_outside_rth_only_outside_regular_hours(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker], now: datetime, expected: tuple[str, bool]
) -> None:
    broker = make_broker(OrderSettings(extended_hours_enabled=True), now=now)
    fake.set_market_time(now)  # the session is the gateway's
    await _place(broker, OrderRequest("BBB", "BUY", 1, 100.0))
    [order] = fake.state.received_orders
    assert (order.order_type, order.outside_rth) == expected
    assert order.fields[33] == ("1" if expected[1] else "0")  # outsideRth on the wire


async def test_a_dead_port_fails_fast_with_a_broker_error_after_the_configured_attempts() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    broker = IbkrBroker(
        ibkr_settings(dead_port, connect_attempts=3, connect_retry_delay_seconds=0.1), OrderSettings()
    )
    started = time.monotonic()
    with pytest.raises(BrokerError, match=rf"127\.0\.0\.1:{dead_port}.*after 3 attempt"):
        await broker.get_positions(ACCOUNT)
    assert time.monotonic() - started < 2.0


async def test_live_trading_mode_logs_a_loud_warning_on_connect(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker]
) -> None:
    broker = make_broker(trading_mode="live")
    with structlog.testing.capture_logs() as logs:
        await broker.get_positions(ACCOUNT)
    warnings = [e for e in logs if e["log_level"] == "warning" and "LIVE" in e["event"]]
    assert len(warnings) == 1


async def test_connection_dropped_while_waiting_for_fills_is_a_broker_error_and_the_next_call_reconnects(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker]
) -> None:
    fake.state.fill_delay_seconds = 5.0
    broker = make_broker()
    placed = await broker.place_orders(ACCOUNT, [OrderRequest("AAA", "SELL", 5, 50.0)], order_ref="e")
    asyncio.get_running_loop().call_later(0.2, fake.drop_connections)
    with pytest.raises(BrokerError, match=r"connection to IB Gateway .* lost"):
        await broker.wait_for_fills(ACCOUNT, [placed[0].order_id], timeout_seconds=10.0)
    positions = await broker.get_positions(ACCOUNT)
    assert {p.symbol for p in positions} >= {"AAA", "BBB"}


async def test_cancel_waits_for_confirmation_and_a_cancel_never_confirmed_fails_after_the_timeout(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker]
) -> None:
    fake.state.open_orders.append(FakeOrder(TRADING_CLIENT_ID, 3, 800_001, ACCOUNT, "BBB", "BUY", 5.0))
    fake.state.confirm_cancels = False
    broker = make_broker()
    started = time.monotonic()
    with pytest.raises(BrokerError, match=r"1 open order\(s\) not cancelled within 0.5 s: 3 \(BUY 5 BBB"):
        await broker.cancel_open_orders(ACCOUNT, timeout_seconds=0.5)
    assert 0.5 <= time.monotonic() - started < 2.0
    fake.state.confirm_cancels = True
    cancelled = await broker.cancel_open_orders(ACCOUNT, timeout_seconds=2.0)
    assert [o.order_id for o in cancelled] == [3]
    assert fake.state.open_orders == []
    assert fake.state.received_orders == []


async def test_a_rejected_order_reports_the_ib_error_and_fills_nothing(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker]
) -> None:
    fake.state.rejections["BBB"] = "insufficient buying power"
    broker = make_broker()
    placed = await broker.place_orders(ACCOUNT, [OrderRequest("BBB", "BUY", 5, 100.0)], order_ref="e")
    [result] = await broker.wait_for_fills(ACCOUNT, [placed[0].order_id], timeout_seconds=2.0)
    assert result.filled_quantity == 0
    assert result.is_done
    assert result.message == "IB error 201: Order rejected - reason:insufficient buying power"


async def test_a_fractional_quantity_is_refused_by_ib_with_error_10243_and_fills_nothing(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker]
) -> None:
    broker = make_broker()
    placed = await broker.place_orders(ACCOUNT, [OrderRequest("BBB", "BUY", 1.5, 100.0)], order_ref="e")
    [result] = await broker.wait_for_fills(ACCOUNT, [placed[0].order_id], timeout_seconds=2.0)
    assert (result.status, result.filled_quantity) == ("Cancelled", 0.0)
    assert result.message.startswith("IB error 10243: Fractional-sized order cannot be placed via API")
    assert fake.state.fills == []


def test_state_round_trips_through_json() -> None:
    state = drifted_state()
    state.open_orders.append(FakeOrder(CLIENT_ID, 3, 800_001, ACCOUNT, "BBB", "BUY", 5.0))
    copy = TwsState.from_json(state.to_json())
    assert copy.accounts == state.accounts
    assert copy.quotes == state.quotes
    assert copy.open_orders == state.open_orders


async def test_fake_in_a_background_thread_is_driven_over_its_http_control_port() -> None:
    tws = FakeTwsThread(FakeTws(drifted_state())).start()
    control = ControlServer(tws, "127.0.0.1", 0)
    control.start()
    broker = IbkrBroker(ibkr_settings(tws.port), OrderSettings())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{control.port}") as http:
            updated = await http.post("/state", json={"quotes": {"AAA": {"last": 55.0}}})
            prices = await broker.get_prices(["AAA"])
            placed = await broker.place_orders(
                ACCOUNT, [OrderRequest("AAA", "SELL", 5, 55.0)], order_ref="ev-9"
            )
            await broker.wait_for_fills(ACCOUNT, [placed[0].order_id], timeout_seconds=2.0)
            state = (await http.get("/state")).json()
    finally:
        await broker.close()
        await asyncio.to_thread(control.stop)
        tws.stop()
    assert updated.status_code == 200
    assert prices == {"AAA": 55.0}
    assert [(o["symbol"], o["order_ref"]) for o in state["received_orders"]] == [("AAA", "ev-9")]
    assert state["accounts"][ACCOUNT]["positions"]["AAA"]["quantity"] == 95.0


async def test_fake_runs_as_a_process_and_writes_what_it_received_to_its_state_file(tmp_path: Path) -> None:
    state_file = tmp_path / "tws.json"
    state_file.write_text(json.dumps(drifted_state().to_json()))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.tws",
        "--port",
        "0",
        "--state",
        str(state_file),
        cwd=REPOSITORY_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    broker: IbkrBroker | None = None
    try:
        assert process.stdout is not None
        ports = json.loads(await asyncio.wait_for(process.stdout.readline(), 10))
        broker = IbkrBroker(ibkr_settings(ports["port"]), OrderSettings())
        placed = await broker.place_orders(ACCOUNT, [OrderRequest("BBB", "BUY", 2, 100.0)], order_ref="ev-p")
        await broker.wait_for_fills(ACCOUNT, [placed[0].order_id], timeout_seconds=2.0)
    finally:
        if broker is not None:
            await broker.close()
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)
    written = TwsState.from_json(json.loads(state_file.read_text()))
    assert written.accounts[ACCOUNT].positions["BBB"].quantity == 12.0
    assert [o["order_ref"] for o in json.loads(state_file.read_text())["received_orders"]] == ["ev-p"]
