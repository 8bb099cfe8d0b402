"""The allocation API's response (the product brief's format) and its validation.

Anything but a clean answer is an `AllocationError` naming what is wrong, because trading on a
half-read allocation is worse than not trading: the event retries with nothing traded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rebalancer_shared.errors import RebalancerError


class AllocationError(RebalancerError):
    """The allocation API could not be reached or answered something we must not trade on."""


@dataclass(frozen=True)
class TargetAllocation:
    """A strategy's validated target weights and what the API said about the strategy."""

    channel: str
    weights: dict[str, float]
    name: str | None = None
    long_name: str | None = None
    last_rebalance_on: str | None = None
    as_of: str | None = None


def _weight(index: int, item: object) -> tuple[str, float]:
    where = f"data.allocations[{index}]"
    if not isinstance(item, dict):
        raise AllocationError(f"{where} is not an object")
    symbol = item.get("symbol")
    if not isinstance(symbol, str) or not symbol.strip():
        raise AllocationError(f"{where}.symbol is missing or empty")
    value = item.get("allocation")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AllocationError(f"{where}.allocation for {symbol!r} is not a number: {value!r}")
    weight = float(value)
    if not math.isfinite(weight):
        raise AllocationError(f"{where}.allocation for {symbol!r} is not finite: {value!r}")
    if weight < 0:
        raise AllocationError(f"{where}.allocation for {symbol!r} is negative: {weight}")
    return symbol.strip(), weight


def _weights(items: list[Any]) -> dict[str, float]:
    weights: dict[str, float] = {}
    for index, item in enumerate(items):
        symbol, weight = _weight(index, item)
        if symbol in weights:
            raise AllocationError(f"data.allocations[{index}]: duplicate symbol {symbol!r}")
        weights[symbol] = weight
    return weights


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


def parse_allocation_response(channel: str, body: object, sum_tolerance: float) -> TargetAllocation:
    """Validate a decoded response body; return the weights or raise `AllocationError`."""
    if not isinstance(body, dict):
        raise AllocationError(f"response is not a JSON object but {type(body).__name__}")
    status = body.get("status")
    if status != "success":
        raise AllocationError(f"response status is {status!r}, not 'success'")
    data = body.get("data")
    if not isinstance(data, dict):
        raise AllocationError("response has no 'data' object")
    items = data.get("allocations")
    if not isinstance(items, list) or not items:
        raise AllocationError("data.allocations is missing, not a list, or empty")
    weights = _weights(items)
    total = math.fsum(weights.values())
    if abs(total - 1.0) > sum_tolerance:
        raise AllocationError(f"allocations sum to {total:.4f}, not 1 within {sum_tolerance}")
    return TargetAllocation(
        channel=channel,
        weights=weights,
        name=_text(data, "name"),
        long_name=_text(data, "strategy_long_name"),
        last_rebalance_on=_text(data, "last_rebalance_on"),
        as_of=_text(data, "as_of"),
    )
