"""`plan_rebalance`: the orders that bring an account to its target weights (pure: no I/O, no clock)."""

from __future__ import annotations

from dataclasses import dataclass, field

from event_processor.planner.book import Book, build_book
from event_processor.planner.metrics import measure, scaled_targets
from event_processor.planner.models import (
    Action,
    EquityInfo,
    Plan,
    PlanInput,
    PlannedOrder,
    SkippedTrade,
)
from event_processor.planner.targets import TargetSolver, Thresholds
from event_processor.planner.whole_shares import FloatArray

REASON_LIQUIDATE = "not in targets: sell in full"
REASON_OVER = "over target"
REASON_UNDER = "under target"
_QUANTITY_DECIMALS = 10


@dataclass
class _Ledger:
    """Orders and the projected stock positions (shares, price) as the plan is written out."""

    orders: list[PlannedOrder] = field(default_factory=list)
    positions: dict[str, tuple[float, float]] = field(default_factory=dict)
    sold: float = 0.0
    bought: float = 0.0

    def trade(self, symbol: str, price: float, units: float, unit: float, reason: str) -> None:
        if units == 0:
            return
        quantity = round(abs(units) * unit, 4)
        value = quantity * price
        action: Action = "BUY" if units > 0 else "SELL"
        self.orders.append(PlannedOrder(symbol, action, quantity, price, value, reason))
        if action == "BUY":
            self.bought += value
        else:
            self.sold += value


def plan_rebalance(inp: PlanInput) -> Plan:
    """Plan the orders that bring `inp.holdings` closest to `inp.targets` without touching the reserve.

    Raises `PlanError` (naming the symbol) on a bad price or weight of a symbol that must trade,
    a short position, or a reserve that cannot be kept. See DESIGN.md section 5 for the rules.
    """
    book = build_book(inp)
    settings = inp.settings
    thresholds = Thresholds(
        drift_pct=settings.drift_threshold_pct,
        min_order_value=settings.min_order_value,
        min_trade_shares=settings.min_trade_shares if settings.fractional_shares else 0.0,
    )
    solution = TargetSolver(book, thresholds).solve()
    ledger = _write_orders(book, solution.units)
    return _assemble(book, ledger, (*book.skipped, *solution.skipped))


def _write_orders(book: Book, units: FloatArray) -> _Ledger:
    ledger = _Ledger()
    for item in book.liquidations:
        ledger.trade(item.symbol, item.price, -item.sell_units, book.unit, REASON_LIQUIDATE)
        kept = (item.held_units - item.sell_units) * book.unit + item.remainder
        ledger.positions[item.symbol] = (round(kept, _QUANTITY_DECIMALS), item.price)
    for line, after in zip(book.targets, units, strict=True):
        change = float(after) - line.held_units
        ledger.trade(line.symbol, line.price, change, book.unit, REASON_UNDER if change > 0 else REASON_OVER)
        quantity = float(after) * book.unit + line.remainder
        ledger.positions[line.symbol] = (round(quantity, _QUANTITY_DECIMALS), line.price)
    return ledger


def _current_weights(book: Book) -> dict[str, float]:
    total = book.total_equity
    weights = {
        item.symbol: (item.held_units * book.unit + item.remainder) * item.price / total
        for item in book.liquidations
    }
    for line in book.targets:
        weights[line.symbol] = (line.held_units * book.unit + line.remainder) * line.price / total
    return dict(sorted(weights.items()))


def _assemble(book: Book, ledger: _Ledger, skipped: tuple[SkippedTrade, ...]) -> Plan:
    total = book.total_equity
    orders = tuple(sorted(ledger.orders, key=lambda o: (o.action != "SELL", o.symbol)))
    projected = {symbol: qty * price / total for symbol, (qty, price) in sorted(ledger.positions.items())}
    targets = scaled_targets({line.symbol: line.weight for line in book.targets}, book.available, total)
    equity = EquityInfo(
        total_equity=total,
        reserve_percentage=book.reserve_percentage,
        reserve_amount=book.reserve_amount,
        available_for_trading=book.available,
    )
    return Plan(
        orders=orders,
        skipped=tuple(sorted(skipped, key=lambda s: (s.symbol, s.reason))),
        equity_info=equity,
        projected_weights=projected,
        projected_cash=book.cash + ledger.sold - ledger.bought,
        metrics=measure(projected, targets, ledger.sold + ledger.bought, total, len(orders)),
        projected_quantities={symbol: qty for symbol, (qty, _) in sorted(ledger.positions.items())},
        current_weights=_current_weights(book),
        target_weights=dict(sorted(targets.items())),
    )
