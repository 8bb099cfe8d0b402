"""The execution engine: one function per command, from target weights to an `ExecutionReport`.

Live `rebalance`:
0. refuse (`UnsupportedAccountError`, nothing done) an account whose base currency is not USD;
1. cancel every open order of the account and wait for the confirmations (else `BrokerError`);
2. snapshot NetLiquidation, TotalCashValue, the positions (once per contract, each held stock checked
   against its symbol's US listing) and the prices of every target and traded held stock;
3. plan with `plan_rebalance`, place the sells, wait for their fills;
4. re-read the account once its positions show the sells' fills (or from the fills, see
   snapshot.py), with fresh prices; re-plan with the same planner, place that plan's buys (cut to
   the cash above the reserve), wait;
5. wait (bounded) until the positions show every fill, so the next run reads a settled account;
6. report every order; a partial or failed outcome raises `ExecutionFailed` so the event retries,
   and the retry re-plans from whatever the account holds by then.

Read-only commands take any `ReadOnlyBroker` and wrap it in a `ReadOnlyBrokerView`, so even when
handed a full broker they cannot place or cancel anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import structlog

from event_processor.brokers.models import OrderRequest, OrderResult
from event_processor.brokers.protocol import Broker, ReadOnlyBroker, ReadOnlyBrokerView
from event_processor.execution.guard import UNGUARDED, OrderGuard
from event_processor.execution.holdings import buys_within, unique_positions
from event_processor.execution.report import ExecutionFailed, ExecutionReport, Outcome
from event_processor.execution.snapshot import (
    DEFAULT_POSITION_SETTLE_SECONDS,
    Snapshot,
    read_account,
    read_after_sells,
    read_values,
    wait_for_fills_in_positions,
)
from event_processor.planner import Plan, PlanInput, PlannedOrder, plan_rebalance
from rebalancer_shared.accounts import RebalancingSettings
from rebalancer_shared.events import Command

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


def _describe(orders: Sequence[OrderResult], outcome: Outcome) -> str:
    if not orders:
        return "nothing to trade: the account is at its targets"
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
    order) or `ExecutionFailed` (orders placed but not all filled), each meaning "retry"; and
    whatever `guard` raises when the run may no longer trade (its lease fence closed).
    `position_settle_timeout_seconds` bounds the wait for the positions to show the sells' fills.
    """
    bound = log.bind(account_id=account_id, event_id=event_id, command=Command.REBALANCE.value)
    # A CAD (EUR, GBP, ...) account is refused before anything is done, its open orders included.
    await read_values(broker, account_id)
    guard.check("cancel the open orders")
    cancelled = await broker.cancel_open_orders(account_id, cancel_timeout_seconds)
    first = await read_account(broker, account_id, targets)
    plan = plan_for(first, targets, settings)
    bound.info("plan made", orders=len(plan.orders), sells=len(plan.sells()), cancelled=len(cancelled))
    sells = await _place_and_wait(broker, account_id, plan.sells(), event_id, fill_timeout_seconds, guard)
    buy_plan = plan
    buys: list[OrderResult] = []
    # The buys are paid for by the sells: if any sell did not fill completely, buying would spend
    # money the account does not have. Stop here; the retry cancels what is open and re-plans.
    if all(o.is_filled for o in sells):
        cash = first.values.total_cash
        if sells:
            after_sells = await read_after_sells(
                broker, account_id, targets, first, sells, position_settle_timeout_seconds
            )
            buy_plan, cash = plan_for(after_sells, targets, settings), after_sells.values.total_cash
        to_buy = _affordable_buys(buy_plan, cash, settings, bound)
        buys = await _place_and_wait(broker, account_id, to_buy, event_id, fill_timeout_seconds, guard)
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
        message=_describe(orders, outcome),
        orders=orders,
        plan=plan,
        buy_plan=buy_plan if sells else None,
        equity_info=plan.equity_info,
        account_values=first.values,
        positions=first.positions,
        prices=first.prices,
        cancelled_orders=tuple(cancelled),
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
    """The plan a live run would start with (dry run); the open orders it would cancel first."""
    view = _read_only(broker)
    snapshot = await read_account(view, account_id, targets)
    plan = plan_for(snapshot, targets, settings)
    open_orders = tuple(await view.get_open_orders(account_id))
    message = f"dry run: {len(plan.orders)} order(s) would be placed"
    if open_orders:
        message += f" after cancelling {len(open_orders)} open order(s)"
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
