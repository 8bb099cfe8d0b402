"""The execution engine: one function per command, from target weights to an `ExecutionReport`.

Live `rebalance`:
0. refuse (`UnsupportedAccountError`, nothing done) an account whose base currency is not USD;
1. cancel every open order of the account and wait for the confirmations (else `BrokerError`);
2. snapshot NetLiquidation, TotalCashValue, the positions (once per contract, each held stock checked
   against its symbol's US listing) and the prices of every target and traded held stock; and when
   IB limits the account's day trades (`DayTradesRemaining` >= 0, `pdt_protection` not off), the
   day's executions (these reads are independent and run together, snapshot.py);
3. plan with `plan_rebalance`; the pattern-day-trader guard (`day_trade_guard`) withholds the day
   trades beyond the limit (`skip`) or, with `defer`, raises `WaitForSession` before any order;
   place the sells, wait for their fills;
4. re-read the account once its positions show the sells' fills (or from the fills, see
   snapshot.py), with fresh prices; re-plan with the same planner, guard the buys again (the sells
   used some of the limit, and a buy of what they sold is a day trade too; with `defer` a run whose
   buys went beyond the limit raises `WaitForSession` with the sells placed), place that plan's
   buys (cut to the cash above the reserve), wait;
5. wait (bounded) until the positions show every fill, so the next run reads a settled account;
6. report every order; a partial or failed outcome raises `ExecutionFailed` so the event retries,
   and the retry re-plans from whatever the account holds by then.

Read-only commands take any `ReadOnlyBroker` and wrap it in a `ReadOnlyBrokerView`, so even when
handed a full broker they cannot place or cancel anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import structlog

from event_processor.brokers.models import OrderRequest, OrderResult
from event_processor.brokers.protocol import Broker, ReadOnlyBroker, ReadOnlyBrokerView
from event_processor.execution.day_trade_guard import DayTradeLimit, decide, deferral_message
from event_processor.execution.guard import UNGUARDED, OrderGuard
from event_processor.execution.holdings import buys_within, unique_positions
from event_processor.execution.report import ExecutionFailed, ExecutionReport, Outcome
from event_processor.execution.snapshot import (
    DEFAULT_POSITION_SETTLE_SECONDS,
    Snapshot,
    read_account,
    read_after_sells,
    read_day_trade_limit,
    read_values,
    wait_for_fills_in_positions,
)
from event_processor.planner import Plan, PlanInput, PlannedOrder, plan_rebalance
from event_processor.task_groups import concurrently
from rebalancer_shared.accounts import RebalancingSettings
from rebalancer_shared.events import Command
from rebalancer_shared.failures import WaitForSession

log = structlog.get_logger(__name__)

DEFAULT_CANCEL_TIMEOUT_SECONDS = 60.0
DEFAULT_FILL_TIMEOUT_SECONDS = 300.0
FRACTIONAL_UNIT = 0.0001


def _read_only(broker: ReadOnlyBroker) -> ReadOnlyBrokerView:
    return broker if isinstance(broker, ReadOnlyBrokerView) else ReadOnlyBrokerView(broker)


def plan_for(snapshot: Snapshot, targets: Mapping[str, float], settings: RebalancingSettings) -> Plan:
    return plan_rebalance(
        PlanInput(
            targets=dict(targets),
            holdings=snapshot.holdings,
            prices=snapshot.prices,
            cash=snapshot.values.total_cash,
            net_liquidation=snapshot.values.net_liquidation,
            settings=settings,
        )
    )


def guard_day_trades(
    plan: Plan, orders: Sequence[PlannedOrder], limit: DayTradeLimit | None, account_id: str, done: str
) -> Plan:
    """`plan` without the day trades among `orders` beyond the limit (`skip`); with `defer` and too
    many, `WaitForSession` naming them, the count left and what was `done` already."""
    decision = decide(orders, limit)
    if decision.defers and limit is not None:
        raise WaitForSession(deferral_message(account_id, decision, limit, done))
    return plan.withholding(decision.withheld)


def _requests(orders: Sequence[PlannedOrder]) -> list[OrderRequest]:
    return [OrderRequest(o.symbol, o.action, o.quantity, o.est_price) for o in orders]


async def _place_and_wait(
    broker: Broker,
    account_id: str,
    orders: Sequence[PlannedOrder],
    event_id: str,
    fill_timeout: float,
    guard: OrderGuard,
) -> list[OrderResult]:
    if not orders:
        return []
    requests = _requests(orders)
    await guard.before_placing(requests)
    placed = await broker.place_orders(account_id, requests, order_ref=event_id)
    await guard.placed(placed)
    settled = await broker.wait_for_fills(account_id, [o.order_id for o in placed], fill_timeout)
    await guard.settled(settled)
    return settled


def _affordable_buys(
    plan: Plan, cash: float, settings: RebalancingSettings, bound: structlog.typing.FilteringBoundLogger
) -> list[PlannedOrder]:
    """The plan's buys, cut to the cash above the reserve (only buys are placed now, no sells)."""
    planned = plan.buys()
    unit = FRACTIONAL_UNIT if settings.fractional_shares else 1.0
    budget = cash - plan.equity_info.reserve_amount
    affordable = buys_within(planned, budget, unit)
    if affordable != list(planned):
        bound.warning(
            "buys cut to the cash above the reserve: the re-plan also wanted to sell",
            planned=[o.to_dict() for o in planned],
            placed=[o.to_dict() for o in affordable],
        )
    return affordable


def outcome_of(orders: Sequence[OrderResult]) -> Outcome:
    if all(o.is_filled for o in orders):
        return Outcome.FILLED
    if any(o.filled_quantity > 0 for o in orders):
        return Outcome.PARTIAL
    return Outcome.FAILED


def _describe(orders: Sequence[OrderResult], outcome: Outcome, withheld: str = "") -> str:
    """The run's outcome in a sentence; `withheld` (from `_withheld_note`) is appended."""
    if not orders:
        return f"nothing placed{withheld}" if withheld else "nothing to trade: the account is at its targets"
    return _describe_orders(orders, outcome) + withheld


def _describe_orders(orders: Sequence[OrderResult], outcome: Outcome) -> str:
    if outcome is Outcome.FILLED:
        sells = sum(o.action == "SELL" for o in orders)
        return f"{len(orders)} order(s) filled ({sells} sell, {len(orders) - sells} buy)"
    unfinished = [
        f"{o.action} {o.quantity:g} {o.symbol}: filled {o.filled_quantity:g}, {o.status}"
        + (f" ({o.message})" if o.message else "")
        for o in orders
        if not o.is_filled
    ]
    return f"{len(unfinished)} of {len(orders)} order(s) not filled: " + "; ".join(unfinished)


@dataclass(frozen=True)
class _LiveRun:
    """What every step of one live rebalance shares."""

    broker: Broker
    account_id: str
    targets: Mapping[str, float]
    settings: RebalancingSettings
    event_id: str
    fill_timeout: float
    settle_timeout: float
    guard: OrderGuard
    log: structlog.typing.FilteringBoundLogger

    async def place(self, orders: Sequence[PlannedOrder]) -> list[OrderResult]:
        return await _place_and_wait(
            self.broker, self.account_id, orders, self.event_id, self.fill_timeout, self.guard
        )


async def _read_before_trading(run: _LiveRun) -> tuple[Snapshot, DayTradeLimit | None]:
    """The first snapshot and the day-trade limit, read together; meanwhile, the orders earlier runs
    of the event left open are settled in the history (nothing of them can fill any more)."""
    async with concurrently() as group:
        first = group.create_task(read_account(run.broker, run.account_id, run.targets))
        limit = group.create_task(
            read_day_trade_limit(run.broker, run.account_id, run.settings.pdt_protection)
        )
        group.create_task(run.guard.settle_earlier(partial(run.broker.get_todays_executions, run.account_id)))
    return first.result(), limit.result()


async def _buy(
    run: _LiveRun, first: Snapshot, plan: Plan, sells: Sequence[OrderResult], limit: DayTradeLimit | None
) -> tuple[Plan, list[OrderResult]]:
    """The buys, planned from the account as the sells left it (the first plan when none were made)."""
    buy_plan, cash = plan, first.values.total_cash
    if sells:
        after_sells = await read_after_sells(
            run.broker, run.account_id, run.targets, first, sells, run.settle_timeout
        )
        buy_plan, cash = plan_for(after_sells, run.targets, run.settings), after_sells.values.total_cash
    done = f"{len(sells)} sell(s) placed, no buy" if sells else "nothing placed"
    buy_limit = limit.after(sells) if limit is not None else None
    buy_plan = guard_day_trades(buy_plan, buy_plan.buys(), buy_limit, run.account_id, done)
    to_buy = _affordable_buys(buy_plan, cash, run.settings, run.log)
    return buy_plan, await run.place(to_buy)


def _withheld_note(plans: Sequence[Plan | None]) -> str:
    withheld = {(w.symbol, w.action): w for plan in plans if plan is not None for w in plan.withheld}
    if not withheld:
        return ""
    listed = ", ".join(f"{w.action} {w.quantity:g} {w.symbol}" for w in withheld.values())
    return f"; withheld by the pattern-day-trader guard: {listed}"


async def rebalance(
    broker: Broker,
    account_id: str,
    targets: Mapping[str, float],
    settings: RebalancingSettings,
    event_id: str,
    *,
    cancel_timeout_seconds: float = DEFAULT_CANCEL_TIMEOUT_SECONDS,
    fill_timeout_seconds: float = DEFAULT_FILL_TIMEOUT_SECONDS,
    position_settle_timeout_seconds: float = DEFAULT_POSITION_SETTLE_SECONDS,
    guard: OrderGuard = UNGUARDED,
) -> ExecutionReport:
    """Trade the account to `targets` (sells, then a re-planned set of buys); see the module doc.

    Raises `UnsupportedAccountError` (a base currency other than USD, before anything is done),
    `BrokerError` (cancel timeout, connection lost), `PlanError` (bad price or input, before any
    order) or `ExecutionFailed` (orders placed but not all filled), each meaning "retry";
    `WaitForSession` when the pattern-day-trader guard defers (`pdt_protection: defer`: before any
    order, or after the sells when the buys would go beyond the limit); and whatever `guard` raises
    when the run may no longer trade (its lease fence closed).
    `position_settle_timeout_seconds` bounds the wait for the positions to show the sells' fills.
    """
    bound = log.bind(account_id=account_id, event_id=event_id, command=Command.REBALANCE.value)
    run = _LiveRun(
        broker,
        account_id,
        targets,
        settings,
        event_id,
        fill_timeout_seconds,
        position_settle_timeout_seconds,
        guard,
        bound,
    )
    await broker.reserve(account_id)  # the run's connection: every read and order of it goes there
    # A CAD (EUR, GBP, ...) account is refused before anything is done, its open orders included.
    await read_values(broker, account_id)
    guard.check("cancel the open orders")
    cancelled = await broker.cancel_open_orders(account_id, cancel_timeout_seconds)
    first, limit = await _read_before_trading(run)
    plan = plan_for(first, targets, settings)
    plan = guard_day_trades(plan, plan.orders, limit, account_id, "nothing placed")
    bound.info("plan made", orders=len(plan.orders), sells=len(plan.sells()), cancelled=len(cancelled))
    sells = await run.place(plan.sells())
    buy_plan = plan
    buys: list[OrderResult] = []
    # The buys are paid for by the sells: if any sell did not fill completely, buying would spend
    # money the account does not have. Stop here; the retry cancels what is open and re-plans.
    if all(o.is_filled for o in sells):
        buy_plan, buys = await _buy(run, first, plan, sells, limit)
    orders = (*sells, *buys)
    if any(o.filled_quantity > 0 for o in orders):
        # The next run (a retry, say) must not see the cash moved but the shares not yet there.
        await wait_for_fills_in_positions(
            broker, account_id, first.holdings, orders, position_settle_timeout_seconds
        )
    outcome = outcome_of(orders)
    report = ExecutionReport(
        command=Command.REBALANCE,
        account_id=account_id,
        event_id=event_id,
        outcome=outcome,
        message=_describe(orders, outcome, _withheld_note((plan, buy_plan))),
        orders=orders,
        plan=plan,
        buy_plan=buy_plan if sells else None,
        equity_info=plan.equity_info,
        account_values=first.values,
        positions=first.positions,
        prices=first.prices,
        cancelled_orders=tuple(cancelled),
        day_trade_limit=limit,
    )
    bound.info("rebalance finished", outcome=outcome.value, message=report.message)
    if not report.succeeded:
        raise ExecutionFailed(report)
    return report


async def print_rebalance(
    broker: ReadOnlyBroker,
    account_id: str,
    targets: Mapping[str, float],
    settings: RebalancingSettings,
    event_id: str,
) -> ExecutionReport:
    """The plan a live run would start with (dry run); the open orders it would cancel first; and what
    the pattern-day-trader guard would withhold, or that a live run would wait for the next session."""
    view = _read_only(broker)
    snapshot = await read_account(view, account_id, targets)
    limit = await read_day_trade_limit(view, account_id, settings.pdt_protection)
    plan = plan_for(snapshot, targets, settings)
    open_orders = tuple(await view.get_open_orders(account_id))
    try:
        plan = guard_day_trades(plan, plan.orders, limit, account_id, "a live run would place nothing")
    except WaitForSession as deferred:
        message = f"dry run: {deferred}"
    else:
        message = f"dry run: {len(plan.orders)} order(s) would be placed"
        if open_orders:
            message += f" after cancelling {len(open_orders)} open order(s)"
        message += _withheld_note((plan,))
    return ExecutionReport(
        command=Command.PRINT_REBALANCE,
        account_id=account_id,
        event_id=event_id,
        outcome=Outcome.READ_ONLY,
        message=message,
        plan=plan,
        equity_info=plan.equity_info,
        account_values=snapshot.values,
        positions=snapshot.positions,
        prices=snapshot.prices,
        open_orders=open_orders,
        day_trade_limit=limit,
    )


async def print_positions(broker: ReadOnlyBroker, account_id: str, event_id: str) -> ExecutionReport:
    positions = unique_positions(await _read_only(broker).get_positions(account_id))
    return ExecutionReport(
        command=Command.PRINT_POSITIONS,
        account_id=account_id,
        event_id=event_id,
        outcome=Outcome.READ_ONLY,
        message=f"{len(positions)} position(s)",
        positions=positions,
    )


async def print_equity(
    broker: ReadOnlyBroker, account_id: str, settings: RebalancingSettings, event_id: str
) -> ExecutionReport:
    values = await _read_only(broker).get_account_values(account_id)
    # The planner owns the reserve arithmetic; an empty plan gives its equity figures alone.
    equity = plan_rebalance(
        PlanInput({}, {}, {}, values.total_cash, values.net_liquidation, settings)
    ).equity_info
    return ExecutionReport(
        command=Command.PRINT_EQUITY,
        account_id=account_id,
        event_id=event_id,
        outcome=Outcome.READ_ONLY,
        message=(
            f"net liquidation {values.net_liquidation:,.2f} {values.currency}, "
            f"available {equity.available_for_trading:,.2f} {values.currency}"
        ),
        equity_info=equity,
        account_values=values,
    )


async def print_orders(broker: ReadOnlyBroker, account_id: str, event_id: str) -> ExecutionReport:
    open_orders = tuple(await _read_only(broker).get_open_orders(account_id))
    return ExecutionReport(
        command=Command.PRINT_ORDERS,
        account_id=account_id,
        event_id=event_id,
        outcome=Outcome.READ_ONLY,
        message=f"{len(open_orders)} open order(s)",
        open_orders=open_orders,
    )


async def cancel_orders(
    broker: Broker,
    account_id: str,
    event_id: str,
    *,
    cancel_timeout_seconds: float = DEFAULT_CANCEL_TIMEOUT_SECONDS,
    guard: OrderGuard = UNGUARDED,
) -> ExecutionReport:
    """Cancel every open order of the account; `BrokerError` when a cancel is not confirmed in time."""
    await broker.reserve(account_id)
    guard.check("cancel the open orders")
    cancelled = tuple(await broker.cancel_open_orders(account_id, cancel_timeout_seconds))
    return ExecutionReport(
        command=Command.CANCEL_ORDERS,
        account_id=account_id,
        event_id=event_id,
        outcome=Outcome.CANCELLED,
        message=f"{len(cancelled)} open order(s) cancelled",
        cancelled_orders=cancelled,
    )
