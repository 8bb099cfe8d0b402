"""Rich tables for the demo: the trigger, the dry-run plan, the live fills, and weights vs targets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from event_processor.brokers import SimulatedBroker
from event_processor.planner import Holding, PlanInput, plan_rebalance
from rebalancer_shared.accounts import Account
from rebalancer_shared.store import OrderView


@dataclass(frozen=True)
class AccountPicture:
    """An account's stock weights, cash and net liquidation at one moment."""

    weights: dict[str, float]
    cash: float
    net_liquidation: float
    positions: dict[str, float]


def picture(broker: SimulatedBroker, account_id: str) -> AccountPicture:
    """Read a simulated account's weights (market value / net liquidation)."""
    account = broker.accounts[account_id]
    values = {s: q * broker.prices[s] for s, q in account.positions.items() if q}
    total = account.cash + sum(values.values())
    return AccountPicture(
        {s: v / total for s, v in values.items()}, account.cash, total, dict(account.positions)
    )


def at_targets(
    pic: AccountPicture, prices: Mapping[str, float], account: Account, targets: Mapping[str, float]
) -> bool:
    """Planning again on the account gives no orders: it is as close to the targets as it gets."""
    holdings = {s: Holding(q) for s, q in pic.positions.items() if q}
    plan = plan_rebalance(
        PlanInput(dict(targets), holdings, dict(prices), pic.cash, pic.net_liquidation, account.settings)
    )
    return not plan.orders


def show_trigger(console: Console, title: str, payload: object, events: Sequence[tuple[str, str]]) -> None:
    table = Table(show_header=True, header_style="bold", box=None)
    table.add_column("account")
    table.add_column("command")
    for account_id, command in events:
        table.add_row(account_id, command)
    console.print(Panel(table, title=f"{title}: payload {payload!r} on channel demo-etf-blend", expand=False))


def _money(value: float) -> str:
    return f"{value:,.2f}"


def show_plan(console: Console, account_id: str, result: Mapping[str, Any]) -> None:
    equity = result["equity_info"]
    table = Table(title=f"{account_id}: dry-run plan ({result['message']})", header_style="bold")
    for name in ("symbol", "action", "quantity", "est. price", "est. value", "reason"):
        table.add_column(
            name, justify="right" if name in ("quantity", "est. price", "est. value") else "left"
        )
    for order in result["orders"]:
        table.add_row(
            order["symbol"],
            order["action"],
            f"{order['quantity']:g}",
            _money(order["est_price"]),
            _money(order["market_value"]),
            order["reason"],
        )
    console.print(table)
    available = _money(equity["available_for_trading"])
    console.print(
        f"  equity {_money(equity['total_equity'])}, reserve {equity['reserve_percentage']:g} % "
        f"({_money(equity['reserve_amount'])}), available for trading {available}"
    )


def show_fills(console: Console, account_id: str, orders: Sequence[OrderView]) -> None:
    table = Table(title=f"{account_id}: live run on the simulated account", header_style="bold")
    for name in ("symbol", "action", "quantity", "filled", "avg price", "status", "broker order id"):
        table.add_column(name, justify="right" if name in ("quantity", "filled", "avg price") else "left")
    for order in orders:
        table.add_row(
            order.symbol,
            order.action,
            f"{order.quantity:g}",
            f"{order.filled_quantity:g}",
            _money(order.avg_fill_price or 0.0),
            order.status,
            str(order.broker_order_id),
        )
    console.print(table)


def _l1(weights: Mapping[str, float], scaled: Mapping[str, float]) -> float:
    symbols = set(weights) | set(scaled)
    return sum(abs(weights.get(s, 0.0) - scaled.get(s, 0.0)) for s in symbols) * 10_000


def show_weights(
    console: Console,
    account: Account,
    targets: Mapping[str, float],
    before: AccountPicture,
    after: AccountPicture,
    reached: bool,
) -> None:
    keep = 1 - account.settings.equity_reserve_percentage / 100
    scaled = {s: w * keep for s, w in targets.items()}
    table = Table(
        title=f"{account.account_id}: weights before and after, against the targets", header_style="bold"
    )
    for name in ("symbol", "target", "before", "after", "after - target"):
        table.add_column(name, justify="left" if name == "symbol" else "right")
    for symbol in sorted(set(scaled) | set(before.weights) | set(after.weights)):
        target, was, now = (
            scaled.get(symbol, 0.0),
            before.weights.get(symbol, 0.0),
            after.weights.get(symbol, 0.0),
        )
        table.add_row(
            symbol, f"{target:.2%}", f"{was:.2%}", f"{now:.2%}", f"{(now - target) * 10_000:+.0f} bp"
        )
    table.add_row(
        "cash",
        f"{1 - keep:.2%}",
        f"{before.cash / before.net_liquidation:.2%}",
        f"{after.cash / after.net_liquidation:.2%}",
        "",
    )
    console.print(table)
    verdict = "at its targets (planning again gives no orders)" if reached else "NOT at its targets"
    console.print(
        f"  L1 weight error {_l1(before.weights, scaled):,.0f} bp -> {_l1(after.weights, scaled):,.0f} bp; "
        f"{account.account_id} is {verdict}"
    )
