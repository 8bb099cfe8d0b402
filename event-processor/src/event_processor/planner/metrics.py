"""Quality figures of a projected portfolio: weights, L1 error, largest gap, turnover.

Weights are market value / total equity (net liquidation). A target weight is scaled by
available / total equity, because the reserve is meant to stay in cash: an account holding exactly
its targets plus the reserve in cash has zero error. Non-stock holdings are outside the figures.
"""

from __future__ import annotations

from collections.abc import Mapping

from event_processor.planner.models import PlanMetrics

BASIS_POINTS = 10_000.0


def scaled_targets(weights: Mapping[str, float], available: float, total_equity: float) -> dict[str, float]:
    """Target weights as fractions of total equity (the reserve share left out)."""
    return {symbol: weight * available / total_equity for symbol, weight in weights.items()}


def measure(
    projected_weights: Mapping[str, float],
    target_weights: Mapping[str, float],
    traded_value: float,
    total_equity: float,
    order_count: int,
) -> PlanMetrics:
    """L1 error and largest gap in basis points over every target and held symbol, and turnover."""
    symbols = sorted(set(projected_weights) | set(target_weights))
    gaps = [abs(projected_weights.get(s, 0.0) - target_weights.get(s, 0.0)) for s in symbols]
    return PlanMetrics(
        l1_error_bp=sum(gaps) * BASIS_POINTS,
        max_gap_bp=max(gaps, default=0.0) * BASIS_POINTS,
        turnover=traded_value / total_equity,
        order_count=order_count,
    )
