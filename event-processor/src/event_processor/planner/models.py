"""The planner's plain data: what goes in (`PlanInput`) and what comes out (`Plan`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from rebalancer_shared.accounts import RebalancingSettings

Action = Literal["BUY", "SELL"]

STOCK = "STK"
# Orders go to US listings, whose prices, cash and net liquidation are all in this currency.
TRADING_CURRENCY = "USD"


@dataclass(frozen=True)
class Holding:
    """A position as the broker reports it, with its listing's identity.

    Only a stock in the trading currency that is its symbol's US listing (`us_listing`, which the
    engine checks by conId) is ever traded; anything else is left alone and reported in the plan's
    skipped list: other security types, other currencies, a foreign listing of the same ticker.
    `exchange` (where it is listed) and `con_id` only say which one it is.
    """

    quantity: float
    sec_type: str = STOCK
    currency: str = TRADING_CURRENCY
    us_listing: bool = True
    exchange: str = ""
    con_id: int = 0

    @property
    def tradable(self) -> bool:
        """A US-listed stock in the trading currency: the only kind of holding a plan trades."""
        return self.sec_type == STOCK and self.currency == TRADING_CURRENCY and self.us_listing


@dataclass(frozen=True)
class PlanInput:
    """Everything the planner needs, already fetched: weights, positions, prices, cash, equity."""

    targets: Mapping[str, float]
    holdings: Mapping[str, Holding]
    prices: Mapping[str, float]
    cash: float
    net_liquidation: float
    settings: RebalancingSettings = field(default_factory=RebalancingSettings)


@dataclass(frozen=True)
class PlannedOrder:
    """One order to place; `est_value` is quantity x the price the plan was made at."""

    symbol: str
    action: Action
    quantity: float
    est_price: float
    est_value: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "action": self.action,
            "quantity": self.quantity,
            "est_price": self.est_price,
            "est_value": round(self.est_value, 2),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class SkippedTrade:
    """A trade the plan deliberately does not make, with a machine-readable reason code."""

    symbol: str
    reason: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class WithheldOrder:
    """An order the plan made that the run does not place: a rule outside the planner held it back
    (the pattern-day-trader guard, say). `reason` is a machine-readable code, `detail` says why."""

    symbol: str
    action: Action
    quantity: float
    est_value: float
    reason: str
    detail: str

    @classmethod
    def of(cls, order: PlannedOrder, reason: str, detail: str) -> WithheldOrder:
        return cls(order.symbol, order.action, order.quantity, order.est_value, reason, detail)

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "action": self.action,
            "quantity": self.quantity,
            "est_value": round(self.est_value, 2),
            "reason": self.reason,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class EquityInfo:
    """Total equity (net liquidation), the cash reserve kept out of trading and what is left to invest."""

    total_equity: float
    reserve_percentage: float
    reserve_amount: float
    available_for_trading: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_equity": round(self.total_equity, 2),
            "reserve_percentage": self.reserve_percentage,
            "reserve_amount": round(self.reserve_amount, 2),
            "available_for_trading": round(self.available_for_trading, 2),
        }


@dataclass(frozen=True)
class PlanMetrics:
    """Quality of the projected portfolio.

    `l1_error_bp`: sum over target and held stock symbols of |projected weight - scaled target weight|
    in basis points, where the scaled target weight is weight x available / total equity, so keeping
    the reserve in cash is not an error. `max_gap_bp`: the largest single term of that sum.
    `turnover`: traded value / total equity. `order_count`: orders in the plan.
    """

    l1_error_bp: float
    max_gap_bp: float
    turnover: float
    order_count: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "l1_error_bp": round(self.l1_error_bp, 2),
            "max_gap_bp": round(self.max_gap_bp, 2),
            "turnover": round(self.turnover, 4),
            "order_count": self.order_count,
        }


@dataclass(frozen=True)
class Plan:
    """The orders that bring an account to its targets, and what the account looks like afterwards.

    Orders are sorted sells first, then by symbol. `projected_quantities` holds the stock positions
    after every order fills at its estimated price (the input of a convergence check).
    `withheld` lists orders the planner made that the run leaves out (`withholding`), each with its
    reason; the projected figures are still those of the whole plan.
    """

    orders: tuple[PlannedOrder, ...]
    skipped: tuple[SkippedTrade, ...]
    equity_info: EquityInfo
    projected_weights: Mapping[str, float]
    projected_cash: float
    metrics: PlanMetrics
    projected_quantities: Mapping[str, float] = field(default_factory=dict)
    current_weights: Mapping[str, float] = field(default_factory=dict)
    withheld: tuple[WithheldOrder, ...] = ()
    # What the plan aims at: each target weight scaled to the equity outside the reserve.
    target_weights: Mapping[str, float] = field(default_factory=dict)

    def sells(self) -> tuple[PlannedOrder, ...]:
        """The SELL orders (the engine places these first)."""
        return tuple(order for order in self.orders if order.action == "SELL")

    def buys(self) -> tuple[PlannedOrder, ...]:
        """The BUY orders (the engine re-plans these after the sells have filled)."""
        return tuple(order for order in self.orders if order.action == "BUY")

    def withholding(self, withheld: Sequence[WithheldOrder]) -> Plan:
        """This plan without the `withheld` orders (same symbol and action), which it lists instead."""
        if not withheld:
            return self
        out = {(w.symbol, w.action) for w in withheld}
        kept = tuple(o for o in self.orders if (o.symbol, o.action) not in out)
        return replace(self, orders=kept, withheld=(*self.withheld, *withheld))

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data (the shape `rebalancer plan` prints and the run history stores)."""
        return {
            "orders": [order.to_dict() for order in self.orders],
            "skipped": [skip.to_dict() for skip in self.skipped],
            "withheld": [order.to_dict() for order in self.withheld],
            "equity_info": self.equity_info.to_dict(),
            "projected": {
                "weights": {s: round(w, 6) for s, w in self.projected_weights.items()},
                "cash": round(self.projected_cash, 2),
            },
            "metrics": self.metrics.to_dict(),
            "weights": {
                "before": {s: round(w, 6) for s, w in self.current_weights.items()},
                "target": {s: round(w, 6) for s, w in self.target_weights.items()},
            },
        }
