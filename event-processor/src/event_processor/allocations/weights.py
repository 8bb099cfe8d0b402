"""The one rule for target weights, shared by the allocation API's answer and `rebalancer plan`.

It lives with the allocations because it is their contract (the strategy's weights are fractions
of the account that sum to 1), and here both callers can import it: the processor's allocation
parser and the CLI's scenario parser, which imports event_processor but is never imported by it.
The planner stays more lenient on purpose (a pure function that scales a sum above 1 down and
leaves a sum below 1 in cash); this check is what keeps such weights from reaching it.

Pure: plain data in, `{symbol: weight}` out, or a `TargetWeightsError` whose message names the
problem. Each caller turns it into its own error (`AllocationError`, `ScenarioError`) with the same
text, so an operator sees the same words whichever way the weights came in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from rebalancer_shared.config import DEFAULT_SUM_TOLERANCE
from rebalancer_shared.errors import RebalancerError

PERCENT_TOTAL = 100.0
# A percentage set sums to 100 within this many times the tolerance a fraction set is allowed.
PERCENT_TOLERANCE_FACTOR = 100.0
# Decimal weights are not exact in binary: 0.6 + 0.41 is 1.01 plus a hair, and must count as within
# 0.01 of 1, or the message would read "sum to 1.0100, not 1 within 0.01".
_FLOAT_SLACK = 1e-9


class TargetWeightsError(RebalancerError):
    """Target weights that must not be planned or traded on; `message` says what is wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def validate_target_weights(
    weights: Mapping[str, object], sum_tolerance: float = DEFAULT_SUM_TOLERANCE
) -> dict[str, float]:
    """The weights by stripped symbol, as floats; `TargetWeightsError` naming the first problem.

    Symbols are non-empty strings, unique once stripped; every weight is a finite number >= 0 (not a
    bool); there is at least one; together they sum to 1 within `sum_tolerance`. Weights that look
    like percentages (a sum near 100, or one weight above 1) get a message saying so.
    """
    if not weights:
        raise TargetWeightsError("no target weights: give at least one symbol and its weight")
    checked: dict[str, float] = {}
    for raw_symbol, value in weights.items():
        symbol = _symbol(raw_symbol, checked)
        checked[symbol] = _weight(symbol, value)
    _check_total(checked, sum_tolerance)
    return checked


def _symbol(raw: object, seen: Mapping[str, float]) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise TargetWeightsError(f"symbol {raw!r} is empty or not a string")
    symbol = raw.strip()
    if symbol in seen:
        raise TargetWeightsError(f"duplicate symbol {symbol!r}")
    return symbol


def _weight(symbol: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TargetWeightsError(f"weight of {symbol!r} is not a number: {value!r}")
    weight = float(value)
    if not math.isfinite(weight):
        raise TargetWeightsError(f"weight of {symbol!r} is not finite: {value!r}")
    if weight < 0:
        raise TargetWeightsError(f"weight of {symbol!r} is negative: {weight}")
    return weight


def _check_total(weights: Mapping[str, float], sum_tolerance: float) -> None:
    total = math.fsum(weights.values())  # exact, so key order cannot change the verdict
    if abs(total - 1.0) <= sum_tolerance + _FLOAT_SLACK:
        return
    if _looks_like_percentages(weights, total, sum_tolerance):
        raise TargetWeightsError(
            f"weights sum to {total:.4f}: they look like percentages; "
            "give fractions that sum to 1 (60% -> 0.6)"
        )
    raise TargetWeightsError(f"weights sum to {total:.4f}, not 1 within {sum_tolerance:g}")


def _looks_like_percentages(weights: Mapping[str, float], total: float, sum_tolerance: float) -> bool:
    # Asked only once the sum is off: a weight above 1 cannot be a fraction of the account, and a sum
    # near 100 is the usual "60 and 40" mistake.
    near_hundred = abs(total - PERCENT_TOTAL) <= PERCENT_TOLERANCE_FACTOR * sum_tolerance
    return near_hundred or max(weights.values()) > 1.0
