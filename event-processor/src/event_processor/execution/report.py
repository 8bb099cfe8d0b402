"""What a command did: `ExecutionReport` and its `Outcome`, and `ExecutionFailed` for a live run that
did not finish. The report's data (`to_dict`) holds the enums' values, plain strings, as stored in the
run history and shown by the API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from event_processor.brokers.models import AccountValues, BrokerPosition, OpenOrder, OrderResult
from event_processor.execution.day_trade_guard import DayTradeLimit
from event_processor.planner import EquityInfo, Plan
from rebalancer_shared.errors import RebalancerError
from rebalancer_shared.events import Command


class Outcome(StrEnum):
    """How a command ended."""

    FILLED = "filled"  # a live run whose every order filled (or that needed none)
    PARTIAL = "partial"  # some shares traded but not all
    FAILED = "failed"  # orders were placed and none traded
    READ_ONLY = "read_only"  # a print-* command
    CANCELLED = "cancelled"  # the cancel-orders command confirmed every cancel

    @property
    def succeeded(self) -> bool:
        """False for a live run that did not finish (partial, failed): the event retries."""
        return self not in _UNFINISHED


_UNFINISHED = frozenset({Outcome.PARTIAL, Outcome.FAILED})


@dataclass(frozen=True)
class ExecutionReport:
    """One command's result, in the same shape for live and read-only commands.

    `plan` is the plan the run started with (a dry run's only plan); `buy_plan` the re-plan made
    after the sells filled, whose buys were placed. `orders` holds every order placed, sells first.
    Orders the pattern-day-trader guard held back are in each plan's `withheld`; `day_trade_limit`
    is what it decided from (None: IB does not limit the account's day trades, or the guard is off).
    """

    command: Command
    account_id: str
    event_id: str
    outcome: Outcome
    message: str
    orders: tuple[OrderResult, ...] = ()
    plan: Plan | None = None
    buy_plan: Plan | None = None
    equity_info: EquityInfo | None = None
    account_values: AccountValues | None = None
    positions: tuple[BrokerPosition, ...] = ()
    prices: Mapping[str, float] = field(default_factory=dict)
    open_orders: tuple[OpenOrder, ...] = ()
    cancelled_orders: tuple[OpenOrder, ...] = ()
    day_trade_limit: DayTradeLimit | None = None

    @property
    def succeeded(self) -> bool:
        return self.outcome.succeeded

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data for the run history and the CLI."""
        return {
            "command": self.command.value,
            "account_id": self.account_id,
            "event_id": self.event_id,
            "outcome": self.outcome.value,
            "message": self.message,
            "orders": [order.to_dict() for order in self.orders],
            "plan": self.plan.to_dict() if self.plan else None,
            "buy_plan": self.buy_plan.to_dict() if self.buy_plan else None,
            "equity_info": self.equity_info.to_dict() if self.equity_info else None,
            "account_values": self.account_values.to_dict() if self.account_values else None,
            "positions": [p.to_dict() for p in self.positions],
            "prices": dict(self.prices),
            "open_orders": [o.to_dict() for o in self.open_orders],
            "cancelled_orders": [o.to_dict() for o in self.cancelled_orders],
            "day_trades": self.day_trade_limit.to_dict() if self.day_trade_limit else None,
        }


class ExecutionFailed(RebalancerError):
    """A live run ended partial or failed; `report` says what was placed and what filled.

    The event is retried: the retry cancels what is still open and re-plans from the new positions.
    """

    def __init__(self, report: ExecutionReport) -> None:
        super().__init__(f"account {report.account_id}: rebalance {report.outcome.value}: {report.message}")
        self.report = report
