"""The planner's rules (DESIGN.md section 5), one behaviour per test."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping

import pytest

from event_processor.planner import (
    EquityInfo,
    Holding,
    Plan,
    PlanError,
    PlanInput,
    PlannedOrder,
    SkippedTrade,
    plan_rebalance,
)
from rebalancer_shared.accounts import RebalancingSettings


def account(
    targets: Mapping[str, float],
    prices: Mapping[str, float],
    cash: float,
    holdings: Mapping[str, float | Holding] | None = None,
    net_liquidation: float | None = None,
    **settings: float | bool,
) -> PlanInput:
    held = {s: h if isinstance(h, Holding) else Holding(h) for s, h in (holdings or {}).items()}
    if net_liquidation is None:
        net_liquidation = cash + sum(h.quantity * prices[s] for s, h in held.items())
    return PlanInput(targets, held, prices, cash, net_liquidation, RebalancingSettings(**settings))  # type: ignore[arg-type]


def orders_by_symbol(plan: Plan) -> dict[str, tuple[str, float]]:
    return {o.symbol: (o.action, o.quantity) for o in plan.orders}


def skip_reasons(plan: Plan) -> dict[str, str]:
    return {s.symbol: s.reason for s in plan.skipped}


# ---------------------------------------------------------------- equity and reserve


def test_product_brief_example_2_percent_reserve_leaves_98000_of_100000_to_trade() -> None:
    plan = plan_rebalance(account({"AAA": 1.0}, {"AAA": 100.0}, 100_000.0, equity_reserve_percentage=2.0))
    assert plan.equity_info == EquityInfo(
        total_equity=100_000.0, reserve_percentage=2.0, reserve_amount=2_000.0, available_for_trading=98_000.0
    )
    assert orders_by_symbol(plan) == {"AAA": ("BUY", 980.0)}
    assert plan.projected_cash == pytest.approx(2_000.0)


@pytest.mark.parametrize(
    ("reserve", "available"), [(0.0, 50_000.0), (1.0, 49_500.0), (2.5, 48_750.0), (10.0, 45_000.0)]
)
def test_available_is_net_liquidation_less_the_reserve(reserve: float, available: float) -> None:
    inp = account({"AAA": 1.0}, {"AAA": 10.0}, 20_000.0, {"AAA": 3_000}, equity_reserve_percentage=reserve)
    info = plan_rebalance(inp).equity_info
    assert info.total_equity == 50_000.0
    assert info.available_for_trading == pytest.approx(available)
    assert info.reserve_amount == pytest.approx(50_000.0 - available)


def test_reserve_is_kept_where_rounding_to_the_nearest_share_would_dip_into_it() -> None:
    # 990 available buys 9.95 shares at 99.50: the nearest share (10) would cost 995 > 990.
    plan = plan_rebalance(account({"AAA": 1.0}, {"AAA": 99.5}, 1_000.0))
    assert orders_by_symbol(plan) == {"AAA": ("BUY", 9.0)}
    assert plan.projected_cash >= plan.equity_info.reserve_amount


def test_cash_below_the_reserve_is_restored_by_selling() -> None:
    plan = plan_rebalance(
        account({"AAA": 1.0}, {"AAA": 10.0}, 0.0, {"AAA": 1_000}, equity_reserve_percentage=5.0)
    )
    assert orders_by_symbol(plan) == {"AAA": ("SELL", 50.0)}
    assert plan.projected_cash == pytest.approx(500.0)


def test_weights_summing_above_one_are_scaled_down_instead_of_spending_the_reserve() -> None:
    plan = plan_rebalance(account({"AAA": 0.6, "BBB": 0.6}, {"AAA": 1.0, "BBB": 1.0}, 10_000.0))
    assert orders_by_symbol(plan) == {"AAA": ("BUY", 4_950.0), "BBB": ("BUY", 4_950.0)}
    assert plan.projected_cash == pytest.approx(100.0)


def test_reserve_out_of_reach_even_selling_everything_is_a_plan_error() -> None:
    inp = account({"AAA": 1.0}, {"AAA": 50.0}, -200.0, {"AAA": 0.5}, net_liquidation=100.0)
    with pytest.raises(PlanError, match="reserve") as caught:
        plan_rebalance(inp)
    assert caught.value.field == "cash"


# ---------------------------------------------------------------- what is traded


def test_held_symbol_not_in_targets_is_sold_in_full() -> None:
    plan = plan_rebalance(account({"AAA": 1.0}, {"AAA": 10.0, "OLD": 25.0}, 0.0, {"OLD": 40}))
    assert plan.orders[0] == PlannedOrder("OLD", "SELL", 40.0, 25.0, 1_000.0, "not in targets: sell in full")
    assert plan.projected_quantities["OLD"] == 0


def test_zero_weight_target_is_sold_in_full() -> None:
    plan = plan_rebalance(account({"AAA": 1.0, "OLD": 0.0}, {"AAA": 10.0, "OLD": 25.0}, 0.0, {"OLD": 40}))
    assert orders_by_symbol(plan)["OLD"] == ("SELL", 40.0)


def test_fractional_remainder_of_a_dropped_symbol_is_reported_not_an_error() -> None:
    plan = plan_rebalance(account({"AAA": 1.0}, {"AAA": 10.0, "OLD": 25.0}, 0.0, {"OLD": 7.25}))
    assert orders_by_symbol(plan)["OLD"] == ("SELL", 7.0)
    assert skip_reasons(plan)["OLD"] == "fractional_remainder"
    assert plan.projected_quantities["OLD"] == pytest.approx(0.25)
    replanned = plan_rebalance(
        account(
            {"AAA": 1.0}, {"AAA": 10.0, "OLD": 25.0}, plan.projected_cash, dict(plan.projected_quantities)
        )
    )
    assert replanned.orders == ()
    assert skip_reasons(replanned)["OLD"] == "fractional_remainder"


def test_lone_fractional_remainder_needs_no_price() -> None:
    plan = plan_rebalance(account({"AAA": 1.0}, {"AAA": 10.0}, 100.0, {"OLD": 0.4}, net_liquidation=110.0))
    assert skip_reasons(plan) == {"OLD": "fractional_remainder"}
    assert "OLD" not in orders_by_symbol(plan)


def test_non_stock_holdings_are_left_alone_and_reported() -> None:
    holdings = {"SPY_C": Holding(3, "OPT"), "T_BOND": Holding(10, "BOND")}
    plan = plan_rebalance(account({"AAA": 1.0}, {"AAA": 10.0}, 1_000.0, holdings, net_liquidation=2_000.0))
    assert set(orders_by_symbol(plan)) == {"AAA"}
    assert skip_reasons(plan) == {"SPY_C": "non_stock_holding", "T_BOND": "non_stock_holding"}
    assert "SPY_C" not in plan.projected_weights


def test_holdings_in_another_currency_or_on_a_foreign_listing_are_left_alone_and_reported() -> None:
    holdings = {
        "SHEL (LSE GBP, conId 7)": Holding(100, currency="GBP", us_listing=False, exchange="LSE", con_id=7),
        "RY (TSE USD, conId 8)": Holding(10, us_listing=False, exchange="TSE", con_id=8),
    }
    plan = plan_rebalance(account({"AAA": 1.0}, {"AAA": 10.0}, 1_000.0, holdings, net_liquidation=5_000.0))
    assert set(orders_by_symbol(plan)) == {"AAA"}
    assert skip_reasons(plan) == {
        "SHEL (LSE GBP, conId 7)": "other_currency",
        "RY (TSE USD, conId 8)": "foreign_listing",
    }
    shel = next(s for s in plan.skipped if s.symbol.startswith("SHEL"))
    assert shel.detail == (
        "100 on LSE (conId 7) held in GBP, not USD; only US-listed stock in USD is traded, left alone"
    )
    assert not set(plan.projected_weights) & set(holdings)


def test_targeted_symbol_held_only_as_a_foreign_listing_is_a_plan_error() -> None:
    held = {"SHEL": Holding(100, currency="GBP", us_listing=False, exchange="LSE")}
    with pytest.raises(PlanError, match="SHEL is a target but is held in GBP") as caught:
        plan_rebalance(account({"SHEL": 1.0}, {"SHEL": 70.0}, 1_000.0, held, 5_000.0))
    assert caught.value.symbol == "SHEL"


def test_targeted_symbol_held_as_an_option_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match="AAA") as caught:
        plan_rebalance(account({"AAA": 1.0}, {"AAA": 10.0}, 100.0, {"AAA": Holding(1, "OPT")}, 200.0))
    assert caught.value.symbol == "AAA"


def test_short_stock_position_is_a_plan_error_never_traded() -> None:
    with pytest.raises(PlanError, match="short") as caught:
        plan_rebalance(account({"AAA": 1.0}, {"AAA": 10.0, "BBB": 5.0}, 1_000.0, {"BBB": -3}, 985.0))
    assert caught.value.symbol == "BBB"


def test_never_sells_more_than_held() -> None:
    plan = plan_rebalance(account({"AAA": 0.01, "BBB": 0.99}, {"AAA": 10.0, "BBB": 1.0}, 0.0, {"AAA": 2.5}))
    assert orders_by_symbol(plan)["AAA"] == ("SELL", 2.0)
    assert plan.projected_quantities["AAA"] == pytest.approx(0.5)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("price", [None, 0.0, -3.0, math.inf, math.nan])
def test_bad_price_of_a_target_is_a_plan_error_naming_the_symbol(price: float | None) -> None:
    prices = {"AAA": 10.0} | ({} if price is None else {"BBB": price})
    with pytest.raises(PlanError, match="BBB") as caught:
        plan_rebalance(account({"AAA": 0.5, "BBB": 0.5}, prices, 1_000.0))
    assert (caught.value.symbol, caught.value.field) == ("BBB", "prices")


@pytest.mark.parametrize("price", [None, 0.0, math.nan])
def test_bad_price_of_a_symbol_to_sell_is_a_plan_error(price: float | None) -> None:
    prices = {"AAA": 10.0} | ({} if price is None else {"OLD": price})
    with pytest.raises(PlanError, match="OLD"):
        plan_rebalance(account({"AAA": 1.0}, prices, 1_000.0, {"OLD": 5}, net_liquidation=1_500.0))


def test_bad_price_of_a_symbol_that_does_not_trade_is_not_an_error() -> None:
    inp = account({"AAA": 1.0, "ZERO": 0.0}, {"AAA": 10.0, "ZERO": math.nan, "OPT": -1.0}, 1_000.0)
    inp = PlanInput(inp.targets, {"OPT": Holding(1, "OPT")}, inp.prices, inp.cash, 1_000.0)
    assert orders_by_symbol(plan_rebalance(inp)) == {"AAA": ("BUY", 99.0)}


@pytest.mark.parametrize("weight", [math.nan, -0.1, math.inf])
def test_bad_weight_is_a_plan_error_naming_the_symbol(weight: float) -> None:
    with pytest.raises(PlanError, match="BBB") as caught:
        plan_rebalance(account({"AAA": 0.5, "BBB": weight}, {"AAA": 10.0, "BBB": 10.0}, 1_000.0))
    assert (caught.value.symbol, caught.value.field) == ("BBB", "targets")


@pytest.mark.parametrize("net_liquidation", [0.0, -5.0, math.nan])
def test_unusable_net_liquidation_is_a_plan_error(net_liquidation: float) -> None:
    with pytest.raises(PlanError, match="net liquidation"):
        plan_rebalance(account({"AAA": 1.0}, {"AAA": 10.0}, 1_000.0, net_liquidation=net_liquidation))


# ---------------------------------------------------------------- order shape


def test_orders_are_sells_first_then_by_symbol() -> None:
    inp = account(
        {"AAA": 0.5, "ZZZ": 0.5},
        {"AAA": 10.0, "MMM": 10.0, "ZZZ": 10.0, "BBB": 10.0},
        0.0,
        {"MMM": 100, "BBB": 100},
        equity_reserve_percentage=0.0,
    )
    plan = plan_rebalance(inp)
    assert [(o.action, o.symbol) for o in plan.orders] == [
        ("SELL", "BBB"),
        ("SELL", "MMM"),
        ("BUY", "AAA"),
        ("BUY", "ZZZ"),
    ]
    assert [o.symbol for o in plan.sells()] == ["BBB", "MMM"]
    assert [o.symbol for o in plan.buys()] == ["AAA", "ZZZ"]


def test_same_input_gives_the_same_plan() -> None:
    inp = account({"AAA": 0.3, "BBB": 0.7}, {"AAA": 33.3, "BBB": 71.1}, 9_000.0, {"AAA": 10})
    assert plan_rebalance(inp) == plan_rebalance(inp)


def test_whole_shares_by_default_and_no_order_under_one_share() -> None:
    plan = plan_rebalance(account({"AAA": 0.5, "BBB": 0.5}, {"AAA": 33.0, "BBB": 7.0}, 1_000.0))
    assert orders_by_symbol(plan) == {"AAA": ("BUY", 15.0), "BBB": ("BUY", 70.0)}
    # 50.4 shares is the target: 0.4 share short, so no order.
    inp = account({"AAA": 1.0}, {"AAA": 100.0}, 40.0, {"AAA": 50}, equity_reserve_percentage=0.0)
    assert plan_rebalance(inp).orders == ()


def test_fractional_shares_trade_to_four_decimals() -> None:
    plan = plan_rebalance(account({"AAA": 1.0}, {"AAA": 300.0}, 1_000.0, fractional_shares=True))
    assert orders_by_symbol(plan) == {"AAA": ("BUY", 3.3)}
    plan = plan_rebalance(account({"AAA": 1.0}, {"AAA": 7.0}, 1_000.0, fractional_shares=True))
    assert orders_by_symbol(plan) == {"AAA": ("BUY", 141.4285)}
    assert plan.projected_cash >= plan.equity_info.reserve_amount


def test_fractional_trade_under_min_trade_shares_is_skipped() -> None:
    # 0.005 share short of target at a min_trade_shares of 0.01.
    inp = account(
        {"AAA": 1.0},
        {"AAA": 1_000.0},
        5.0,
        {"AAA": 0.995},
        equity_reserve_percentage=0.0,
        fractional_shares=True,
    )
    plan = plan_rebalance(inp)
    assert plan.orders == ()
    assert skip_reasons(plan) == {"AAA": "below_min_shares"}


def test_fractional_dropped_symbol_under_min_trade_shares_is_reported() -> None:
    inp = account({"AAA": 1.0}, {"AAA": 10.0, "OLD": 10.0}, 100.0, {"OLD": 0.005}, fractional_shares=True)
    plan = plan_rebalance(inp)
    assert "OLD" not in orders_by_symbol(plan)
    assert skip_reasons(plan) == {"OLD": "below_min_shares"}


# ---------------------------------------------------------------- thresholds


def test_symbol_inside_the_drift_band_is_skipped() -> None:
    # AAA is 0.5 % under target, BBB 0.5 % over, CCC 3 % under, with a 1 % band.
    prices = {"AAA": 1.0, "BBB": 1.0, "CCC": 1.0}
    inp = account(
        {"AAA": 0.3, "BBB": 0.3, "CCC": 0.4},
        prices,
        3_000.0,
        {"AAA": 2_950, "BBB": 3_050, "CCC": 1_000},
        equity_reserve_percentage=0.0,
        drift_threshold_pct=1.0,
    )
    plan = plan_rebalance(inp)
    assert orders_by_symbol(plan) == {"CCC": ("BUY", 3_000.0)}
    assert skip_reasons(plan) == {"AAA": "drift_below_threshold", "BBB": "drift_below_threshold"}


def test_drift_band_off_by_default_trades_every_gap() -> None:
    prices = {"AAA": 1.0, "BBB": 1.0}
    inp = account(
        {"AAA": 0.5, "BBB": 0.5}, prices, 0.0, {"AAA": 4_950, "BBB": 5_050}, equity_reserve_percentage=0
    )
    assert orders_by_symbol(plan_rebalance(inp)) == {"AAA": ("BUY", 50.0), "BBB": ("SELL", 50.0)}


def test_trade_under_the_minimum_order_value_is_skipped() -> None:
    prices = {"AAA": 10.0, "BBB": 10.0}
    inp = account(
        {"AAA": 0.5, "BBB": 0.5},
        prices,
        1_030.0,
        {"AAA": 497, "BBB": 400},
        equity_reserve_percentage=0.0,
        min_order_value=50.0,
    )
    plan = plan_rebalance(inp)
    assert orders_by_symbol(plan) == {"BBB": ("BUY", 100.0)}
    assert skip_reasons(plan) == {"AAA": "below_min_order_value"}


def test_minimum_order_value_gives_way_to_the_reserve() -> None:
    inp = account(
        {"AAA": 1.0}, {"AAA": 1.0}, 15.0, {"AAA": 985}, equity_reserve_percentage=2.0, min_order_value=6.0
    )
    plan = plan_rebalance(inp)
    assert orders_by_symbol(plan) == {"AAA": ("SELL", 5.0)}
    assert plan.projected_cash >= plan.equity_info.reserve_amount


# ---------------------------------------------------------------- convergence and quality


def test_planning_again_on_the_projected_portfolio_gives_no_orders() -> None:
    inp = account(
        {"AAA": 0.25, "BBB": 0.35, "CCC": 0.4},
        {"AAA": 187.3, "BBB": 42.9, "CCC": 611.0, "OLD": 13.0},
        12_345.0,
        {"AAA": 20, "OLD": 80},
    )
    plan = plan_rebalance(inp)
    again = account(inp.targets, inp.prices, plan.projected_cash, dict(plan.projected_quantities))
    assert plan.orders
    assert plan_rebalance(again).orders == ()


def test_holding_exactly_the_targets_plus_reserve_cash_is_zero_error_and_no_orders() -> None:
    inp = account({"AAA": 0.5, "BBB": 0.5}, {"AAA": 10.0, "BBB": 20.0}, 1_000.0, {"AAA": 4_950, "BBB": 2_475})
    plan = plan_rebalance(inp)
    assert plan.orders == ()
    assert plan.metrics.l1_error_bp == pytest.approx(0.0, abs=1e-9)
    assert plan.metrics.turnover == 0.0


def test_metrics_measure_weights_against_total_equity() -> None:
    # 10,000 equity, 0 reserve; AAA at 60 (target 50) and OLD 10 % are sold, BBB 30 % bought to 50 %.
    inp = account(
        {"AAA": 0.5, "BBB": 0.5},
        {"AAA": 100.0, "BBB": 100.0, "OLD": 100.0},
        0.0,
        {"AAA": 60, "BBB": 30, "OLD": 10},
        equity_reserve_percentage=0.0,
    )
    plan = plan_rebalance(inp)
    assert plan.current_weights == {"AAA": 0.6, "BBB": 0.3, "OLD": 0.1}
    assert dict(plan.projected_weights) == {"AAA": 0.5, "BBB": 0.5, "OLD": 0.0}
    assert plan.metrics.turnover == pytest.approx(0.4)
    assert plan.metrics.order_count == 3
    assert plan.metrics.l1_error_bp == pytest.approx(0.0)


def test_l1_error_and_largest_gap_in_basis_points() -> None:
    # One share of 600 in a 1,000 account: 60 % held against 50 % target (0 reserve), 40 % cash.
    inp = account(
        {"AAA": 0.5, "BBB": 0.5}, {"AAA": 600.0, "BBB": 600.0}, 400.0, {"AAA": 1}, equity_reserve_percentage=0
    )
    plan = plan_rebalance(inp)
    assert plan.orders == ()
    assert plan.metrics.l1_error_bp == pytest.approx(1_000 + 5_000)
    assert plan.metrics.max_gap_bp == pytest.approx(5_000)


def test_rounds_the_final_position_not_the_trade() -> None:
    # Target 10.6 shares (53 % of 2,000 at 100), 3 held: buy 8 to hold 11; truncating the trade would buy 7.
    inp = account({"AAA": 0.53}, {"AAA": 100.0}, 1_700.0, {"AAA": 3}, equity_reserve_percentage=0.0)
    assert orders_by_symbol(plan_rebalance(inp)) == {"AAA": ("BUY", 8.0)}


def test_spare_cash_rounds_up_where_it_removes_most_error() -> None:
    # 990 each: AAA 9.9 shares at 100, BBB 9.6 at 103.125. The floors leave 151.875: one round-up fits,
    # and AAA's removes 80 of error where BBB's would remove 20.6.
    inp = account(
        {"AAA": 0.5, "BBB": 0.5}, {"AAA": 100.0, "BBB": 103.125}, 1_980.0, equity_reserve_percentage=0.0
    )
    assert orders_by_symbol(plan_rebalance(inp)) == {"AAA": ("BUY", 10.0), "BBB": ("BUY", 9.0)}


def _exhaustive_best_error(inp: PlanInput) -> float:
    available = inp.net_liquidation * (1 - inp.settings.equity_reserve_percentage / 100)
    budget = inp.cash - inp.net_liquidation * inp.settings.equity_reserve_percentage / 100
    symbols = sorted(inp.targets)
    goals = [inp.targets[s] * available for s in symbols]
    ranges = [range(int(budget // inp.prices[s]) + 1) for s in symbols]
    best = math.inf
    for shares in itertools.product(*ranges):
        spend = sum(n * inp.prices[s] for n, s in zip(shares, symbols, strict=True))
        if spend <= budget:
            error = sum(abs(n * inp.prices[s] - g) for n, s, g in zip(shares, symbols, goals, strict=True))
            best = min(best, error)
    return best


def test_whole_share_plan_matches_the_exhaustive_optimum_on_small_accounts() -> None:
    rng = random.Random(11)
    for _ in range(40):
        prices = {s: round(rng.uniform(40, 900), 2) for s in ("AAA", "BBB", "CCC")}
        raw = [rng.random() for _ in prices]
        targets = {s: w / sum(raw) for s, w in zip(prices, raw, strict=True)}
        inp = account(targets, prices, rng.uniform(2_000, 4_000))
        plan = plan_rebalance(inp)
        error = sum(
            abs(q * inp.prices[s] - inp.targets[s] * plan.equity_info.available_for_trading)
            for s, q in plan.projected_quantities.items()
        )
        assert error <= _exhaustive_best_error(inp) + 1e-6


# ---------------------------------------------------------------- output shape


def test_plan_to_dict_has_the_documented_json_shape() -> None:
    plan = plan_rebalance(account({"AAA": 1.0}, {"AAA": 50.0}, 1_000.0, {"OPT": Holding(1, "OPT")}, 1_100.0))
    data = plan.to_dict()
    assert set(data) == {"orders", "skipped", "withheld", "equity_info", "projected", "metrics", "weights"}
    assert data["orders"] == [
        {
            "symbol": "AAA",
            "action": "BUY",
            "quantity": 19.0,
            "est_price": 50.0,
            "est_value": 950.0,
            "reason": "under target",
        }
    ]
    assert data["skipped"] == [SkippedTrade("OPT", "non_stock_holding", plan.skipped[0].detail).to_dict()]
    assert set(data["equity_info"]) == {
        "total_equity",
        "reserve_percentage",
        "reserve_amount",
        "available_for_trading",
    }
    assert data["projected"] == {"weights": {"AAA": round(950.0 / 1_100.0, 6)}, "cash": 50.0}
    assert set(data["metrics"]) == {"l1_error_bp", "max_gap_bp", "turnover", "order_count"}
