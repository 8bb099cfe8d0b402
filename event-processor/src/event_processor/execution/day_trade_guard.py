"""The pattern-day-trader guard: which planned orders would be day trades, and what may be placed.

FINRA's pattern-day-trader rule lets a margin account with less than 25,000 USD make at most 3 day
trades in 5 business days; IB reports what is left as `DayTradesRemaining` (-1: no limit). A day
trade here is an order on the opposite side of one of the same stock on the same US trading day: a
sale of a stock bought today, a purchase of one sold today. When the plan holds more of them than
remain, `pdt_protection` decides:

- `skip`: place the first ones the count allows (in plan order: sells first, then by symbol) and
  withhold the rest, each reported with the reason `pattern_day_trader`;
- `defer`: place nothing; the decision carries the message the run waits with (`WaitForSession`);
- `off`: no limit is read at all, so nothing is withheld.

Pure: the engine reads the limit (`execution.snapshot.read_day_trade_limit`) and acts on the decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from event_processor.brokers.models import Action, BrokerExecution, OrderResult
from event_processor.planner import PlannedOrder, WithheldOrder
from rebalancer_shared.accounts import PdtProtection

PATTERN_DAY_TRADER = "pattern_day_trader"


@dataclass(frozen=True)
class TradesToday:
    """The stocks the account bought and sold on the current trading day."""

    bought: frozenset[str] = frozenset()
    sold: frozenset[str] = frozenset()

    @classmethod
    def of(cls, executions: Iterable[BrokerExecution]) -> TradesToday:
        done = list(executions)
        return cls(
            frozenset(e.symbol for e in done if e.side == "BUY"),
            frozenset(e.symbol for e in done if e.side == "SELL"),
        )

    def with_fills(self, orders: Iterable[OrderResult]) -> TradesToday:
        """These trades and the orders that traded any shares."""
        traded = [o for o in orders if o.filled_quantity > 0]
        return TradesToday(
            self.bought | {o.symbol for o in traded if o.action == "BUY"},
            self.sold | {o.symbol for o in traded if o.action == "SELL"},
        )

    def opened_by(self, symbol: str, action: Action) -> str | None:
        """Why an order of `action` in `symbol` would be a day trade ("bought today"), else None."""
        if action == "SELL" and symbol in self.bought:
            return "bought today"
        if action == "BUY" and symbol in self.sold:
            return "sold today"
        return None


@dataclass(frozen=True)
class DayTradeLimit:
    """IB limits the account's day trades: `remaining` (0 or more) are left today."""

    remaining: int
    protection: PdtProtection
    today: TradesToday = field(default_factory=TradesToday)

    def after(self, placed: Sequence[OrderResult]) -> DayTradeLimit:
        """The limit once `placed` orders have traded: fewer remaining, more trades today."""
        used = sum(
            1
            for o in placed
            if o.filled_quantity > 0 and self.today.opened_by(o.symbol, o.action) is not None
        )
        return replace(self, remaining=max(self.remaining - used, 0), today=self.today.with_fills(placed))

    def to_dict(self) -> dict[str, Any]:
        return {
            "day_trades_remaining": self.remaining,
            "pdt_protection": self.protection.value,
            "bought_today": sorted(self.today.bought),
            "sold_today": sorted(self.today.sold),
        }


@dataclass(frozen=True)
class DayTradeDecision:
    """What may be placed: `place` (in plan order), `withheld` (skip), and `excess`, the day trades
    beyond the limit (with `defer` the run places nothing and waits)."""

    place: tuple[PlannedOrder, ...]
    withheld: tuple[WithheldOrder, ...] = ()
    day_trades: tuple[PlannedOrder, ...] = ()
    excess: tuple[PlannedOrder, ...] = ()
    protection: PdtProtection = PdtProtection.OFF

    @property
    def defers(self) -> bool:
        return self.protection is PdtProtection.DEFER and bool(self.excess)


def decide(orders: Sequence[PlannedOrder], limit: DayTradeLimit | None) -> DayTradeDecision:
    """Split `orders` by the limit (None: IB does not limit the account, or the guard is off)."""
    if limit is None or limit.protection is PdtProtection.OFF:
        return DayTradeDecision(tuple(orders))
    day_trades = tuple(o for o in orders if limit.today.opened_by(o.symbol, o.action) is not None)
    excess = day_trades[limit.remaining :]
    if not excess or limit.protection is PdtProtection.DEFER:
        return DayTradeDecision(tuple(orders), (), day_trades, excess, limit.protection)
    withheld = tuple(WithheldOrder.of(o, PATTERN_DAY_TRADER, _why(o, limit)) for o in excess)
    place = tuple(o for o in orders if o not in excess)
    return DayTradeDecision(place, withheld, day_trades, excess, limit.protection)


def _why(order: PlannedOrder, limit: DayTradeLimit) -> str:
    opened = limit.today.opened_by(order.symbol, order.action)
    return (
        f"{order.action} {order.quantity:g} {order.symbol} would be a day trade ({order.symbol} {opened}) "
        f"beyond DayTradesRemaining {limit.remaining} (pdt_protection: skip)"
    )


def describe_day_trades(orders: Iterable[PlannedOrder], limit: DayTradeLimit) -> str:
    """ "SELL AAA (bought today), BUY CCC (sold today)"."""
    return ", ".join(f"{o.action} {o.symbol} ({limit.today.opened_by(o.symbol, o.action)})" for o in orders)


def deferral_message(account_id: str, decision: DayTradeDecision, limit: DayTradeLimit, done: str) -> str:
    """Why a run waits: the day trades, the count left, what was `done` already ("nothing placed")."""
    return (
        f"account {account_id}: pattern-day-trader guard: {len(decision.day_trades)} day trade(s) "
        f"planned ({describe_day_trades(decision.day_trades, limit)}) but DayTradesRemaining is "
        f"{limit.remaining}; {done} (pdt_protection: defer): the run waits for the next session"
    )
