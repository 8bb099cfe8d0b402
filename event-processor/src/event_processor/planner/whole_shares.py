"""Whole-unit positions closest to their targets within the cash limit.

A unit is one share, or 1/10,000 of a share when the account trades fractions. Each position is
`units` above its unsellable remainder; `goal` is the dollar value the units should reach and `cost`
the price of one unit. We minimise the L1 error sum |cost x units - goal| subject to
sum cost x units <= budget, in four steps:

1. round the final position (not the trade) to the nearest unit;
2. if that overspends, drop the round-ups, then sell whole units (largest first, then the one that
   wastes least) until the plan fits;
3. spend the cash left on the round-ups that remove the most error (`knapsack.choose_round_ups`);
4. local search: add a unit where it helps and fits; add one unit paid for by removing units of
   another position; remove one unit and spend the cash on another position. Repeat until no move
   lowers the error.

The result depends only on (cost, goal, budget), never on the current holdings, which is what makes
a second plan on the projected portfolio return the same positions (convergence).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from event_processor.planner.knapsack import choose_round_ups

FloatArray = npt.NDArray[np.float64]

MAX_SEARCH_ROUNDS = 200
REFIT_CANDIDATES = 4
_RATIO_SLACK = 1e-9


@dataclass(frozen=True)
class UnitProblem:
    """Costs and goals of the positions being solved, the cash they may use, and a tolerance in dollars."""

    cost: FloatArray
    goal: FloatArray
    budget: float
    tolerance: float

    def error(self, units: FloatArray) -> float:
        return float(np.abs(self.cost * units - self.goal).sum())

    def spend(self, units: FloatArray) -> float:
        return float((self.cost * units).sum())

    def fits(self, units: FloatArray) -> bool:
        return self.spend(units) <= self.budget + self.tolerance


def solve_units(problem: UnitProblem) -> FloatArray | None:
    """Units per position (whole numbers as floats), or None when even holding none overspends."""
    if len(problem.cost) == 0:
        return np.zeros(0) if problem.budget >= -problem.tolerance else None
    ideal = np.maximum(problem.goal / problem.cost, 0.0)
    nearest = np.floor(ideal + 0.5)
    units = nearest if problem.fits(nearest) else _fit_budget(problem, np.floor(ideal))
    if units is None:
        return None
    return _local_search(problem, _round_up(problem, units, ideal))


def _fit_budget(problem: UnitProblem, units: FloatArray, locked: int = -1) -> FloatArray | None:
    """Sell units (never of `locked`) until the plan fits.

    Units above target go first, since selling them lowers the error; below target every dollar
    sold costs one dollar of error, so only the waste matters: whole chunks of the dearest, then the
    cheapest single unit that covers the rest.
    """
    units = units.copy()
    movable = np.ones(len(units), dtype=bool)
    if locked >= 0:
        movable[locked] = False
    need = _shed_overshoot(problem, units, movable, problem.spend(units) - problem.budget)
    for i in np.argsort(-problem.cost, kind="stable"):
        if need <= problem.tolerance:
            break
        cut = min(units[i], np.floor(need / problem.cost[i])) if movable[i] else 0.0
        units[i] -= cut
        need -= cut * problem.cost[i]
    while need > problem.tolerance:
        held = (units > 0) & movable
        if not held.any():
            return None
        enough = held & (problem.cost >= need)
        # The cheapest unit that covers the rest wastes least; else the dearest unit left.
        i = (
            int(np.argmin(np.where(enough, problem.cost, np.inf)))
            if enough.any()
            else _dearest(problem, held)
        )
        units[i] -= 1
        need -= problem.cost[i]
    return units


def _shed_overshoot(
    problem: UnitProblem, units: FloatArray, movable: npt.NDArray[np.bool_], need: float
) -> float:
    """Sell, in place, units whose sale lowers the error, best first, while cash is still needed."""
    while need > problem.tolerance:
        error = np.abs(problem.cost * units - problem.goal)
        delta = np.abs(problem.cost * (units - 1) - problem.goal) - error
        helps = movable & (units > 0) & (delta < -problem.tolerance)
        if not helps.any():
            break
        i = int(np.argmin(np.where(helps, delta, np.inf)))
        units[i] -= 1
        need -= problem.cost[i]
    return need


def _dearest(problem: UnitProblem, pool: npt.NDArray[np.bool_]) -> int:
    return int(np.argmax(np.where(pool, problem.cost, -np.inf)))


def _round_up(problem: UnitProblem, units: FloatArray, ideal: FloatArray) -> FloatArray:
    slack = problem.budget - problem.spend(units)
    at_floor = units == np.floor(ideal)
    fraction = np.where(at_floor, ideal - units, 0.0)
    gain = problem.cost * (2 * fraction - 1)
    chosen = choose_round_ups(problem.cost, np.where(at_floor, gain, 0.0), slack)
    units = units.copy()
    units[chosen] += 1
    return units


def _local_search(problem: UnitProblem, units: FloatArray) -> FloatArray:
    for _ in range(MAX_SEARCH_ROUNDS):
        moved = _best_move(problem, units)
        if moved is None:
            break
        units = moved
    return units


def _best_move(problem: UnitProblem, units: FloatArray) -> FloatArray | None:
    """The single move that lowers the error most, or None at a local optimum."""
    added = _best_add(problem, units)
    if added is not None:
        return added
    slack = problem.budget - problem.spend(units)
    error = np.abs(problem.cost * units - problem.goal)
    add_delta = np.abs(problem.cost * (units + 1) - problem.goal) - error
    candidates = [
        _add_paid_by_removal(problem, units, error, add_delta, slack),
        _remove_to_fund(problem, units, error, slack),
        _add_with_refit(problem, units, add_delta, slack),
    ]
    best = min((c for c in candidates if c is not None), key=lambda c: c[0], default=None)
    if best is None or best[0] >= -problem.tolerance:
        return None
    return best[1]


def _best_add(problem: UnitProblem, units: FloatArray) -> FloatArray | None:
    """One more unit where it lowers the error most and the cash allows, or None."""
    slack = problem.budget - problem.spend(units)
    error = np.abs(problem.cost * units - problem.goal)
    add_delta = np.abs(problem.cost * (units + 1) - problem.goal) - error
    affordable = (problem.cost <= slack + problem.tolerance) & (add_delta < -problem.tolerance)
    if not affordable.any():
        return None
    result = units.copy()
    result[int(np.argmin(np.where(affordable, add_delta, np.inf)))] += 1
    return result


def _fill(problem: UnitProblem, units: FloatArray) -> FloatArray:
    while (added := _best_add(problem, units)) is not None:
        units = added
    return units


def _add_with_refit(
    problem: UnitProblem, units: FloatArray, add_delta: FloatArray, slack: float
) -> tuple[float, FloatArray] | None:
    """Add one unit of a position too dear for the cash left, sell elsewhere to pay, refill the rest.

    This is the move an expensive share needs: paying for it may take units of several positions.
    Only the `REFIT_CANDIDATES` adds that would remove the most error are tried, to bound the time.
    """
    wanted = (add_delta < -problem.tolerance) & (problem.cost > slack + problem.tolerance)
    order = [int(i) for i in np.argsort(add_delta, kind="stable") if wanted[i]][:REFIT_CANDIDATES]
    before = problem.error(units)
    best: tuple[float, FloatArray] | None = None
    for i in order:
        trial = units.copy()
        trial[i] += 1
        fitted = _fit_budget(problem, trial, locked=i)
        if fitted is None:
            continue
        fitted = _fill(problem, fitted)
        delta = problem.error(fitted) - before
        if best is None or delta < best[0]:
            best = (delta, fitted)
    return best


def _add_paid_by_removal(
    problem: UnitProblem, units: FloatArray, error: FloatArray, add_delta: FloatArray, slack: float
) -> tuple[float, FloatArray] | None:
    """Add one unit of i, removing as few units of j as pays for it."""
    wanted = add_delta < -problem.tolerance
    if not wanted.any():
        return None
    need = np.maximum(problem.cost - slack, 0.0)[:, None]
    removed = np.ceil(need / problem.cost[None, :] - _RATIO_SLACK)
    remove_delta = np.abs(problem.cost * (units[None, :] - removed) - problem.goal) - error[None, :]
    delta = add_delta[:, None] + remove_delta
    invalid = (removed > units[None, :]) | (removed < 1) | ~wanted[:, None]
    np.fill_diagonal(invalid, True)
    delta = np.where(invalid, np.inf, delta)
    flat = int(np.argmin(delta))
    i, j = divmod(flat, len(units))
    if not np.isfinite(delta[i, j]):
        return None
    result = units.copy()
    result[i] += 1
    result[j] -= removed[i, j]
    return float(delta[i, j]), result


def _remove_to_fund(
    problem: UnitProblem, units: FloatArray, error: FloatArray, slack: float
) -> tuple[float, FloatArray] | None:
    """Remove one unit of j and buy with the freed cash as many units of i as bring it closest."""
    held = units >= 1
    if not held.any():
        return None
    room = slack + problem.cost[None, :]  # column j: cash after removing one unit of j
    cap = np.floor(room / problem.cost[:, None] + _RATIO_SLACK)  # row i: units of i that fit
    gap = problem.goal / problem.cost - units
    low = np.clip(np.floor(gap), 0.0, None)[:, None]
    added = np.minimum(np.where(_closer_above(problem, units), low + 1, low), cap)
    add_delta = (
        np.abs(problem.cost[:, None] * (units[:, None] + added) - problem.goal[:, None]) - error[:, None]
    )
    remove_delta = np.abs(problem.cost * (units - 1) - problem.goal) - error
    delta = add_delta + remove_delta[None, :]
    invalid = ~held[None, :] | (added < 1)
    np.fill_diagonal(invalid, True)
    delta = np.where(invalid, np.inf, delta)
    flat = int(np.argmin(delta))
    i, j = divmod(flat, len(units))
    if not np.isfinite(delta[i, j]):
        return None
    result = units.copy()
    result[i] += added[i, j]
    result[j] -= 1
    return float(delta[i, j]), result


def _closer_above(problem: UnitProblem, units: FloatArray) -> npt.NDArray[np.bool_]:
    """Per position: is the unit count just above the goal closer than the one just below?"""
    gap = problem.goal / problem.cost - units
    fraction = gap - np.floor(gap)
    return (gap > 0) & (fraction > 0.5)
