"""The execution engine: commands that read an account, plan, and (for `rebalance`) trade."""

from event_processor.execution.engine import (
    cancel_orders,
    print_equity,
    print_orders,
    print_positions,
    print_rebalance,
    rebalance,
)
from event_processor.execution.guard import UNGUARDED, OrderGuard
from event_processor.execution.report import ExecutionFailed, ExecutionReport, Outcome

__all__ = [
    "UNGUARDED",
    "ExecutionFailed",
    "ExecutionReport",
    "OrderGuard",
    "Outcome",
    "cancel_orders",
    "print_equity",
    "print_orders",
    "print_positions",
    "print_rebalance",
    "rebalance",
]
