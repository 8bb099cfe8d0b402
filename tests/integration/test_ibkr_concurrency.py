"""IbkrBroker: requests in flight together within IB's limits, through ib_async and the loopback TWS.

What may run together on one connection (requests ib_async answers by request id), what may not (the
answers it files under one name per connection, two account summaries at most), and the process's
cap on connections. No assertion here is on wall-clock time: the fake counts what was in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from event_processor.brokers import IbkrBroker, OrderRequest, OrderResult
from event_processor.brokers.ibkr_pacing import send_room
from event_processor.execution import rebalance
from rebalancer_shared.accounts import RebalancingSettings
from rebalancer_shared.config import OrderSettings
from tests.fakes.tws import FakeOrder, FakePosition, FakeTws, serve
from tests.fakes.tws.scenarios import (
    ACCOUNT,
    CLIENT_ID,
    TARGETS,
    TRADING_CLIENT_ID,
    drifted_state,
    ib_async_errors,
    ibkr_settings,
)

OTHERS = [f"DU{n}" for n in range(2, 8)]


@pytest.fixture(autouse=True)
def _ib_async_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ib_async")


@pytest.fixture
async def fake() -> AsyncIterator[FakeTws]:
    state = drifted_state()
    for account_id in OTHERS:
        state.add_account(account_id, 1_000.0 * int(account_id[2:]), {"AAA": 10.0})
    state.fill_delay_seconds = 0.05
    async with serve(state) as server:
        yield server
        assert server.errors == []


@pytest.fixture
async def make_broker(fake: FakeTws) -> AsyncIterator[Callable[..., IbkrBroker]]:
    brokers: list[IbkrBroker] = []

    def make(**settings: Any) -> IbkrBroker:
        broker = IbkrBroker(
            ibkr_settings(fake.port, **settings),
            OrderSettings(),
            poll_interval_seconds=0.02,
            account_ids=[ACCOUNT, *OTHERS],
        )
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        await broker.close()


async def test_a_live_runs_values_positions_and_quotes_are_in_flight_together_on_its_own_connection(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker], caplog: pytest.LogCaptureFixture
) -> None:
    fake.state.round_trip_seconds = 0.1
    broker = make_broker()
    await broker.get_listings(["AAA", "BBB"])  # contracts known: only the reads below are measured
    await broker.reserve(ACCOUNT)
    fake.state.most_in_flight = 0
    before = dict(fake.state.messages_received)

    values, positions, prices = await asyncio.gather(
        broker.get_account_values(ACCOUNT),
        broker.get_positions(ACCOUNT),
        broker.get_prices(["AAA", "BBB"], ACCOUNT),
    )

    assert values.total_cash == 5_000.0
    assert {p.symbol for p in positions if p.sec_type == "STK"} == {"AAA", "BBB", "DDD"}
    assert prices == {"AAA": 50.0, "BBB": 100.0}
    assert fake.state.most_in_flight >= 3, "values, positions and quotes were asked for at once"
    sent = {k: n - before.get(k, 0) for k, n in fake.state.messages_received.items()}
    assert sent.get(TRADING_CLIENT_ID, 0) >= 2, "the account's reads went through its trading connection"
    assert ib_async_errors(caplog.records) == []


async def test_a_live_runs_quotes_never_wait_behind_the_shared_reads_connections_pacing(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker], caplog: pytest.LogCaptureFixture
) -> None:
    # Other runs of the process have nearly used the reads connection's pacing window: room for 4
    # messages. A run asks for its targets' prices and, once its positions are known, for a held
    # stock's, so two batches are placed before either has sent its cancels. Were the second placed
    # on the room it saw, the first one's cancels would take it, and its request would wait up to
    # 1.25 s behind them.
    broker = make_broker()
    await broker.get_listings(["AAA", "BBB", "CCC", "DDD"])  # contracts known: only quotes go out
    await broker.reserve(ACCOUNT)
    reads = await broker._connection.client()  # the shared reads connection (no public handle)
    for _ in range(send_room(reads) - 4):
        reads.client.reqCurrentTime()  # type: ignore[no-untyped-call]
    assert send_room(reads) == 4
    held_back: list[str] = []  # market data requests ib_async held back for the pacing window
    send = reads.client.sendMsg

    def watched(message: str) -> None:  # a spy on the library's own queue (its throttle passes None)
        send(message)
        if message and message.startswith("1\0") and message in reads.client._msgQ:
            held_back.append(message)

    reads.client.sendMsg = watched  # type: ignore[method-assign,assignment]

    targets, held = await asyncio.gather(
        broker.get_prices(["AAA", "BBB", "CCC"], ACCOUNT), broker.get_prices(["DDD"], ACCOUNT)
    )

    assert {**targets, **held} == {"AAA": 50.0, "BBB": 100.0, "CCC": 40.0, "DDD": 25.0}
    assert held_back == [], "a snapshot's request waited for the reads connection's pacing"
    assert ib_async_errors(caplog.records) == []


async def test_many_accounts_values_read_at_once_on_one_connection_each_get_their_own(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker], caplog: pytest.LogCaptureFixture
) -> None:
    fake.state.round_trip_seconds = 0.05
    fake.state.accounts["DU3"].day_trades_remaining = 2
    broker = make_broker()
    accounts = [ACCOUNT, *OTHERS]

    values, day_trades = await asyncio.gather(
        asyncio.gather(*(broker.get_account_values(a) for a in accounts)),
        asyncio.gather(*(broker.get_day_trades_remaining(a) for a in accounts)),
    )

    assert [v.total_cash for v in values] == [fake.state.accounts[a].cash for a in accounts]
    assert day_trades == [2 if a == "DU3" else -1 for a in accounts]
    assert fake.state.most_in_flight >= len(accounts)
    assert fake.state.summary_refusals == []
    assert ib_async_errors(caplog.records) == []


async def test_positions_and_open_orders_of_several_accounts_read_at_once_each_get_their_own_answer(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker]
) -> None:
    fake.state.round_trip_seconds = 0.05
    fake.state.open_orders.append(FakeOrder(CLIENT_ID, 3, 800_001, ACCOUNT, "BBB", "BUY", 5.0))
    fake.state.open_orders.append(FakeOrder(CLIENT_ID, 4, 800_002, "DU2", "AAA", "SELL", 1.0))
    broker = make_broker()

    positions, orders = await asyncio.gather(
        asyncio.gather(*(broker.get_positions(a) for a in (ACCOUNT, "DU2", "DU3"))),
        asyncio.gather(*(broker.get_open_orders(a) for a in (ACCOUNT, "DU2", "DU3"))),
    )

    assert [sorted(p.symbol for p in held if p.sec_type == "STK") for held in positions] == [
        ["AAA", "BBB", "DDD"],
        ["AAA"],
        ["AAA"],
    ]
    assert [[o.order_id for o in listed] for listed in orders] == [[3], [4], []]


async def test_a_run_waits_for_a_free_connection_when_the_process_has_none_left(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker]
) -> None:
    broker = make_broker(max_connections=2)  # the reads connection and one trading connection
    await broker.reserve(ACCOUNT)

    waiting = asyncio.ensure_future(broker.reserve("DU2"))
    await asyncio.sleep(0.3)
    assert not waiting.done(), "the second run waits while the first holds the only trading connection"
    assert broker.trading_client_id("DU2") not in fake.connected_client_ids

    await broker.release(ACCOUNT)
    await asyncio.wait_for(waiting, 5)
    assert broker.trading_client_id("DU2") in fake.connected_client_ids
    assert broker.trading_client_id(ACCOUNT) not in fake.connected_client_ids
    assert fake.state.connection_refusals == []
    await broker.release("DU2")


async def test_concurrent_rebalances_of_different_accounts_all_fill_within_the_gateways_limits(
    fake: FakeTws, make_broker: Callable[..., IbkrBroker], caplog: pytest.LogCaptureFixture
) -> None:
    fake.state.round_trip_seconds = 0.01
    broker = make_broker(max_connections=4)  # three runs at once; the other four wait for a connection
    accounts = [ACCOUNT, *OTHERS]

    async def run(account_id: str) -> str:
        try:
            report = await rebalance(broker, account_id, TARGETS, RebalancingSettings(), f"e-{account_id}")
            return str(report.outcome)
        finally:
            await broker.release(account_id)

    outcomes = await asyncio.gather(*(run(a) for a in accounts))

    assert outcomes == ["filled"] * len(accounts)
    assert fake.state.peak_connections <= 4
    assert fake.state.connection_refusals == []
    assert fake.state.summary_refusals == []
    assert fake.state.paced_out == []
    assert fake.state.market_data_refusals == []
    assert ib_async_errors(caplog.records) == []


async def test_a_rebalance_sends_all_its_sells_before_the_first_is_answered(fake: FakeTws) -> None:
    fake.state.round_trip_seconds = 0.2
    account = fake.state.accounts[ACCOUNT]
    account.positions = {f"S{i}": FakePosition(f"S{i}", 100.0) for i in range(6)}
    account.cash = 0.0
    for symbol in account.positions:
        fake.state.set_price(symbol, 10.0)
    in_flight: list[int] = []

    class Watched(IbkrBroker):
        async def wait_for_fills(
            self, account_id: str, order_ids: Sequence[int], timeout_seconds: float
        ) -> list[OrderResult]:
            done = await super().wait_for_fills(account_id, order_ids, timeout_seconds)
            in_flight.append(fake.state.most_in_flight)  # the most waiting for an answer so far
            fake.state.most_in_flight = 0
            return done

        async def place_orders(
            self, account_id: str, orders: Sequence[OrderRequest], order_ref: str
        ) -> list[OrderResult]:
            fake.state.most_in_flight = 0
            return await super().place_orders(account_id, orders, order_ref)

    broker = Watched(ibkr_settings(fake.port), OrderSettings(), poll_interval_seconds=0.02)
    try:
        report = await rebalance(broker, ACCOUNT, {"S0": 1.0}, RebalancingSettings(), "e-burst")
    finally:
        await broker.close()

    assert [o.action for o in report.orders] == ["SELL"] * 5 + ["BUY"]
    # Had each sell waited for the answer to the one before, at most one would ever be in flight.
    assert in_flight[0] >= 5 - 1
