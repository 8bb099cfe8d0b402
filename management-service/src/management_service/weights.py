"""An account's weights against its targets, read from the plans its runs stored.

A planning run stores its plan (event_processor.planner: `current.weights` before it traded,
`targets.weights` as shares of total equity, `projected.weights` after every order fills at its
planned price). The newest such plan gives `last_plan`. The drift now is judged from the newest
snapshot of holdings that plan holds: what a filled live rebalance left behind (`after_live_rebalance`:
projected, at planned prices, from the buy re-plan when there was one), or else what the run read
before it traded (`read_by_run`); a snapshot older than `DRIFT_MAX_AGE` tells nothing about now.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from management_service.models import Drift, PlanWeights, WeightLine
from rebalancer_shared.events import ExecutionMode
from rebalancer_shared.store import RunStatus, RunView

DRIFT_MAX_AGE = timedelta(hours=24)
BP = 10_000


def plan_weights(plan: Mapping[str, Any], part: str) -> dict[str, float]:
    """A plan's `current`, `targets` or `projected` weights ({} when the plan has none)."""
    section = plan.get(part)
    weights = section.get("weights") if isinstance(section, Mapping) else None
    return dict(weights) if isinstance(weights, Mapping) else {}


def weight_lines(
    before: Mapping[str, float], target: Mapping[str, float], after: Mapping[str, float]
) -> list[WeightLine]:
    """One line per symbol on any side; a symbol missing from a side is at 0 there (not targeted,
    not held, or sold out)."""
    symbols = sorted(set(before) | set(target) | set(after))
    return [
        WeightLine(symbol=s, before=before.get(s, 0.0), target=target.get(s, 0.0), after=after.get(s, 0.0))
        for s in symbols
    ]


# One fill as the history holds it: symbol, BUY or SELL, quantity filled, average fill price.
Fill = tuple[str, str, float, float | None]


def after_fills(before: Mapping[str, float], fills: Iterable[Fill], total_equity: float) -> dict[str, float]:
    """The weights before plus each fill's value over the total equity at the start: what the trades
    did, at the prices they got (not the plan's projection at its estimated prices)."""
    after = dict(before)
    for symbol, action, filled, price in fills:
        sign = 1.0 if action == "BUY" else -1.0
        after[symbol] = after.get(symbol, 0.0) + sign * filled * (price or 0.0) / total_equity
    return after


def _planned(run: RunView) -> Mapping[str, Any] | None:
    """The run's plan when it holds targets (plans stored before targets were kept are skipped)."""
    return run.plan if run.plan and plan_weights(run.plan, "targets") else None


def _after(run: RunView, plan: Mapping[str, Any]) -> dict[str, float]:
    """The weights after the run: the buy re-plan's projection when there was one."""
    details = (run.result or {}).get("details") or {}
    buy_plan = details.get("buy_plan") if isinstance(details, Mapping) else None
    return (
        plan_weights(buy_plan, "projected")
        if isinstance(buy_plan, Mapping)
        else plan_weights(plan, "projected")
    )


def _traded_in_full(run: RunView) -> bool:
    return run.execution_mode == ExecutionMode.LIVE and run.status is RunStatus.SUCCESS


def last_plan(runs: Iterable[RunView]) -> PlanWeights | None:
    """The newest run's plan (runs newest first) as weight lines, or None when no run planned."""
    for run in runs:
        plan = _planned(run)
        if plan is None:
            continue
        before, target = plan_weights(plan, "current"), plan_weights(plan, "targets")
        after = _after(run, plan) if _traded_in_full(run) else plan_weights(plan, "projected")
        return PlanWeights(
            run_id=run.run_id,
            event_id=run.event_id,
            exec_command=run.exec_command.value,
            planned_at=run.started_at,
            lines=weight_lines(before, target, after),
        )
    return None


def drift_now(runs: Iterable[RunView], now: datetime) -> Drift | None:
    """The drift of the newest snapshot younger than DRIFT_MAX_AGE (runs newest first), or None."""
    for run in runs:
        plan = _planned(run)
        as_of = run.finished_at or run.started_at
        if plan is None:
            continue
        if now - as_of > DRIFT_MAX_AGE:
            return None
        live = _traded_in_full(run)
        weights = _after(run, plan) if live else plan_weights(plan, "current")
        target = plan_weights(plan, "targets")
        gaps = [abs(weights.get(s, 0.0) - target.get(s, 0.0)) for s in set(weights) | set(target)]
        return Drift(
            as_of=as_of,
            source="after_live_rebalance" if live else "read_by_run",
            max_gap_bp=round(max(gaps, default=0.0) * BP, 2),
            l1_gap_bp=round(sum(gaps) * BP, 2),
        )
    return None
