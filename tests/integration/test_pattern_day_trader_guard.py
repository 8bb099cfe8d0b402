"""The pattern-day-trader guard: the engine through the real ib_async against the loopback TWS.

The drifted account (scenarios.py) plans SELL AAA and SELL DDD, then BUY BBB and BUY CCC. IB reports
`DayTradesRemaining` (-1 by default: unlimited) and answers reqExecutions with the day's executions,
to each connection only its own client's unless it is the master client id (tests/fakes/tws/README.md).
"Bought AAA this morning" is an execution of the account's trading client id: an earlier run of ours.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from event_processor.brokers import IbkrBroker
from event_processor.execution import ExecutionReport, print_rebalance, rebalance
from event_processor.execution.day_trade_guard import PATTERN_DAY_TRADER
from rebalancer_shared.accounts import PdtProtection, RebalancingSettings
from rebalancer_shared.config import OrderSettings
from rebalancer_shared.failures import WaitForSession
from tests.fakes.tws import FakeTws, serve
from tests.fakes.tws.scenarios import (
    ACCOUNT,
    CLIENT_ID,
    TARGETS,
    TRADING_CLIENT_ID,
    drifted_state,
    ib_async_errors,
    ibkr_settings,
)

NEW_YORK = ZoneInfo("America/New_York")
THIS_MORNING = datetime(2026, 12, 2, 9, 45, tzinfo=NEW_YORK)  # the market clock: 11:00 that day
LAST_EVENING = datetime(2026, 12, 1, 21, 0, tzinfo=NEW_YORK)  # already the 2nd in UTC
SKIP = RebalancingSettings(pdt_protection=PdtProtection.SKIP)
DEFER = RebalancingSettings(pdt_protection=PdtProtection.DEFER)
OFF = RebalancingSettings(pdt_protection=PdtProtection.OFF)


@pytest.fixture
async def fake(caplog: pytest.LogCaptureFixture) -> AsyncIterator[FakeTws]:
    caplog.set_level(logging.INFO, logger="ib_async")
    state = drifted_state()
    state.fill_delay_seconds = 0.02
    async with serve(state) as server:
        yield server
        assert server.errors == []
    assert ib_async_errors(caplog.records) == []


@pytest.fixture
async def broker(fake: FakeTws) -> AsyncIterator[IbkrBroker]:
    made = IbkrBroker(
        ibkr_settings(fake.port), OrderSettings(), poll_interval_seconds=0.02, account_ids=[ACCOUNT]
    )
    yield made
    await made.close()


def bought_this_morning(fake: FakeTws, *symbols: str, client_id: int = TRADING_CLIENT_ID) -> None:
    for symbol in symbols:
        fake.state.add_execution(ACCOUNT, symbol, "BUY", 10, 50.0, THIS_MORNING, client_id=client_id)


def limit_day_trades(fake: FakeTws, remaining: int) -> None:
    fake.state.accounts[ACCOUNT].day_trades_remaining = remaining


async def run(broker: IbkrBroker, settings: RebalancingSettings) -> ExecutionReport:
    try:
        return await rebalance(
            broker,
            ACCOUNT,
            TARGETS,
            settings,
            "event-1",
            cancel_timeout_seconds=2,
            fill_timeout_seconds=2,
        )
    finally:
        await broker.release(ACCOUNT)


def sent(fake: FakeTws) -> list[tuple[str, str]]:
    return [(o.action, o.symbol) for o in fake.state.received_orders]


async def test_skip_leaves_out_the_sell_of_what_was_bought_today_and_trades_the_rest(
    fake: FakeTws, broker: IbkrBroker
) -> None:
    bought_this_morning(fake, "AAA")
    limit_day_trades(fake, 0)

    report = await run(broker, SKIP)

    assert ("SELL", "AAA") not in sent(fake)
    assert ("SELL", "DDD") in sent(fake)
    assert {("BUY", "BBB"), ("BUY", "CCC")} <= set(sent(fake)), "the other trades are placed"
    assert report.plan is not None
    [withheld] = report.plan.withheld
    assert (withheld.symbol, withheld.action, withheld.reason) == ("AAA", "SELL", PATTERN_DAY_TRADER)
    assert "AAA bought today" in withheld.detail
    assert "DayTradesRemaining 0" in withheld.detail
    stored = report.to_dict()
    assert [(w["symbol"], w["reason"]) for w in stored["plan"]["withheld"]] == [("AAA", PATTERN_DAY_TRADER)]
    assert stored["day_trades"] == {
        "day_trades_remaining": 0,
        "pdt_protection": "skip",
        "bought_today": ["AAA"],
        "sold_today": [],
    }
    assert "withheld by the pattern-day-trader guard: SELL" in report.message
    assert fake.state.day_trade_violations == []
    reserve = report.plan.equity_info.reserve_amount
    assert fake.state.accounts[ACCOUNT].cash >= reserve, "the buys kept the reserve without AAA's proceeds"


async def test_defer_places_nothing_and_waits_for_the_next_session_naming_the_symbol(
    fake: FakeTws, broker: IbkrBroker
) -> None:
    bought_this_morning(fake, "AAA")
    limit_day_trades(fake, 0)

    with pytest.raises(WaitForSession) as deferred:
        await run(broker, DEFER)

    message = str(deferred.value)
    assert message.startswith(f"account {ACCOUNT}: pattern-day-trader guard: 1 day trade(s) planned ")
    assert "SELL AAA (bought today)" in message
    assert "DayTradesRemaining is 0" in message
    assert message.endswith("nothing placed (pdt_protection: defer): the run waits for the next session")
    assert deferred.value.not_before is None, "the next allowed session by the trading calendar"
    assert fake.state.received_orders == []


async def withheld_by_a_dry_run(
    fake: FakeTws, broker: IbkrBroker, settings: RebalancingSettings
) -> list[str]:
    """What a dry run shows the guard withholding (it reads through the reads connection: the master)."""
    fake.state.master_client_id = CLIENT_ID
    report = await print_rebalance(broker, ACCOUNT, TARGETS, settings, "event-0")
    assert report.plan is not None
    return [f"{w.action} {w.symbol}" for w in report.plan.withheld]


async def test_off_places_the_sell_and_the_account_breaks_the_rule(fake: FakeTws, broker: IbkrBroker) -> None:
    bought_this_morning(fake, "AAA")
    limit_day_trades(fake, 0)
    assert await withheld_by_a_dry_run(fake, broker, SKIP) == ["SELL AAA"]

    report = await run(broker, OFF)

    assert ("SELL", "AAA") in sent(fake)
    assert report.plan is not None
    assert report.plan.withheld == ()
    assert report.day_trade_limit is None
    assert fake.state.day_trade_violations != [], "what the guard is there to prevent"


async def test_an_unlimited_account_is_not_guarded(fake: FakeTws, broker: IbkrBroker) -> None:
    bought_this_morning(fake, "AAA")
    limit_day_trades(fake, 0)
    assert await withheld_by_a_dry_run(fake, broker, SKIP) == ["SELL AAA"]
    limit_day_trades(fake, -1)  # 25,000 USD or more: IB no longer limits the account

    report = await run(broker, DEFER)

    assert ("SELL", "AAA") in sent(fake)
    assert report.plan is not None
    assert report.plan.withheld == ()
    assert report.to_dict()["day_trades"] is None


async def test_one_remaining_and_two_day_trades_places_one_with_skip(
    fake: FakeTws, broker: IbkrBroker
) -> None:
    bought_this_morning(fake, "AAA", "DDD")
    limit_day_trades(fake, 1)

    report = await run(broker, SKIP)

    sells = [symbol for action, symbol in sent(fake) if action == "SELL"]
    assert sells == ["AAA"], "the first day trade in plan order uses the one remaining"
    assert report.plan is not None
    assert [(w.symbol, w.action) for w in report.plan.withheld] == [("DDD", "SELL")]
    assert fake.state.accounts[ACCOUNT].day_trades_remaining == 0
    assert fake.state.day_trade_violations == []


async def test_the_buys_after_the_sells_obey_the_guard_too(fake: FakeTws, broker: IbkrBroker) -> None:
    bought_this_morning(fake, "AAA")
    fake.state.add_execution(ACCOUNT, "CCC", "SELL", 5, 40.0, THIS_MORNING, client_id=TRADING_CLIENT_ID)
    limit_day_trades(fake, 1)

    report = await run(broker, SKIP)

    assert ("SELL", "AAA") in sent(fake), "the sell uses the one day trade left"
    assert ("BUY", "CCC") not in sent(fake), "buying back what was sold today would be a second"
    assert ("BUY", "BBB") in sent(fake)
    assert report.buy_plan is not None
    assert [(w.symbol, w.action) for w in report.buy_plan.withheld] == [("CCC", "BUY")]
    assert fake.state.day_trade_violations == []


async def test_an_execution_of_the_evening_before_does_not_count(fake: FakeTws, broker: IbkrBroker) -> None:
    fake.state.execution_days = 7  # TWS's Trade Log shows a week: the gateway hands yesterday over too
    fake.state.add_execution(ACCOUNT, "AAA", "BUY", 10, 50.0, LAST_EVENING, client_id=TRADING_CLIENT_ID)
    bought_this_morning(fake, "DDD")
    limit_day_trades(fake, 0)

    report = await run(broker, SKIP)

    assert ("SELL", "AAA") in sent(fake), "21:00 in New York on the 1st is not today, though the 2nd in UTC"
    assert ("SELL", "DDD") not in sent(fake), "this morning's is"
    assert report.plan is not None
    assert [(w.symbol, w.action) for w in report.plan.withheld] == [("DDD", "SELL")]
    assert fake.state.day_trade_violations == []


async def test_a_trade_entered_by_hand_counts_when_the_reads_client_is_the_master(
    fake: FakeTws, broker: IbkrBroker
) -> None:
    fake.state.master_client_id = CLIENT_ID  # IB_CLIENT_ID set to the gateway's master API client id
    bought_this_morning(fake, "AAA", client_id=0)
    limit_day_trades(fake, 0)

    with pytest.raises(WaitForSession, match=r"SELL AAA \(bought today\)"):
        await run(broker, DEFER)
    assert fake.state.received_orders == []


async def test_a_dry_run_shows_what_skip_would_withhold_and_that_defer_would_wait(
    fake: FakeTws, broker: IbkrBroker
) -> None:
    fake.state.master_client_id = CLIENT_ID  # a dry run reads through the reads connection only
    bought_this_morning(fake, "AAA")
    limit_day_trades(fake, 0)

    skipped = await print_rebalance(broker, ACCOUNT, TARGETS, SKIP, "event-2")
    deferred = await print_rebalance(broker, ACCOUNT, TARGETS, DEFER, "event-3")

    assert skipped.plan is not None
    assert [(w.symbol, w.action) for w in skipped.plan.withheld] == [("AAA", "SELL")]
    assert ("AAA", "SELL") not in [(o.symbol, o.action) for o in skipped.plan.orders]
    assert "withheld by the pattern-day-trader guard: SELL" in skipped.message
    assert deferred.message.startswith(f"dry run: account {ACCOUNT}: pattern-day-trader guard: ")
    assert "SELL AAA (bought today)" in deferred.message
    assert deferred.message.endswith(
        "a live run would place nothing (pdt_protection: defer): the run waits for the next session"
    )
    assert deferred.plan is not None
    assert deferred.plan.withheld == ()
    assert fake.state.received_orders == []
