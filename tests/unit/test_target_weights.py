"""`validate_target_weights`: one rule for target weights, the same words from the processor and the CLI."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from event_processor.allocations import (
    AllocationError,
    TargetWeightsError,
    parse_allocation_response,
    validate_target_weights,
)
from rebalancer_cli.app import app
from rebalancer_shared.config import DEFAULT_SUM_TOLERANCE, AllocationSettings

PERCENTAGES = "they look like percentages; give fractions that sum to 1 (60% -> 0.6)"
PRICES = {"AAA": 101.5, "BBB": 48.2}


def message_of(weights: dict[str, object], sum_tolerance: float = DEFAULT_SUM_TOLERANCE) -> str:
    with pytest.raises(TargetWeightsError) as info:
        validate_target_weights(weights, sum_tolerance)
    assert str(info.value) == info.value.message
    return info.value.message


def allocation_answer(weights: dict[str, Any]) -> dict[str, Any]:
    allocations = [{"symbol": s, "allocation": w} for s, w in weights.items()]
    return {"status": "success", "data": {"allocations": allocations}}


def processor_message(weights: dict[str, Any]) -> str:
    tolerance = AllocationSettings().sum_tolerance
    with pytest.raises(AllocationError) as info:
        parse_allocation_response("chan", allocation_answer(weights), tolerance)
    return str(info.value)


def cli_message(weights: dict[str, Any]) -> str:
    scenario = {"targets": weights, "prices": PRICES, "cash": 10_000.0}
    result = CliRunner().invoke(app, ["plan", "-"], input=json.dumps(scenario))
    assert result.exit_code == 1
    prefix = "error: scenario.targets: "
    assert result.stderr.startswith(prefix)
    assert result.stderr.endswith("\n")
    return result.stderr.removeprefix(prefix).removesuffix("\n")


def test_valid_weights_come_back_as_floats_by_stripped_symbol() -> None:
    assert validate_target_weights({" AAA ": 1, "BBB": 0}) == {"AAA": 1.0, "BBB": 0.0}
    assert validate_target_weights({"AAA": 0.6, "BBB": 0.395}) == {"AAA": 0.6, "BBB": 0.395}


def test_the_default_tolerance_is_the_allocation_settings_default() -> None:
    assert AllocationSettings().sum_tolerance == DEFAULT_SUM_TOLERANCE
    assert validate_target_weights({"AAA": 1.0 + DEFAULT_SUM_TOLERANCE / 2}) == {"AAA": 1.005}
    assert message_of({"AAA": 0.9}) == "weights sum to 0.9000, not 1 within 0.01"


def test_a_wider_tolerance_is_obeyed_and_named() -> None:
    assert validate_target_weights({"AAA": 0.95}, sum_tolerance=0.05) == {"AAA": 0.95}
    assert message_of({"AAA": 0.9}, sum_tolerance=0.05) == "weights sum to 0.9000, not 1 within 0.05"


@pytest.mark.parametrize("weights", [{"AAA": 0.6, "BBB": 0.41}, {"AAA": 0.6, "BBB": 0.39}, {"AAA": 0.99}])
def test_a_sum_exactly_at_the_tolerance_counts_as_within_it(weights: dict[str, object]) -> None:
    assert validate_target_weights(weights) == weights
    assert message_of({"AAA": 0.6, "BBB": 0.4101}) == "weights sum to 1.0101, not 1 within 0.01"


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"AAA": 60, "BBB": 40}, f"weights sum to 100.0000: {PERCENTAGES}"),
        ({"AAA": 59.5, "BBB": 40}, f"weights sum to 99.5000: {PERCENTAGES}"),
        ({f"S{i}": 1.0 for i in range(100)}, f"weights sum to 100.0000: {PERCENTAGES}"),
        ({"AAA": 0.5, "BBB": 5}, f"weights sum to 5.5000: {PERCENTAGES}"),
        ({f"S{i}": 1.0 for i in range(150)}, "weights sum to 150.0000, not 1 within 0.01"),
        ({"AAA": 0.6, "BBB": 0.6}, "weights sum to 1.2000, not 1 within 0.01"),
        ({"AAA": 0.0}, "weights sum to 0.0000, not 1 within 0.01"),
    ],
    ids=["60-40", "near-100", "100-ones", "one-above-1", "150-ones", "sum-1.2", "all-zero"],
)
def test_percentages_are_named_as_such_and_other_sums_are_not(
    weights: dict[str, object], message: str
) -> None:
    assert message_of(weights) == message


BAD_WEIGHTS: list[tuple[dict[str, Any], str]] = [
    ({"AAA": 0.5, "BBB": 0.4}, "weights sum to 0.9000, not 1 within 0.01"),
    ({"AAA": 60, "BBB": 40}, f"weights sum to 100.0000: {PERCENTAGES}"),
    ({"AAA": 1.5}, f"weights sum to 1.5000: {PERCENTAGES}"),
    ({"AAA": float("nan"), "BBB": 1.0}, "weight of 'AAA' is not finite: nan"),
    ({"AAA": float("-inf")}, "weight of 'AAA' is not finite: -inf"),
    ({"AAA": 1.1, "BBB": -0.1}, "weight of 'BBB' is negative: -0.1"),
    ({"AAA": True}, "weight of 'AAA' is not a number: True"),
    ({"AAA": "1"}, "weight of 'AAA' is not a number: '1'"),
    ({"AAA": None}, "weight of 'AAA' is not a number: None"),
]


@pytest.mark.parametrize(("weights", "message"), BAD_WEIGHTS, ids=[m for _, m in BAD_WEIGHTS])
def test_the_same_bad_weights_give_the_same_message_to_the_processor_and_the_cli(
    weights: dict[str, Any], message: str
) -> None:
    assert message_of(weights) == message
    assert processor_message(weights) == message
    assert cli_message(weights) == message


def test_duplicate_symbols_are_refused_with_the_allocation_parser_words() -> None:
    assert message_of({" AAA": 0.5, "AAA": 0.5}) == "duplicate symbol 'AAA'"
    with pytest.raises(AllocationError, match=r"^data.allocations\[1\]: duplicate symbol 'AAA'$"):
        parse_allocation_response(
            "chan",
            {"status": "success", "data": {"allocations": [{"symbol": "AAA", "allocation": 0.5}] * 2}},
            DEFAULT_SUM_TOLERANCE,
        )


def test_empty_symbols_and_no_weights_are_refused() -> None:
    assert message_of({" ": 1.0}) == "symbol ' ' is empty or not a string"
    assert message_of({}) == "no target weights: give at least one symbol and its weight"
