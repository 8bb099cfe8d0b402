"""The result of a run in the product brief's shape, and the order rows the history keeps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from event_processor.execution import ExecutionReport, Outcome
from rebalancer_shared.events import Command

# The run's `status` in the product brief's words; an outcome not listed is "failed".
_STATUS = {
    Outcome.FILLED: "success",
    Outcome.READ_ONLY: "success",
    Outcome.CANCELLED: "success",
    Outcome.PARTIAL: "partial",
}


def _planned_orders(report: ExecutionReport) -> list[dict[str, Any]]:
    if report.plan is None:
        return []
    return [
        {
            "symbol": o.symbol,
            "quantity": o.quantity,
            "action": o.action,
            "market_value": round(o.est_value, 2),
            "est_price": o.est_price,
            "reason": o.reason,
        }
        for o in report.plan.orders
    ]


def _placed_orders(report: ExecutionReport) -> list[dict[str, Any]]:
    return [
        {
            "symbol": o.symbol,
            "quantity": o.quantity,
            "action": o.action,
            "market_value": round(o.filled_quantity * o.avg_fill_price, 2),
            "order_type": o.order_type,
            "status": o.status,
            "filled_quantity": o.filled_quantity,
            "avg_fill_price": o.avg_fill_price,
            "order_id": o.order_id,
            "perm_id": o.perm_id,
            "message": o.message,  # IB's rejection or error, e.g. "IB error 201: Order rejected - ..."
        }
        for o in report.orders
    ]


def result_of(command: Command, report: ExecutionReport, at: datetime) -> dict[str, Any]:
    """`account_id`, `execution_mode`, `equity_info`, `orders`, `status`, `message`, `timestamp`."""
    live = command.places_orders
    return {
        "account_id": report.account_id,
        "execution_mode": command.execution_mode.value,
        "equity_info": report.equity_info.to_dict() if report.equity_info else None,
        "orders": _placed_orders(report) if live else _planned_orders(report),
        "status": _STATUS.get(report.outcome, "failed"),
        "message": report.message,
        "timestamp": at.isoformat(),
        "details": report.to_dict(),
    }
