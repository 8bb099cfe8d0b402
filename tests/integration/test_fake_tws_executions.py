"""The loopback TWS's executions and day-trade counter, seen by the bare ib_async (tests/fakes/tws/README.md).

IB answers `reqExecutions` with the account's executions since midnight (up to 7 days with TWS's
Trade Log setting), one execDetails and one commissionReport each, then execDetailsEnd; a connection
that is neither client 0 nor the master client id sees only its own client's executions. The time
comes as "yyyymmdd-hh:mm:ss" in UTC. `DayTradesRemaining` (-1: unlimited) and its T+1..T+4 come
with the account summary and the account updates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from ib_async import IB, ExecutionFilter, Fill, Order, Stock

from tests.fakes.tws import FakeTws, serve
from tests.fakes.tws.scenarios import ACCOUNT, drifted_state, ib_async_errors

NEW_YORK = ZoneInfo("America/New_York")
MORNING = datetime(2026, 12, 2, 9, 45, tzinfo=NEW_YORK)  # the default market clock is 11:00 that day
YESTERDAY_EVENING = datetime(2026, 12, 1, 21, 0, tzinfo=NEW_YORK)  # 02:00 UTC on the 2nd
OTHER = "DU2"


@pytest.fixture(autouse=True)
def _ib_async_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ib_async")


@pytest.fixture
async def fake(caplog: pytest.LogCaptureFixture) -> AsyncIterator[FakeTws]:
    state = drifted_state()
    state.add_account(OTHER, 1_000.0)
    async with serve(state) as server:
        yield server
        assert server.errors == []
    assert ib_async_errors(caplog.records) == []


async def connect(fake: FakeTws, client_id: int) -> IB:
    ib = IB()
    ib.TimezoneTWS = "UTC"  # IB sends execution times in UTC ("yyyymmdd-hh:mm:ss") at this server version
    await ib.connectAsync("127.0.0.1", fake.port, clientId=client_id, timeout=3)
    return ib


async def executions(ib: IB, acctCode: str = "", time: str = "") -> list[Fill]:
    return await asyncio.wait_for(ib.reqExecutionsAsync(ExecutionFilter(acctCode=acctCode, time=time)), 3)


async def test_day_trades_remaining_is_unlimited_by_default_in_the_summary_and_the_updates(
    fake: FakeTws,
) -> None:
    ib = await connect(fake, 3)
    try:
        summary = await asyncio.wait_for(ib.accountSummaryAsync(ACCOUNT), 3)
        updates = ib.accountValues(ACCOUNT)
    finally:
        ib.disconnect()
    day_trade_tags = ["DayTradesRemaining", *(f"DayTradesRemainingT+{n}" for n in range(1, 5))]
    assert {v.tag: v.value for v in summary if v.tag in day_trade_tags} == dict.fromkeys(day_trade_tags, "-1")
    assert {v.tag: v.value for v in updates if v.tag in day_trade_tags} == dict.fromkeys(day_trade_tags, "-1")
    assert {v.currency for v in updates if v.tag in day_trade_tags} == {""}, "a count, not an amount"


async def test_day_trades_remaining_is_set_per_account_with_its_days_ahead(fake: FakeTws) -> None:
    fake.state.accounts[ACCOUNT].day_trades_remaining = 0
    fake.state.accounts[ACCOUNT].day_trades_later = [0, 1, 2, 3]
    ib = await connect(fake, 3)
    try:
        summary = await asyncio.wait_for(ib.accountSummaryAsync(), 3)
    finally:
        ib.disconnect()
    mine = {v.tag: v.value for v in summary if v.account == ACCOUNT and v.tag.startswith("DayTrades")}
    other = {v.tag: v.value for v in summary if v.account == OTHER and v.tag == "DayTradesRemaining"}
    assert mine == {
        "DayTradesRemaining": "0",
        "DayTradesRemainingT+1": "0",
        "DayTradesRemainingT+2": "1",
        "DayTradesRemainingT+3": "2",
        "DayTradesRemainingT+4": "3",
    }
    assert other == {"DayTradesRemaining": "-1"}


async def test_a_fill_is_answered_by_req_executions_with_its_commission_and_utc_time(fake: FakeTws) -> None:
    trader = await connect(fake, 3)
    try:
        order = Order(action="BUY", totalQuantity=5, orderType="MKT", account=ACCOUNT, orderRef="ev-1")
        trade = trader.placeOrder(Stock("BBB", "SMART", "USD"), order)
        for _ in range(100):
            if trade.isDone():
                break
            await asyncio.sleep(0.02)
    finally:
        trader.disconnect()
    await asyncio.sleep(0.05)
    # A later connection of the same client (one that never saw the fill live) asks for it.
    later = await connect(fake, 3)
    try:
        [fill] = await executions(later, acctCode=ACCOUNT)
        # ib_async puts the commission on the fill it saw first (the one of its connect-time request).
        [cached] = [f for f in later.fills() if f.execution.execId == fill.execution.execId]
    finally:
        later.disconnect()
    assert (fill.contract.symbol, fill.contract.conId) == ("BBB", fake.state.con_id("BBB"))
    assert (fill.execution.side, fill.execution.shares, fill.execution.acctNumber) == ("BOT", 5.0, ACCOUNT)
    assert fill.execution.orderRef == "ev-1"
    assert fill.execution.execId == fake.state.fills[0].exec_id
    assert cached.commissionReport.execId == fill.execution.execId, "each execution comes with its commission"
    market_clock = datetime.fromtimestamp(fake.state.market_time, UTC)
    assert fill.execution.time == market_clock, "executed on the gateway's market clock, sent in UTC"


async def test_only_the_day_since_midnight_is_answered_unless_the_trade_log_shows_more_days(
    fake: FakeTws,
) -> None:
    fake.state.add_execution(ACCOUNT, "AAA", "BUY", 10, 50.0, MORNING)
    fake.state.add_execution(ACCOUNT, "CCC", "SELL", 4, 40.0, YESTERDAY_EVENING)
    ib = await connect(fake, 0)
    try:
        today = await executions(ib)
        fake.state.execution_days = 7  # TWS's Trade Log "Show trades for ..." (IB Gateway cannot)
        week = await executions(ib)
        since_ten = await executions(ib, time="20261202-15:00:00")  # 10:00 in New York
        other_account = await executions(ib, acctCode=OTHER)
    finally:
        ib.disconnect()
    assert [(f.contract.symbol, f.execution.side) for f in today] == [("AAA", "BOT")]
    assert [f.execution.time for f in today] == [MORNING.astimezone(UTC)]
    assert sorted(f.contract.symbol for f in week) == ["AAA", "CCC"]
    assert [f.execution.time for f in week if f.contract.symbol == "CCC"] == [
        YESTERDAY_EVENING.astimezone(UTC)
    ]
    assert since_ten == []
    assert other_account == []


async def test_a_client_sees_only_its_own_executions_unless_it_is_client_0_or_the_master(
    fake: FakeTws,
) -> None:
    fake.state.add_execution(ACCOUNT, "AAA", "BUY", 10, 50.0, MORNING)  # entered by hand in TWS
    fake.state.add_execution(ACCOUNT, "BBB", "BUY", 3, 100.0, MORNING, client_id=5)
    seen: dict[str, list[str]] = {}
    for name, client_id in (("client 5", 5), ("client 9", 9), ("client 0", 0)):
        ib = await connect(fake, client_id)
        try:
            seen[name] = sorted(f.contract.symbol for f in await executions(ib))
        finally:
            ib.disconnect()
        await asyncio.sleep(0.05)
    fake.state.master_client_id = 9
    ib = await connect(fake, 9)
    try:
        seen["master 9"] = sorted(f.contract.symbol for f in await executions(ib))
    finally:
        ib.disconnect()
    assert seen == {
        "client 5": ["BBB"],
        "client 9": [],
        "client 0": ["AAA", "BBB"],
        "master 9": ["AAA", "BBB"],
    }


async def test_a_day_trade_uses_one_remaining_and_one_at_zero_is_recorded_as_a_violation(
    fake: FakeTws,
) -> None:
    account = fake.state.accounts[ACCOUNT]
    account.day_trades_remaining = 1
    fake.state.add_execution(ACCOUNT, "AAA", "BUY", 10, 50.0, MORNING)
    fake.state.add_execution(ACCOUNT, "BBB", "BUY", 5, 100.0, MORNING - timedelta(days=1))
    ib = await connect(fake, 3)
    try:
        for symbol, quantity in (("BBB", 5), ("AAA", 10), ("DDD", 20), ("AAA", 5)):
            order = Order(action="SELL", totalQuantity=quantity, orderType="MKT", account=ACCOUNT)
            trade = ib.placeOrder(Stock(symbol, "SMART", "USD"), order)
            for _ in range(100):
                if trade.isDone():
                    break
                await asyncio.sleep(0.02)
            assert trade.orderStatus.status == "Filled"
        await asyncio.sleep(0.05)
    finally:
        ib.disconnect()
    # BBB was bought yesterday and DDD held overnight: no day trade. AAA, bought this morning, is
    # sold twice: the first sale uses the one day trade left, the second breaks the rule.
    assert account.day_trades_remaining == 0
    assert fake.state.day_trade_violations == [f"{ACCOUNT}: SELL 5 AAA (bought 2026-12-02), none remaining"]
