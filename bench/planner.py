"""Planner quality and speed against the exact integer optimum and three simpler rounding rules.

Run: make bench, or .venv/bin/python bench/planner.py [--trials 1000] [--optimum-trials N] [--seed 7]

Every scenario is drawn from a fixed seed; each method plans the same accounts. Figures:
L1 weight error and largest single gap in basis points (target weights scaled by available / total
equity, so the reserve kept in cash is no error), plans that dip into the cash reserve, idle cash
above the reserve (bp of equity), turnover, orders per plan and time per plan.

Methods:
  planner     event_processor.planner.plan_rebalance (whole shares, 1 % reserve)
  optimum     scipy.optimize.milp: integer holdings minimising the L1 error with the cash limit
  round-trade each trade rounded to the nearest share
  trunc-trade each trade truncated toward zero
  floor-final the final position floored
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy.optimize import (  # type: ignore[import-untyped]  # scipy ships no stubs; bench-only code
    Bounds,
    LinearConstraint,
    milp,
)

from event_processor.planner import Holding, PlanInput, plan_rebalance
from rebalancer_shared.accounts import RebalancingSettings

DEFAULT_OPTIMUM_TRIALS = 500
MILP_OPTIONS = (
    {"mip_rel_gap": 1e-7, "time_limit": 30.0},
    {"mip_rel_gap": 1e-7, "time_limit": 30.0, "presolve": False},
    {"mip_rel_gap": 1e-6, "time_limit": 30.0},
)
RESERVE_PCT = 1.0
SETTINGS = RebalancingSettings(equity_reserve_percentage=RESERVE_PCT)
Scenario = Callable[[np.random.Generator], PlanInput]


@dataclass(frozen=True)
class Outcome:
    """One method's result on one account."""

    l1_bp: float
    max_gap_bp: float
    breach: bool
    idle_bp: float
    turnover: float
    orders: int
    seconds: float


# ---------------------------------------------------------------- scenarios


def _symbols(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i:02d}" for i in range(count)]


def _prices(rng: np.random.Generator, count: int, low: float = 15.0, high: float = 600.0) -> np.ndarray:
    return np.round(np.exp(rng.uniform(np.log(low), np.log(high), count)), 2)


def _account(
    targets: dict[str, float], held_value: dict[str, float], prices: dict[str, float], cash: float
) -> PlanInput:
    holdings = {s: Holding(float(round(v / prices[s]))) for s, v in held_value.items()}
    holdings = {s: h for s, h in holdings.items() if h.quantity > 0}
    value = sum(h.quantity * prices[s] for s, h in holdings.items())
    cash = max(cash, 0.0)
    return PlanInput(targets, holdings, prices, cash, cash + value, SETTINGS)


def _drifted(rng: np.random.Generator, count: int, equity: float, drift: float = 0.08) -> PlanInput:
    symbols = _symbols("S", count)
    weights = rng.dirichlet(np.full(count, 2.0))
    prices = dict(zip(symbols, _prices(rng, count), strict=True))
    targets = dict(zip(symbols, weights, strict=True))
    invested = equity * (1 - RESERVE_PCT / 100)
    held = {s: targets[s] * invested * (1 + drift * rng.standard_normal()) for s in symbols}
    return _account(targets, held, prices, equity - sum(held.values()))


def maintenance(rng: np.random.Generator) -> PlanInput:
    return _drifted(rng, 8, 50_000.0)


def small_account(rng: np.random.Generator) -> PlanInput:
    return _drifted(rng, 8, 10_000.0)


def large_account(rng: np.random.Generator) -> PlanInput:
    return _drifted(rng, 15, 250_000.0)


def from_cash(rng: np.random.Generator) -> PlanInput:
    symbols = _symbols("S", 10)
    prices = dict(zip(symbols, _prices(rng, 10), strict=True))
    targets = dict(zip(symbols, rng.dirichlet(np.full(10, 2.0)), strict=True))
    return _account(targets, {}, prices, 50_000.0)


def strategy_switch(rng: np.random.Generator) -> PlanInput:
    old, new = _symbols("OLD", 8), _symbols("NEW", 8)
    prices = dict(zip(old + new, _prices(rng, 16), strict=True))
    held = dict(zip(old, rng.dirichlet(np.full(8, 2.0)) * 49_000.0, strict=True))
    targets = dict(zip(new, rng.dirichlet(np.full(8, 2.0)), strict=True))
    return _account(targets, held, prices, 1_000.0)


def expensive_share(rng: np.random.Generator) -> PlanInput:
    """A $20k account starting from cash, one share priced 11-25 % of the account."""
    symbols = _symbols("S", 7)
    prices = dict(zip(symbols, _prices(rng, 7), strict=True))
    prices["S00"] = float(np.round(rng.uniform(0.11, 0.25) * 20_000.0, 2))
    targets = dict(zip(symbols, rng.dirichlet(np.full(7, 2.0)), strict=True))
    return _account(targets, {}, prices, 20_000.0)


def hundred_symbols(rng: np.random.Generator) -> PlanInput:
    return _drifted(rng, 100, 5_000_000.0)


SCENARIOS: dict[str, Scenario] = {
    "maintenance 8 sym $50k": maintenance,
    "from all cash 10 sym $50k": from_cash,
    "strategy switch 8->8 $50k": strategy_switch,
    "small account $10k": small_account,
    "large account $250k": large_account,
    "expensive share >10% $20k": expensive_share,
}


# ---------------------------------------------------------------- methods


def _budget(inp: PlanInput) -> float:
    held = sum(h.quantity * inp.prices[s] for s, h in inp.holdings.items())
    return inp.cash + held - inp.net_liquidation * RESERVE_PCT / 100


def _ideal(inp: PlanInput) -> dict[str, float]:
    available = inp.net_liquidation * (1 - RESERVE_PCT / 100)
    return {s: w * available / inp.prices[s] for s, w in inp.targets.items()}


def _outcome(inp: PlanInput, final: dict[str, float], seconds: float) -> Outcome:
    total = inp.net_liquidation
    available = total * (1 - RESERVE_PCT / 100)
    symbols = set(inp.targets) | set(inp.holdings)
    gaps, traded, orders, cash = [], 0.0, 0, inp.cash
    for s in sorted(symbols):
        held = inp.holdings.get(s, Holding(0.0)).quantity
        after = final.get(s, 0.0)
        price = inp.prices[s]
        gaps.append(abs(after * price / total - inp.targets.get(s, 0.0) * available / total))
        traded += abs(after - held) * price
        cash -= (after - held) * price
        orders += after != held
    reserve = total * RESERVE_PCT / 100
    return Outcome(
        l1_bp=sum(gaps) * 1e4,
        max_gap_bp=max(gaps) * 1e4,
        breach=cash < reserve - 1e-6,
        idle_bp=(cash - reserve) / total * 1e4,
        turnover=traded / total,
        orders=orders,
        seconds=seconds,
    )


def run_planner(inp: PlanInput) -> Outcome:
    start = time.perf_counter()
    plan = plan_rebalance(inp)
    seconds = time.perf_counter() - start
    return _outcome(inp, dict(plan.projected_quantities), seconds)


def run_optimum(inp: PlanInput) -> Outcome:
    start = time.perf_counter()
    symbols = sorted(inp.targets)
    n = len(symbols)
    price = np.array([inp.prices[s] for s in symbols]) / inp.net_liquidation
    goal = np.array([inp.targets[s] for s in symbols]) * (1 - RESERVE_PCT / 100)
    budget = _budget(inp) / inp.net_liquidation
    # Variables: n integer share counts, then n absolute errors e_i >= |price_i x_i - goal_i|.
    eye = np.eye(n)
    rows = np.block([[np.diag(price), -eye], [-np.diag(price), -eye], [price[None, :], np.zeros((1, n))]])
    upper = np.concatenate([goal, -goal, [budget]])
    problem = {
        "c": np.concatenate([np.zeros(n), np.ones(n)]),
        "constraints": LinearConstraint(rows, -np.inf, upper),
        "integrality": np.concatenate([np.ones(n), np.zeros(n)]),
        "bounds": Bounds(np.zeros(2 * n), np.concatenate([np.floor(budget / price) + 1, np.full(n, np.inf)])),
    }
    # HiGHS now and then ends in "Solve error" on one setting; the next one solves the same problem.
    for options in MILP_OPTIONS:
        with _quiet_stdout():
            result = milp(**problem, options=options)
        if result.x is not None:
            break
    else:
        raise RuntimeError(f"milp failed on every setting: {result.message}")
    seconds = time.perf_counter() - start
    final = {s: float(round(x)) for s, x in zip(symbols, result.x[:n], strict=True)}
    return _outcome(inp, final, seconds)


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """HiGHS prints debug lines straight to file descriptor 1; keep them out of the table."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _rule(name: str, shape: Callable[[float, float], float]) -> Callable[[PlanInput], Outcome]:
    def run(inp: PlanInput) -> Outcome:
        start = time.perf_counter()
        final = {}
        for s, ideal in _ideal(inp).items():
            held = inp.holdings.get(s, Holding(0.0)).quantity
            final[s] = max(shape(held, ideal), 0.0)
        return _outcome(inp, final, time.perf_counter() - start)

    run.__name__ = name
    return run


METHODS: dict[str, Callable[[PlanInput], Outcome]] = {
    "planner": run_planner,
    "optimum": run_optimum,
    "round-trade": _rule("round-trade", lambda held, ideal: held + float(np.round(ideal - held))),
    "trunc-trade": _rule("trunc-trade", lambda held, ideal: held + float(np.trunc(ideal - held))),
    "floor-final": _rule("floor-final", lambda held, ideal: float(np.floor(ideal))),
}


# ---------------------------------------------------------------- report


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def _row(method: str, outcomes: list[Outcome]) -> str:
    l1 = [o.l1_bp for o in outcomes]
    return (
        f"  {method:<12}{len(outcomes):>6}{statistics.median(l1):>9.1f}{_p(l1, 95):>9.1f}"
        f"{statistics.median(o.max_gap_bp for o in outcomes):>9.1f}"
        f"{sum(o.breach for o in outcomes):>9}"
        f"{statistics.median(o.idle_bp for o in outcomes):>9.1f}"
        f"{statistics.mean(o.turnover for o in outcomes):>9.3f}"
        f"{statistics.mean(o.orders for o in outcomes):>8.1f}"
        f"{statistics.mean(o.seconds for o in outcomes) * 1e3:>9.2f}"
    )


HEADER = (
    f"  {'method':<12}{'plans':>6}{'L1 med':>9}{'L1 p95':>9}{'gap med':>9}{'breaches':>9}"
    f"{'idle bp':>9}{'turnover':>9}{'orders':>8}{'ms/plan':>9}"
)


def run_scenario(name: str, scenario: Scenario, trials: int, optimum_trials: int, seed: int) -> float:
    rng = np.random.default_rng([seed, sum(map(ord, name))])
    accounts = [scenario(rng) for _ in range(trials)]
    print(f"\n{name}")
    print(HEADER)
    results: dict[str, list[Outcome]] = {}
    for method, run in METHODS.items():
        results[method] = [
            run(inp) for inp in (accounts[:optimum_trials] if method == "optimum" else accounts)
        ]
        print(_row(method, results[method]))
    ours = [o.l1_bp for o in results["planner"][:optimum_trials]]
    best = [o.l1_bp for o in results["optimum"]]
    ratio = statistics.median(ours) / statistics.median(best)
    matched = sum(a <= b + 0.01 for a, b in zip(ours, best, strict=True))
    worst = max(a - b for a, b in zip(ours, best, strict=True))
    print(
        f"  same {optimum_trials} accounts: planner median / optimum median {ratio:.4f}; "
        f"planner within 0.01 bp of the optimum on {matched}/{optimum_trials}; worst excess {worst:.1f} bp"
    )
    return ratio


def time_hundred(trials: int, seed: int) -> None:
    rng = np.random.default_rng([seed, 100])
    accounts = [hundred_symbols(rng) for _ in range(trials)]
    run_planner(accounts[0])  # warm-up (imports, numpy caches)
    times = [run_planner(inp).seconds * 1e3 for inp in accounts]
    print(
        f"\n100 symbols, $5M, drifted: {trials} plans, median {statistics.median(times):.2f} ms, "
        f"p99 {_p(times, 99):.2f} ms, max {max(times):.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=1000, help="accounts per scenario (default 1000)")
    parser.add_argument(
        "--optimum-trials",
        type=int,
        default=DEFAULT_OPTIMUM_TRIALS,
        help=f"accounts per scenario given to milp (default {DEFAULT_OPTIMUM_TRIALS}, at most --trials)",
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    optimum_trials = min(args.trials, args.optimum_trials)
    print(f"planner benchmark: {args.trials} accounts per scenario (seed {args.seed}); the exact optimum")
    print(f"(scipy milp, the slow part) runs on the first {optimum_trials} accounts of each scenario")
    print(f"reserve {RESERVE_PCT:g} %, whole shares; L1/gap/idle in basis points of equity")
    ratios = {
        name: run_scenario(name, s, args.trials, optimum_trials, args.seed) for name, s in SCENARIOS.items()
    }
    print("\nplanner median L1 / optimum median L1:")
    for name, ratio in ratios.items():
        print(f"  {name:<30}{ratio:.4f}")
    time_hundred(max(args.trials // 2, 50), args.seed)


if __name__ == "__main__":
    main()
