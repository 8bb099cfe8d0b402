"""Which positions to round up: a 0/1 knapsack over the spare cash, solved by dynamic programming.

After every position sits at its floor (the largest whole number of units not above its target), the
cash left over buys at most one more unit of some of them. Rounding up a position whose target lies
a fraction f above its floor lowers the error by cost x (2f - 1), so only f > 1/2 helps, and choosing
the set is a knapsack: maximise the error removed within the cash left. Greedy by ratio is a fair
answer; the table below is close to exact, because the cash is cut into `GRID_CELLS` equal steps and
each cost is rounded *up* to whole steps (whatever the table picks is affordable).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

GRID_CELLS = 2048


def choose_round_ups(cost: FloatArray, gain: FloatArray, capacity: float) -> list[int]:
    """Indices of the items whose total cost fits `capacity` with the largest total gain."""
    usable = [i for i in range(len(cost)) if gain[i] > 0 and 0 < cost[i] <= capacity]
    if not usable:
        return []
    step = capacity / GRID_CELLS
    weights = [max(1, int(np.ceil(cost[i] / step - 1e-9))) for i in usable]
    best = np.full(GRID_CELLS + 1, -np.inf)
    best[0] = 0.0
    taken = np.zeros((len(usable), GRID_CELLS + 1), dtype=bool)
    for row, (item, weight) in enumerate(zip(usable, weights, strict=True)):
        if weight > GRID_CELLS:
            continue
        candidate = best[:-weight] + gain[item]
        better = candidate > best[weight:]
        taken[row, weight:] = better
        best[weight:] = np.where(better, candidate, best[weight:])
    return _trace_back(usable, weights, taken, int(np.argmax(best)))


def _trace_back(usable: list[int], weights: list[int], taken: npt.NDArray[np.bool_], cell: int) -> list[int]:
    chosen: list[int] = []
    for row in range(len(usable) - 1, -1, -1):
        if taken[row, cell]:
            chosen.append(usable[row])
            cell -= weights[row]
    return sorted(chosen)
