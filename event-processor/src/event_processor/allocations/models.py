"""The allocation API's response (the product brief's format) and its validation.

Anything but a clean answer is an `AllocationError` naming what is wrong, because trading on a
half-read allocation is worse than not trading: the event retries with nothing traded. The shape
(status, data, symbols) is checked here; the weights themselves by `validate_target_weights`, the
rule `rebalancer plan` applies too, whose message is passed on word for word.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from event_processor.allocations.weights import TargetWeightsError, validate_target_weights
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


def _entry(index: int, item: object) -> tuple[str, object]:
    where = f"data.allocations[{index}]"
    if not isinstance(item, dict):
        raise AllocationError(f"{where} is not an object")
    symbol = item.get("symbol")
    if not isinstance(symbol, str) or not symbol.strip():
        raise AllocationError(f"{where}.symbol is missing or empty")
    return symbol.strip(), item.get("allocation")


def _raw_weights(items: list[Any]) -> dict[str, object]:
    """{symbol: the allocation as sent}; the numbers are judged by `validate_target_weights`."""
    raw: dict[str, object] = {}
    for index, item in enumerate(items):
        symbol, value = _entry(index, item)
        if symbol in raw:
            raise AllocationError(f"data.allocations[{index}]: duplicate symbol {symbol!r}")
        raw[symbol] = value
    return raw


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
    try:
        weights = validate_target_weights(_raw_weights(items), sum_tolerance)
    except TargetWeightsError as exc:
        raise AllocationError(exc.message) from exc
    return TargetAllocation(
        channel=channel,
        weights=weights,
        name=_text(data, "name"),
        long_name=_text(data, "strategy_long_name"),
        last_rebalance_on=_text(data, "last_rebalance_on"),
        as_of=_text(data, "as_of"),
    )
