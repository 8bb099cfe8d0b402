"""`rebalancer plan FILE`: scenarios in, plans out as JSON; a bad scenario is one line naming the field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rebalancer_cli.app import app

FIXTURES = Path(__file__).parent / "fixtures_planner"
VALID = {"targets": {"AAA": 0.6, "BBB": 0.4}, "prices": {"AAA": 101.5, "BBB": 48.2}, "cash": 10_000.0}


def run(stdin: str, *args: str) -> Any:
    return CliRunner().invoke(app, ["plan", *args] if args else ["plan", "-"], input=stdin)


def test_plans_one_scenario_from_stdin_as_a_json_object() -> None:
    result = run(json.dumps(VALID))
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert [(o["symbol"], o["action"], o["quantity"]) for o in plan["orders"]] == [
        ("AAA", "BUY", 58.0),
        ("BBB", "BUY", 82.0),
    ]
    assert plan["equity_info"]["available_for_trading"] == pytest.approx(9_900.0)
    assert set(plan) == {"orders", "skipped", "withheld", "equity_info", "projected", "metrics", "weights"}
    assert set(plan["projected"]) == {"weights", "cash"}


def test_plans_a_list_of_scenarios_from_a_file_as_a_json_list() -> None:
    result = CliRunner().invoke(app, ["plan", str(FIXTURES / "scenarios.json")])
    assert result.exit_code == 0, result.output
    plans = json.loads(result.stdout)
    assert len(plans) == 3
    assert plans[0]["orders"][0] == {
        "symbol": "CCC",
        "action": "SELL",
        "quantity": 5.0,
        "est_price": 20.0,
        "est_value": 100.0,
        "reason": "not in targets: sell in full",
    }
    assert plans[1]["skipped"][0]["symbol"] == "SPY_C"
    assert plans[1]["skipped"][0]["reason"] == "non_stock_holding"
    assert plans[2]["orders"][0]["quantity"] == 3.3


def test_net_liquidation_defaults_to_cash_plus_the_value_of_the_positions() -> None:
    scenario = VALID | {"positions": {"AAA": 10, "BBB": {"quantity": 20}}}
    plan = json.loads(run(json.dumps(scenario)).stdout)
    assert plan["equity_info"]["total_equity"] == pytest.approx(10_000.0 + 1_015.0 + 964.0)


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        (
            VALID | {"prices": {"AAA": 101.5, "BBB": -1}},
            "scenario.prices.BBB: price must be a positive finite number",
        ),
        (VALID | {"prices": {"AAA": 101.5}}, "scenario.prices.BBB: no price for BBB, which must trade"),
        (
            VALID | {"targets": {"AAA": -0.5, "BBB": 1.5}},
            "scenario.targets: weight of 'AAA' is negative: -0.5",
        ),
        (VALID | {"cash": "lots"}, "scenario.cash: Input should be a valid number"),
        ({"prices": {}, "cash": 1.0}, "scenario.targets: Field required"),
        (VALID | {"positions": {"CCC": 1}}, "scenario.prices.CCC: needed to value the positions"),
        (VALID | {"positions": {"AAA": {"quantity": 1, "kind": "x"}}}, "scenario.positions.AAA.kind:"),
        (
            VALID | {"settings": {"equity_reserve_percentage": 12}},
            "scenario.settings.equity_reserve_percentage:",
        ),
        (VALID | {"positions": {"AAA": -4}}, "scenario.holdings.AAA: short position in AAA"),
        (VALID | {"extra": 1}, "scenario.extra: Extra inputs are not permitted"),
    ],
)
def test_bad_scenario_exits_non_zero_with_one_line_naming_the_field(
    scenario: dict[str, Any], message: str
) -> None:
    result = run(json.dumps(scenario))
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {message}")


def test_bad_scenario_in_a_list_is_named_by_its_index_and_nothing_is_printed() -> None:
    scenarios = [VALID, VALID, VALID | {"prices": {"AAA": 101.5, "BBB": 0}}]
    result = run(json.dumps(scenarios))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "error: scenario[2].prices.BBB: price must be a positive finite number\n"


PERCENTAGES = "they look like percentages; give fractions that sum to 1 (60% -> 0.6)"


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ({"AAA": 0.5, "BBB": 0.4}, "weights sum to 0.9000, not 1 within 0.01"),
        ({"AAA": 60, "BBB": 40}, f"weights sum to 100.0000: {PERCENTAGES}"),
        ({"AAA": 1.5}, f"weights sum to 1.5000: {PERCENTAGES}"),
        ({"AAA": float("nan"), "BBB": 0.4}, "weight of 'AAA' is not finite: nan"),
        ({"AAA": float("inf")}, "weight of 'AAA' is not finite: inf"),
        ({"AAA": 0.6, "BBB": -0.4}, "weight of 'BBB' is negative: -0.4"),
        ({"AAA": True}, "weight of 'AAA' is not a number: True"),
        ({"AAA": "0.6", "BBB": 0.4}, "weight of 'AAA' is not a number: '0.6'"),
        ({"AAA": None}, "weight of 'AAA' is not a number: None"),
        ({}, "no target weights: give at least one symbol and its weight"),
        ({" AAA": 0.5, "AAA": 0.5}, "duplicate symbol 'AAA'"),
        ({" ": 1.0}, "symbol ' ' is empty or not a string"),
    ],
    ids=[
        "sum-0.9",
        "percentages-60-40",
        "weight-above-1",
        "nan",
        "infinite",
        "negative",
        "bool",
        "text",
        "null",
        "empty",
        "duplicate-after-strip",
        "blank-symbol",
    ],
)
def test_targets_that_are_not_fractions_summing_to_one_are_refused_at_scenario_targets(
    targets: dict[str, Any], message: str
) -> None:
    result = run(json.dumps(VALID | {"targets": targets}))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"error: scenario.targets: {message}\n"


@pytest.mark.parametrize("targets", [{"AAA": 0.6, "BBB": 0.395}, {"AAA": 0.6, "BBB": 0.41}, {"AAA": 1.005}])
def test_targets_summing_to_one_within_the_tolerance_are_planned(targets: dict[str, float]) -> None:
    result = run(json.dumps(VALID | {"targets": targets}))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["orders"]


def test_bad_targets_in_a_list_are_named_by_the_scenario_index() -> None:
    scenarios = [VALID, VALID, VALID | {"targets": {"AAA": 60, "BBB": 40}}]
    result = run(json.dumps(scenarios))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"error: scenario[2].targets: weights sum to 100.0000: {PERCENTAGES}\n"


def test_nan_price_is_refused() -> None:
    result = run('{"targets": {"AAA": 1}, "prices": {"AAA": NaN}, "cash": 5}')
    assert result.stderr == "error: scenario.prices.AAA: price must be a positive finite number\n"


def test_text_that_is_not_json_is_refused_naming_the_input() -> None:
    result = run('{"targets": ')
    assert result.exit_code == 1
    assert result.stderr.startswith("error: stdin: not valid JSON")


def test_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    result = CliRunner().invoke(app, ["plan", str(missing)])
    assert result.exit_code == 1
    assert result.stderr == f"error: {missing}: cannot read: No such file or directory\n"


def test_console_script_plans_from_stdin_in_a_real_process() -> None:
    script = Path(sys.executable).parent / "rebalancer"
    done = subprocess.run(
        [str(script), "plan", "-"],
        input=json.dumps(VALID),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["metrics"]["order_count"] == 2
    bad = subprocess.run(
        [str(script), "plan", "-"], input="[1]", capture_output=True, text=True, timeout=60, check=False
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: scenario[0]:")


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ('{"AAA": 0.5, "BBB": 0.4}', "weights sum to 0.9000, not 1 within 0.01"),
        ('{"AAA": 60, "BBB": 40}', f"weights sum to 100.0000: {PERCENTAGES}"),
        ('{"AAA": NaN, "BBB": 1}', "weight of 'AAA' is not finite: nan"),
        ('{"AAA": 1.2, "BBB": -0.2}', "weight of 'BBB' is negative: -0.2"),
    ],
    ids=["sum-0.9", "percentages", "nan", "negative"],
)
def test_console_script_refuses_bad_targets_with_one_line_and_no_traceback(
    targets: str, message: str
) -> None:
    script = Path(sys.executable).parent / "rebalancer"
    scenario = f'{{"targets": {targets}, "prices": {{"AAA": 101.5, "BBB": 48.2}}, "cash": 10000}}'
    done = subprocess.run(
        [str(script), "plan", "-"], input=scenario, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == f"error: scenario.targets: {message}\n"
