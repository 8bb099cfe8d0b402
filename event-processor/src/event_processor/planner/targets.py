"""Units of every target position: the optimiser plus the thresholds (drift band, minimum order).

A symbol inside the drift band, or whose trade would be under the minimum order value (or under
`min_trade_shares` when fractional), keeps its position and the rest is solved again without it.
A new set of positions is taken only if it lowers the error by more than a rounding tolerance;
otherwise the account is left as it is. With thresholds on, the planner re-plans on its own
projection until nothing changes, so that the projected portfolio is a fixed point (convergence).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from event_processor.planner.book import Book
from event_processor.planner.errors import PlanError
from event_processor.planner.models import SkippedTrade
from event_processor.planner.whole_shares import FloatArray, UnitProblem, solve_units

MAX_REPLANS = 8
# Dollar tolerance per dollar of equity: below it two plans are equally good (float noise).
_TOLERANCE = 1e-10


@dataclass(frozen=True)
class Thresholds:
    """The account's trade thresholds; `min_trade_shares` is 0 for whole shares (one unit is the minimum)."""

    drift_pct: float
    min_order_value: float
    min_trade_shares: float

    @property
    def active(self) -> bool:
        return self.drift_pct > 0 or self.min_order_value > 0 or self.min_trade_shares > 0


@dataclass(frozen=True)
class TargetSolution:
    """Units held after the plan, per target line, and the trades the thresholds held back."""

    units: FloatArray
    skipped: tuple[SkippedTrade, ...]


class TargetSolver:
    """Solves the units of `book.targets` within the cash the plan may spend."""

    def __init__(self, book: Book, thresholds: Thresholds) -> None:
        self.book = book
        self.thresholds = thresholds
        self.symbols = [line.symbol for line in book.targets]
        price = np.array([line.price for line in book.targets], dtype=float)
        self.cost = price * book.unit
        remainder = np.array([line.remainder for line in book.targets], dtype=float)
        self.remainder_value = price * remainder
        weight = np.array([line.weight for line in book.targets], dtype=float)
        self.goal = weight * book.available - self.remainder_value
        self.held = np.array([line.held_units for line in book.targets], dtype=float)
        proceeds = sum(item.price * item.sell_units * book.unit for item in book.liquidations)
        self.budget = book.cash + proceeds + float((self.cost * self.held).sum()) - book.reserve_amount
        self.tolerance = _TOLERANCE * book.total_equity

    def solve(self) -> TargetSolution:
        """The positions to hold, re-planned on the projection until stable when thresholds are on."""
        first, skipped = self._solve_from(self.held)
        if not self.thresholds.active:
            return TargetSolution(first, skipped)
        current = first
        for _ in range(MAX_REPLANS):
            following, _ = self._solve_from(current)
            if np.array_equal(following, current):
                break
            current = following
        if self._breaks_thresholds(current):
            current = first
        traded = {self.symbols[i] for i in np.flatnonzero(current != self.held)}
        return TargetSolution(current, tuple(s for s in skipped if s.symbol not in traded))

    def _solve_from(self, state: FloatArray) -> tuple[FloatArray, tuple[SkippedTrade, ...]]:
        fixed, skipped = self._inside_drift_band(state)
        units = self._optimise(state, fixed)
        if units is None:
            # Keeping the drift band would leave the reserve out of reach: the reserve wins.
            fixed, skipped = np.zeros(len(state), dtype=bool), ()
            units = self._optimise(state, fixed)
        if units is None:
            raise PlanError(
                "the cash reserve cannot be kept even by selling every tradable position; "
                f"reserve {self.book.reserve_amount:.2f}, cash {self.book.cash:.2f}",
                field="cash",
            )
        units, skipped = self._hold_back_small_trades(state, units, fixed, skipped)
        if self._fits(state) and self._error(units) >= self._error(state) - self.tolerance:
            return state, skipped
        return units, skipped

    def _hold_back_small_trades(
        self, state: FloatArray, units: FloatArray, fixed: np.ndarray, skipped: tuple[SkippedTrade, ...]
    ) -> tuple[FloatArray, tuple[SkippedTrade, ...]]:
        """Keep positions whose trade is under a minimum, unless the reserve needs that trade."""
        while True:
            small, more = self._under_minimums(state, units, fixed)
            if not small.any():
                return units, skipped
            retry = self._optimise(state, fixed | small)
            if retry is None:
                return units, skipped
            fixed = fixed | small
            skipped += more
            units = retry

    def _optimise(self, state: FloatArray, fixed: np.ndarray) -> FloatArray | None:
        free = ~fixed
        committed = float((self.cost[fixed] * state[fixed]).sum())
        problem = UnitProblem(self.cost[free], self.goal[free], self.budget - committed, self.tolerance)
        solved = solve_units(problem)
        if solved is None:
            return None
        units = state.copy()
        units[free] = solved
        return units

    def _inside_drift_band(self, state: FloatArray) -> tuple[np.ndarray, tuple[SkippedTrade, ...]]:
        band = self.thresholds.drift_pct
        if band <= 0:
            return np.zeros(len(state), dtype=bool), ()
        total = self.book.total_equity
        gap_pct = np.abs(self.cost * state - self.goal) / total * 100.0
        inside = gap_pct < band
        skipped = tuple(
            SkippedTrade(
                self.symbols[i], "drift_below_threshold", f"gap {gap_pct[i]:.3f}% is under the {band:g}% band"
            )
            for i in np.flatnonzero(inside & (gap_pct > 0))
        )
        return inside, skipped

    def _under_minimums(
        self, state: FloatArray, units: FloatArray, fixed: np.ndarray
    ) -> tuple[np.ndarray, tuple[SkippedTrade, ...]]:
        change = np.abs(units - state)
        value = change * self.cost
        shares = change * self.book.unit
        below_value = (change > 0) & (value < self.thresholds.min_order_value) & ~fixed
        below_shares = (change > 0) & (shares < self.thresholds.min_trade_shares) & ~fixed & ~below_value
        skipped = [
            SkippedTrade(
                self.symbols[i],
                "below_min_order_value",
                f"trade of {value[i]:.2f} is under the minimum order value "
                f"{self.thresholds.min_order_value:g}",
            )
            for i in np.flatnonzero(below_value)
        ]
        skipped += [
            SkippedTrade(
                self.symbols[i],
                "below_min_shares",
                f"trade of {shares[i]:.4f} shares is under the minimum of "
                f"{self.thresholds.min_trade_shares:g}",
            )
            for i in np.flatnonzero(below_shares)
        ]
        return below_value | below_shares, tuple(skipped)

    def _breaks_thresholds(self, units: FloatArray) -> bool:
        change = np.abs(units - self.held)
        traded = change > 0
        too_small = (change * self.cost < self.thresholds.min_order_value) | (
            change * self.book.unit < self.thresholds.min_trade_shares
        )
        return bool((traded & too_small).any())

    def _fits(self, units: FloatArray) -> bool:
        return float((self.cost * units).sum()) <= self.budget + self.tolerance

    def _error(self, units: FloatArray) -> float:
        return float(np.abs(self.cost * units - self.goal).sum())
