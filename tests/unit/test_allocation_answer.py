"""The allocation API's answer, validated by `AllocationAnswer`: each wrong shape named in the same words."""

from __future__ import annotations

from typing import Any

import pytest

from event_processor.allocations import AllocationError, parse_allocation_response
from rebalancer_shared.config import DEFAULT_SUM_TOLERANCE


def answer(*entries: object, **data: object) -> dict[str, Any]:
    return {"status": "success", "data": {"allocations": list(entries), **data}}


def message_for(body: object) -> str:
    with pytest.raises(AllocationError) as info:
        parse_allocation_response("chan", body, DEFAULT_SUM_TOLERANCE)
    return str(info.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([{"status": "success"}], "response is not a JSON object but list"),
        ("success", "response is not a JSON object but str"),
        (None, "response is not a JSON object but NoneType"),
        ({"data": {}}, "response status is None, not 'success'"),
        ({"status": "SUCCESS", "data": {}}, "response status is 'SUCCESS', not 'success'"),
        ({"status": "error"}, "response status is 'error', not 'success'"),
        ({"status": "success"}, "response has no 'data' object"),
        ({"status": "success", "data": [1]}, "response has no 'data' object"),
        ({"status": "success", "data": {}}, "data.allocations is missing, not a list, or empty"),
        (
            {"status": "success", "data": {"allocations": {"A": 1}}},
            "data.allocations is missing, not a list, or empty",
        ),
        (answer(), "data.allocations is missing, not a list, or empty"),
        (answer({"symbol": "A", "allocation": 1}, "B"), "data.allocations[1] is not an object"),
        (answer({"allocation": 1}), "data.allocations[0].symbol is missing or empty"),
        (answer({"symbol": "  ", "allocation": 1}), "data.allocations[0].symbol is missing or empty"),
        (answer({"symbol": 7, "allocation": 1}), "data.allocations[0].symbol is missing or empty"),
        (
            answer({"symbol": "{A}", "allocation": 0.5}, {"symbol": " {A} ", "allocation": 0.5}),
            "data.allocations[1]: duplicate symbol '{A}'",
        ),
        (answer({"symbol": "A"}), "weight of 'A' is not a number: None"),
    ],
)
def test_each_wrong_shape_is_named(body: object, message: str) -> None:
    assert message_for(body) == message


def test_the_status_is_judged_before_the_data() -> None:
    assert message_for({"status": "error", "data": "nothing"}) == "response status is 'error', not 'success'"


def test_a_clean_answer_gives_stripped_symbols_and_the_strategy_as_text() -> None:
    body = answer(
        {"symbol": " AAA ", "allocation": 0.6, "note": "ignored"},
        {"symbol": "BBB", "allocation": 0.4},
        name="etf-blend",
        strategy_long_name="ETF Blend",
        last_rebalance_on=20261120,
    )

    allocation = parse_allocation_response("chan", body, DEFAULT_SUM_TOLERANCE)

    assert allocation.weights == {"AAA": 0.6, "BBB": 0.4}
    assert (allocation.channel, allocation.name, allocation.long_name) == ("chan", "etf-blend", "ETF Blend")
    assert (allocation.last_rebalance_on, allocation.as_of) == ("20261120", None)
