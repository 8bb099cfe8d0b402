"""Reading an account for planning: once before the sells, and again once the sells have filled.

`read_account` takes the account values (refusing an account whose base currency is not the trading
currency), the positions once per contract, each held stock's US listing (so a foreign listing of
the same ticker is never taken for it), and a price for every symbol the plan may trade. The reads
are independent, so they run together: values, positions and the targets' prices at once, and the
price of a held stock that is no target as soon as the positions name it.

`read_after_sells` is what the buys are planned from. IB shows a fill in the cash at once but in the
positions only later (ib_async #15), so it waits, up to `settle_timeout_seconds`, until the positions
show the sells' fills; if they still do not, it takes the holdings the fills imply. Cash is never taken
above the first snapshot's plus the sells' proceeds, and prices are read afresh; cash and prices are
read while the positions settle. A run that traded
also waits (`wait_for_fills_in_positions`) until the positions show all its fills before it ends, so
the next run's first snapshot does not see the cash spent but the shares not yet bought.

`read_day_trade_limit` reads IB's `DayTradesRemaining` and, when it limits the account, the day's
executions: what the pattern-day-trader guard (`day_trade_guard`) decides from.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, replace

import structlog

from event_processor.brokers.models import AccountValues, BrokerPosition, OrderResult
from event_processor.brokers.protocol import ReadOnlyBroker
from event_processor.execution.day_trade_guard import DayTradeLimit, TradesToday
from event_processor.execution.holdings import (
    expected_after,
    holdings_of,
    listing_candidates,
    require_trading_currency,
    sell_proceeds,
    shows,
    traded_symbols,
    unique_positions,
    with_quantities,
)
from event_processor.planner import Holding
from event_processor.task_groups import concurrently
from rebalancer_shared.accounts import PdtProtection

log = structlog.get_logger(__name__)

DEFAULT_POSITION_SETTLE_SECONDS = 5.0
# The positions are asked for again as soon as the broker tells of a change, else after 20 ms, then
# twice as long each time up to 100 ms: a short lag is seen soon, a long one costs few requests.
FIRST_POSITION_POLL_SECONDS = 0.02
POSITION_POLL_SECONDS = 0.1
CASH_TOLERANCE = 0.01


@dataclass(frozen=True)
class Snapshot:
    """The account as read from the broker at one moment, and the planner's holdings of it."""

    values: AccountValues
    positions: tuple[BrokerPosition, ...]
    holdings: Mapping[str, Holding]
    prices: Mapping[str, float]


async def read_values(broker: ReadOnlyBroker, account_id: str) -> AccountValues:
    """NetLiquidation and TotalCashValue; `UnsupportedAccountError` unless they are in USD."""
    values = await broker.get_account_values(account_id)
    require_trading_currency(values)
    return values


Holdings = tuple[tuple[BrokerPosition, ...], dict[str, Holding]]


async def read_holdings(broker: ReadOnlyBroker, account_id: str) -> Holdings:
    """The positions once per contract, and the planner's holdings of them."""
    positions = unique_positions(await broker.get_positions(account_id))
    candidates = listing_candidates(positions)
    listings = await broker.get_listings(candidates, account_id) if candidates else {}
    return positions, holdings_of(positions, listings)


async def read_prices(broker: ReadOnlyBroker, account_id: str, symbols: Sequence[str]) -> dict[str, float]:
    return await broker.get_prices(sorted(symbols), account_id) if symbols else {}


async def _prices_still_missing(
    broker: ReadOnlyBroker,
    account_id: str,
    targets: Mapping[str, float],
    holdings: Awaitable[Holdings],
    asked: Sequence[str],
) -> dict[str, float]:
    """Prices of the symbols the plan may trade that were not among those `asked` for: held stocks
    that are no target, once `holdings` names them."""
    _, held = await holdings
    return await read_prices(broker, account_id, sorted(set(traded_symbols(targets, held)) - set(asked)))


async def read_account(broker: ReadOnlyBroker, account_id: str, targets: Mapping[str, float]) -> Snapshot:
    """Values, positions, holdings, and the prices of every target and traded held stock, read together."""
    asked = sorted(targets)
    async with concurrently() as group:
        values = group.create_task(read_values(broker, account_id))
        holdings = group.create_task(read_holdings(broker, account_id))
        target_prices = group.create_task(read_prices(broker, account_id, asked))
        other_prices = group.create_task(_prices_still_missing(broker, account_id, targets, holdings, asked))
    positions, held = holdings.result()
    return Snapshot(values.result(), positions, held, {**target_prices.result(), **other_prices.result()})


async def read_day_trade_limit(
    broker: ReadOnlyBroker, account_id: str, protection: PdtProtection
) -> DayTradeLimit | None:
    """The account's day-trade limit and today's trades; None when the guard is off or IB does not
    limit the account (DayTradesRemaining -1, or not reported)."""
    if protection is PdtProtection.OFF:
        return None
    remaining = await broker.get_day_trades_remaining(account_id)
    if remaining is None or remaining < 0:
        log.info("day trades not limited", account_id=account_id, day_trades_remaining=remaining)
        return None
    executions = await broker.get_todays_executions(account_id)
    limit = DayTradeLimit(remaining, protection, TradesToday.of(executions))
    log.info("day trades limited", account_id=account_id, **limit.to_dict())
    return limit


async def read_after_sells(
    broker: ReadOnlyBroker,
    account_id: str,
    targets: Mapping[str, float],
    first: Snapshot,
    sells: Sequence[OrderResult],
    settle_timeout_seconds: float,
) -> Snapshot:
    """The account as the buys should see it: holdings that show the sells' fills, fresh prices.

    Cash and the prices of the symbols the sells leave tradable are read while the positions settle;
    a symbol the settled positions add (none, unless something else traded) is priced after."""
    expected = expected_after(first.holdings, sells)
    still_held = {k: h for k, h in first.holdings.items() if expected.get(k, h.quantity) > 0}
    asked = traded_symbols(targets, still_held)
    async with concurrently() as group:
        settled = group.create_task(
            _settled_holdings(broker, account_id, first.holdings, sells, settle_timeout_seconds)
        )
        read = group.create_task(read_values(broker, account_id))
        prices = group.create_task(read_prices(broker, account_id, asked))
        missing = group.create_task(_prices_still_missing(broker, account_id, targets, settled, asked))
    positions, holdings = settled.result()
    values = read.result()
    ceiling = first.values.total_cash + sell_proceeds(sells)
    if values.total_cash > ceiling + CASH_TOLERANCE:
        log.info(
            "cash is above what the sells can have brought in; planning the buys with the lower figure",
            account_id=account_id,
            reported=values.total_cash,
            ceiling=ceiling,
        )
        values = replace(values, total_cash=ceiling)
    return Snapshot(values, positions, holdings, {**prices.result(), **missing.result()})


async def _settled_holdings(
    broker: ReadOnlyBroker,
    account_id: str,
    before: Mapping[str, Holding],
    orders: Sequence[OrderResult],
    wait_seconds: float,
) -> Holdings:
    positions, holdings, _ = await wait_for_fills_in_positions(
        broker, account_id, before, orders, wait_seconds
    )
    return positions, holdings


async def wait_for_fills_in_positions(
    broker: ReadOnlyBroker,
    account_id: str,
    before: Mapping[str, Holding],
    orders: Sequence[OrderResult],
    wait_seconds: float,
) -> tuple[tuple[BrokerPosition, ...], dict[str, Holding], bool]:
    """Positions and holdings once they show the orders' fills (True), or at the deadline with the
    holdings the fills imply put in (False)."""
    expected = expected_after(before, orders)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    poll = FIRST_POSITION_POLL_SECONDS
    while True:
        positions, holdings = await read_holdings(broker, account_id)
        if shows(holdings, expected):
            return positions, holdings, True
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.warning(
                "positions do not show the fills yet; taking the quantities the fills imply",
                account_id=account_id,
                waited_seconds=wait_seconds,
                expected=expected,
            )
            return positions, with_quantities(holdings, before, expected), False
        await broker.wait_for_position_change(account_id, min(poll, remaining))
        poll = min(2 * poll, POSITION_POLL_SECONDS)
