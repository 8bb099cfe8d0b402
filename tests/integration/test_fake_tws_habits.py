"""The loopback TWS is as strict as a real gateway (tests/fakes/tws/README.md), seen by the bare ib_async."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator

import pytest
from ib_async import IB, Contract, Order, Stock, Trade

from tests.fakes.tws import FakeQuote, FakeTws, TwsState, serve
from tests.fakes.tws.profiles import apply_profile
from tests.fakes.tws.scenarios import ACCOUNT, drifted_state, ib_async_errors

Errors = list[tuple[int, int, str]]


@pytest.fixture(autouse=True)
def _ib_async_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ib_async")


@pytest.fixture
async def fake() -> AsyncIterator[FakeTws]:
    async with serve(drifted_state()) as server:
        yield server


@pytest.fixture
async def ib(fake: FakeTws) -> AsyncIterator[IB]:
    client = IB()
    await client.connectAsync("127.0.0.1", fake.port, clientId=3, timeout=3)
    yield client
    client.disconnect()


def collect_errors(ib: IB) -> Errors:
    errors: Errors = []
    ib.errorEvent += lambda req_id, code, text, contract: errors.append((req_id, code, text))
    return errors


async def stock(ib: IB, symbol: str) -> Stock:
    contract = Stock(symbol, "SMART", "USD")
    await ib.qualifyContractsAsync(contract)
    return contract


async def until(condition: object, seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while not callable(condition) or not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_the_defaults_are_a_real_gateways() -> None:
    state = TwsState()
    assert (state.market_data_lines, state.snapshot_seconds, state.max_messages_per_second) == (100, 11.0, 50)
    assert state.max_connections == 32
    assert state.fractional_orders is False


def test_the_realistic_profile_is_a_gateway_nearby_and_a_market_that_answers_in_a_fraction_of_a_second() -> (
    None
):
    state = TwsState()
    apply_profile(state, "realistic")
    assert (state.round_trip_seconds, state.snapshot_data_seconds, state.snapshot_seconds) == (
        0.005,
        0.3,
        0.3,
    )
    assert state.fill_delay_seconds == 0.2
    assert (state.max_messages_per_second, state.market_data_lines, state.position_lag_seconds) == (
        50,
        100,
        0.3,
    )


async def test_a_request_beyond_the_lines_in_use_gets_error_101_and_a_cancel_gives_the_line_back(
    fake: FakeTws, ib: IB, caplog: pytest.LogCaptureFixture
) -> None:
    fake.state.market_data_lines = 3
    errors = collect_errors(ib)
    contracts = {s: await stock(ib, s) for s in ("AAA", "BBB", "CCC", "DDD")}
    for contract in contracts.values():
        ib.reqMktData(contract)  # streaming: holds its line until cancelled
    await until(lambda: len(errors) == 1)

    assert [(code, text) for _, code, text in errors] == [(101, "Max number of tickers has been reached")]
    assert fake.state.market_data_refusals == ["DDD"]
    assert fake.lines.in_use == 3

    ib.cancelMktData(contracts["AAA"])
    await until(lambda: fake.lines.in_use == 2)
    ticker = ib.reqMktData(contracts["DDD"])
    await until(lambda: ticker.last == 25.0)
    assert fake.lines.in_use == 3
    assert ib_async_errors(caplog.records) == []


async def test_a_snapshot_sends_its_data_at_once_and_ends_holding_its_line_until_then(
    fake: FakeTws, ib: IB
) -> None:
    fake.state.snapshot_seconds = 0.5
    contract = await stock(ib, "AAA")
    started = time.monotonic()
    [ticker] = await ib.reqTickersAsync(contract)
    assert time.monotonic() - started >= 0.5
    assert (ticker.last, ticker.bid, ticker.ask, ticker.close) == (50.0, 50.0, 50.0, 50.0)
    assert fake.lines.in_use == 0


async def test_delayed_data_comes_with_its_own_ticks_and_a_last_trade_time_behind_by_the_delay(
    fake: FakeTws, ib: IB, caplog: pytest.LogCaptureFixture
) -> None:
    fake.state.snapshot_seconds = 0.1
    fake.state.quotes["DLY"] = FakeQuote(last=60.0, bid=59.0, ask=61.0, close=58.0, data_type=3)
    contract = await stock(ib, "DLY")
    ib.reqMarketDataType(1)
    errors = collect_errors(ib)
    await ib.reqTickersAsync(contract)
    ib.reqMarketDataType(3)
    tick_types: set[int] = set()
    ib.pendingTickersEvent += lambda tickers: tick_types.update(t.tickType for k in tickers for t in k.ticks)
    [delayed] = await ib.reqTickersAsync(contract)

    assert [code for _, code, _ in errors] == [354]  # not subscribed to live data for it
    assert delayed.marketDataType == 3
    assert tick_types == {66, 67, 68, 75}
    assert (delayed.last, delayed.bid, delayed.ask, delayed.close) == (60.0, 59.0, 61.0, 58.0)
    assert delayed.delayedLastTimestamp is not None
    assert delayed.lastTimestamp is None
    age = time.time() - delayed.delayedLastTimestamp.timestamp()
    assert 15 * 60 <= age <= 20 * 60
    assert ib_async_errors(caplog.records) == []


async def _place(ib: IB, symbol: str, quantity: float) -> Trade:
    order = Order(action="BUY", totalQuantity=quantity, orderType="MKT", account=ACCOUNT)
    trade = ib.placeOrder(Stock(symbol, "SMART", "USD"), order)
    await until(trade.isDone)
    return trade


async def test_a_rejected_order_gets_error_201_with_the_reason_and_ends_inactive(
    fake: FakeTws, ib: IB, caplog: pytest.LogCaptureFixture
) -> None:
    fake.state.rejections["BBB"] = "YOUR ORDER IS NOT ACCEPTED. PATTERN DAY TRADER RULE"
    trade = await _place(ib, "BBB", 5)
    await until(lambda: trade.orderStatus.status == "Inactive")

    [error] = [entry for entry in trade.log if entry.errorCode]
    assert error.errorCode == 201
    assert "Order rejected - reason:YOUR ORDER IS NOT ACCEPTED" in error.message
    assert trade.orderStatus.filled == 0
    assert fake.state.open_orders == []
    assert fake.state.fills == []
    assert ib_async_errors(caplog.records) == []


async def test_a_fractional_quantity_is_refused_with_error_10243_and_ends_cancelled(
    fake: FakeTws, ib: IB
) -> None:
    trade = await _place(ib, "BBB", 1.5)

    [error] = [entry for entry in trade.log if entry.errorCode]
    assert error.errorCode == 10243
    assert "Fractional-sized order cannot be placed via API" in error.message
    assert trade.orderStatus.status == "Cancelled"
    assert fake.state.fills == []
    whole = await _place(ib, "BBB", 2)
    assert whole.orderStatus.status == "Filled"


async def test_more_than_50_messages_in_a_second_get_error_100_and_are_not_processed(
    fake: FakeTws, ib: IB
) -> None:
    errors = collect_errors(ib)
    ib.client.MaxRequests = 0  # ib_async's own throttle off: send as fast as the socket takes them
    for _ in range(80):
        ib.client.reqCurrentTime()  # type: ignore[no-untyped-call]
    await until(lambda: len(errors) >= len(fake.state.paced_out) > 0)
    await asyncio.sleep(0.2)

    assert len(fake.state.paced_out) >= 80 - 50
    assert set(fake.state.paced_out) == {49}
    assert {(req_id, code) for req_id, code, _ in errors} == {(-1, 100)}
    assert len(errors) == len(fake.state.paced_out)
    assert errors[0][2] == "Max rate of messages per second has been exceeded."


async def test_pacing_counts_a_message_when_it_reached_the_socket_not_when_a_stalled_fake_read_it(
    fake: FakeTws, ib: IB
) -> None:
    # The fake shares the test's process: a stall of that process must not bunch two bursts a second
    # apart into one second, as the real gateway (a process of its own) would never see them bunched.
    errors = collect_errors(ib)
    ib.client.MaxRequests = 0
    await asyncio.sleep(1.1)  # the connect's own messages leave the window
    for _ in range(45):
        ib.client.reqCurrentTime()  # type: ignore[no-untyped-call]
    time.sleep(0.7)  # noqa: ASYNC251 - the stall under test: nothing reads the first burst for 0.7 s
    await asyncio.sleep(0.4)  # the fake reads it now; the second burst leaves 1.1 s after the first
    for _ in range(45):
        ib.client.reqCurrentTime()  # type: ignore[no-untyped-call]
    await asyncio.sleep(0.3)

    assert fake.state.messages_received[ib.client.clientId] >= 90
    assert fake.state.paced_out == []
    assert errors == []


async def test_two_bursts_the_fake_reads_in_one_go_keep_their_own_arrival_times(
    fake: FakeTws, ib: IB
) -> None:
    # A stall over both bursts: the fake finds 90 messages waiting at once. Read in one chunk, they
    # would all carry the last one's time and look like 90 in one second.
    errors = collect_errors(ib)
    ib.client.MaxRequests = 0
    await asyncio.sleep(1.1)  # the connect's own messages leave the window
    for _ in range(45):
        ib.client.reqCurrentTime()  # type: ignore[no-untyped-call]
    time.sleep(1.1)  # noqa: ASYNC251 - the stall under test: the second burst leaves 1.1 s after the first
    for _ in range(45):
        ib.client.reqCurrentTime()  # type: ignore[no-untyped-call]
    await asyncio.sleep(0.5)  # the fake reads both bursts now

    assert fake.state.messages_received[ib.client.clientId] >= 90
    assert fake.state.paced_out == []
    assert errors == []


def test_ib_async_paces_its_requests_by_default_below_the_gateways_limit() -> None:
    client = IB().client
    assert 0 < client.MaxRequests / client.RequestsInterval <= 45


async def test_requests_of_one_connection_are_in_flight_together_and_answered_after_the_round_trip_in_order(
    fake: FakeTws, ib: IB
) -> None:
    fake.state.round_trip_seconds = 0.3
    symbols = ["AAA", "BBB", "CCC", "DDD", "EEE"]
    answered: list[str] = []

    async def details(symbol: str) -> None:
        await ib.reqContractDetailsAsync(Stock(symbol, "SMART", "USD"))
        answered.append(symbol)

    started = time.monotonic()
    await asyncio.gather(*(details(s) for s in symbols))

    assert time.monotonic() - started >= 0.3  # no answer before its round trip
    assert fake.state.most_in_flight >= len(symbols) - 1  # the others waited in flight, not in a queue
    assert answered == symbols


async def test_messages_in_flight_count_against_the_pacing_limit_when_they_arrive(
    fake: FakeTws, ib: IB
) -> None:
    fake.state.round_trip_seconds = 0.2
    errors = collect_errors(ib)
    ib.client.MaxRequests = 0
    connecting = sum(fake.state.messages_received.values())  # START_API and the connect's requests
    for _ in range(60):
        ib.client.reqCurrentTime()  # type: ignore[no-untyped-call]
    over = connecting + 60 - 50
    await until(lambda: len(errors) >= over)
    await asyncio.sleep(0.3)

    assert len(fake.state.paced_out) == len(errors) == over


async def test_a_snapshot_brings_its_data_and_its_end_after_the_snapshot_time(fake: FakeTws, ib: IB) -> None:
    fake.state.snapshot_data_seconds = fake.state.snapshot_seconds = 0.3
    contract = await stock(ib, "AAA")
    started = time.monotonic()
    ticker = ib.reqMktData(contract, snapshot=True)
    await asyncio.sleep(0.15)
    assert math.isnan(ticker.last)
    assert fake.lines.in_use == 1

    await until(lambda: fake.lines.in_use == 0)
    assert time.monotonic() - started >= 0.3
    assert (ticker.last, ticker.bid, ticker.ask, ticker.close) == (50.0, 50.0, 50.0, 50.0)


async def test_a_gateway_serves_at_most_32_api_clients_and_a_33rd_is_not_answered(fake: FakeTws) -> None:
    clients = [IB() for _ in range(32)]
    try:
        await asyncio.gather(
            *(
                c.connectAsync("127.0.0.1", fake.port, clientId=100 + i, timeout=3)
                for i, c in enumerate(clients)
            )
        )
        assert len(fake.connected_client_ids) == 32
        extra = IB()
        with pytest.raises(TimeoutError):
            await extra.connectAsync("127.0.0.1", fake.port, clientId=200, timeout=0.5)
        extra.disconnect()
        assert fake.state.connection_refusals == [200]

        clients.pop().disconnect()
        await until(lambda: len(fake.connected_client_ids) == 31)
        later = IB()
        await later.connectAsync("127.0.0.1", fake.port, clientId=201, timeout=3)
        clients.append(later)
        assert fake.state.peak_connections == 32
        assert fake.state.connection_refusals == [200]
    finally:
        for client in clients:
            client.disconnect()


async def test_a_third_active_account_summary_is_refused_with_error_322_until_one_is_cancelled(
    fake: FakeTws, ib: IB
) -> None:
    errors = collect_errors(ib)
    first, second, third = (ib.client.getReqId() for _ in range(3))
    for req_id in (first, second, third):
        ib.client.reqAccountSummary(req_id, "All", "NetLiquidation")  # type: ignore[no-untyped-call]
    await until(lambda: len(errors) == 1)
    assert errors[0][:2] == (third, 322)
    assert "Maximum number of account summary requests exceeded" in errors[0][2]
    assert fake.state.summary_refusals == [third]

    ib.client.cancelAccountSummary(first)  # type: ignore[no-untyped-call]
    fourth = ib.client.getReqId()
    ib.client.reqAccountSummary(fourth, "All", "NetLiquidation")  # type: ignore[no-untyped-call]
    await asyncio.sleep(0.2)
    assert fake.state.summary_refusals == [third]


async def test_position_changes_stream_only_to_the_subscriptions_that_cover_the_account(
    fake: FakeTws, ib: IB
) -> None:
    fake.state.position_lag_seconds = 0.05
    multi: list[tuple[int, str, float]] = []

    def position_multi(
        req_id: int, account: str, model: str, contract: Contract, pos: float, cost: float
    ) -> None:
        multi.append((req_id, contract.symbol, pos))

    ib.wrapper.positionMulti = position_multi  # type: ignore[method-assign, assignment]
    unsubscribed = IB()
    await unsubscribed.connectAsync("127.0.0.1", fake.port, clientId=4, timeout=3)
    try:
        unsubscribed.client.cancelPositions()  # type: ignore[no-untyped-call]
        streamed: list[float] = []
        unsubscribed.positionEvent += lambda position: streamed.append(position.position)
        req_id = ib.client.getReqId()
        ib.client.reqPositionsMulti(req_id, ACCOUNT, "")  # type: ignore[no-untyped-call]
        await until(lambda: len(multi) == 2 * 4)  # the answer: four positions, each sent twice
        await _place(ib, "BBB", 5)
        await until(lambda: (req_id, "BBB", 15.0) in multi)
        await asyncio.sleep(0.1)
        assert streamed == []
    finally:
        unsubscribed.disconnect()
