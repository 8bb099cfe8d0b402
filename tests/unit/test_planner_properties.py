"""Properties every plan keeps, on random accounts (hypothesis): 1-60 symbols, prices $1-$5,000,
accounts $1,000-$5,000,000, arbitrary holdings (some not targeted), weights summing to 1."""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from event_processor.planner import Holding, Plan, PlanError, PlanInput, plan_rebalance
from rebalancer_shared.accounts import RebalancingSettings

UNIVERSE = [f"S{i:02d}" for i in range(60)]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def accounts(draw: st.DrawFn, thresholds: bool = False) -> PlanInput:
    count = draw(st.integers(1, 60))
    symbols = draw(st.permutations(UNIVERSE)).copy()[:count]
    targeted = symbols[: draw(st.integers(1, count))]
    raw = [draw(st.floats(0.0, 1.0)) for _ in targeted]
    if sum(raw) == 0:
        raw[0] = 1.0
    targets = {s: w / sum(raw) for s, w in zip(targeted, raw, strict=True)}
    prices = {s: round(draw(st.floats(1.0, 5_000.0)), 2) for s in symbols}
    equity = draw(st.floats(1_000.0, 5_000_000.0))
    fractional = draw(st.booleans())
    held = draw(st.lists(st.sampled_from(symbols), unique=True, max_size=count))
    shares = [draw(st.floats(0.0, 1.0)) for _ in held]
    invested = equity * draw(st.floats(0.0, 1.0))
    holdings = {}
    for symbol, part in zip(held, shares, strict=True):
        quantity = part / max(sum(shares), 1e-9) * invested / prices[symbol]
        whole = draw(st.booleans())
        holdings[symbol] = Holding(float(round(quantity)) if whole else round(quantity, 4))
    cash = equity - sum(h.quantity * prices[s] for s, h in holdings.items())
    cash = max(cash, 0.0)
    net_liquidation = cash + sum(h.quantity * prices[s] for s, h in holdings.items())
    settings = RebalancingSettings(
        equity_reserve_percentage=draw(st.floats(0.0, 10.0)),
        fractional_shares=fractional,
        drift_threshold_pct=draw(st.floats(0.0, 3.0)) if thresholds else 0.0,
        min_order_value=draw(st.floats(0.0, 2_000.0)) if thresholds else 0.0,
        min_trade_shares=draw(st.sampled_from([0.0001, 0.01, 0.5])) if thresholds else 0.01,
    )
    return PlanInput(targets, holdings, prices, cash, net_liquidation, settings)


def _plan(inp: PlanInput) -> Plan:
    """The plan; an account that cannot keep its reserve even sold out must be refused, nothing else."""
    try:
        return plan_rebalance(inp)
    except PlanError as exc:
        refused = exc
    unit = 0.0001 if inp.settings.fractional_shares else 1.0
    # A trade smaller than min_trade_shares is never placed: such a holding cannot be sold either.
    smallest = inp.settings.min_trade_shares if inp.settings.fractional_shares else unit
    sellable = sum(
        quantity * inp.prices[s]
        for s, h in inp.holdings.items()
        if (quantity := math.floor(h.quantity / unit + 1e-6) * unit) >= smallest - 1e-9
    )
    reserve = inp.net_liquidation * inp.settings.equity_reserve_percentage / 100
    assert refused.field == "cash"
    assert inp.cash + sellable < reserve
    assume(False)
    raise AssertionError("unreachable: assume(False) ends the example")


def _replanned(inp: PlanInput, plan: Plan) -> Plan:
    holdings = {s: Holding(q) for s, q in plan.projected_quantities.items()}
    return plan_rebalance(replace(inp, holdings=holdings, cash=plan.projected_cash))


@FAST
@given(accounts())
def test_planning_again_on_the_projected_portfolio_gives_no_orders(inp: PlanInput) -> None:
    plan = _plan(inp)
    assert _replanned(inp, plan).orders == ()


@FAST
@given(accounts(thresholds=True))
def test_plan_with_drift_band_and_minimums_converges(inp: PlanInput) -> None:
    plan = _plan(inp)
    assert _replanned(inp, plan).orders == ()


@FAST
@given(accounts(thresholds=True))
def test_projected_cash_never_falls_below_the_reserve(inp: PlanInput) -> None:
    plan = _plan(inp)
    spent = sum(o.est_value for o in plan.buys()) - sum(o.est_value for o in plan.sells())
    tolerance = 1e-6 * inp.net_liquidation
    assert plan.projected_cash >= plan.equity_info.reserve_amount - tolerance
    assert math.isclose(plan.projected_cash, inp.cash - spent, rel_tol=1e-9, abs_tol=1e-6)


@FAST
@given(accounts(thresholds=True))
def test_never_sells_more_than_held_or_opens_a_short(inp: PlanInput) -> None:
    plan = _plan(inp)
    for order in plan.sells():
        assert order.quantity <= inp.holdings[order.symbol].quantity + 1e-6
    assert all(quantity >= 0 for quantity in plan.projected_quantities.values())


@FAST
@given(accounts(thresholds=True))
def test_same_input_in_any_key_order_gives_the_same_plan(inp: PlanInput) -> None:
    shuffled = replace(
        inp,
        targets=dict(reversed(list(inp.targets.items()))),
        holdings=dict(reversed(list(inp.holdings.items()))),
        prices=dict(reversed(list(inp.prices.items()))),
    )
    first = _plan(inp)
    assert plan_rebalance(inp) == first
    assert plan_rebalance(shuffled) == first
    assert list(first.orders) == sorted(first.orders, key=lambda o: (o.action != "SELL", o.symbol))


@FAST
@given(accounts())
def test_every_held_symbol_outside_the_targets_is_sold_down_to_its_unsellable_part(inp: PlanInput) -> None:
    plan = _plan(inp)
    unit = 0.0001 if inp.settings.fractional_shares else 1.0
    floor = max(unit, inp.settings.min_trade_shares) if inp.settings.fractional_shares else unit
    for symbol in set(inp.holdings) - set(inp.targets):
        left = plan.projected_quantities.get(symbol, 0.0)
        assert left < floor
        if left > 0:
            assert symbol in {s.symbol for s in plan.skipped}


@FAST
@given(accounts())
def test_orders_respect_the_share_minimums(inp: PlanInput) -> None:
    plan = _plan(inp)
    for order in plan.orders:
        if inp.settings.fractional_shares:
            assert order.quantity >= inp.settings.min_trade_shares
            assert order.quantity == round(order.quantity, 4)
        else:
            assert order.quantity >= 1
            assert order.quantity == int(order.quantity)
