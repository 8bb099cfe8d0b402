"""The allocation client against a real HTTP server on 127.0.0.1: every bad answer is named."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from event_processor.allocations import AllocationClient, AllocationError
from rebalancer_cli.scenario import ScenarioError, parse_scenario
from rebalancer_shared.config import AllocationSettings
from rebalancer_shared.transient import is_transient
from tests.fakes.allocations import AllocationServer, allocation_body

GOOD = {"EDC": 0.2141, "QLD": 0.1779, "QQQ": 0.141, "BTAL": 0.2817, "SPXL": 0.0378, "TQQQ": 0.1475}


@pytest.fixture
def api() -> Iterator[AllocationServer]:
    with AllocationServer() as server:
        yield server


def client_for(api: AllocationServer, **overrides: object) -> AllocationClient:
    values: dict[str, object] = {
        "base_url": api.base_url,
        "api_key": SecretStr("alloc-key-123"),
        "timeout_seconds": 0.5,
        "attempts": 2,
        "retry_delay_seconds": 0.01,
        **overrides,
    }
    return AllocationClient(AllocationSettings.model_validate(values))


async def test_good_response_gives_the_weights_and_sends_the_key(api: AllocationServer) -> None:
    api.set_weights("etf-blend-301-20", GOOD)
    client = client_for(api)
    try:
        allocation = await client.fetch("etf-blend-301-20")
    finally:
        await client.aclose()
    assert allocation.weights == GOOD
    assert allocation.name == "test-strategy"
    assert api.requests[-1].path == "/api/v1/etf-blend-301-20/allocations"
    assert api.requests[-1].headers["x-api-key"] == "alloc-key-123"


async def test_the_key_header_name_is_configurable(api: AllocationServer) -> None:
    api.set_weights("c", {"A": 1.0})
    client = client_for(api, api_key_header="authorization-token")
    try:
        await client.fetch("c")
    finally:
        await client.aclose()
    assert api.requests[-1].headers["authorization-token"] == "alloc-key-123"


def bad_weights(*pairs: tuple[str, object]) -> dict[str, object]:
    body = allocation_body({})
    body["data"]["allocations"] = [{"symbol": s, "allocation": w} for s, w in pairs]
    return body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"status": "error", "data": {}}, "status is 'error', not 'success'"),
        ({"data": {"allocations": []}}, "status is None"),
        ({"status": "success"}, "no 'data' object"),
        (
            {"status": "success", "data": {"allocations": []}},
            "data.allocations is missing, not a list, or empty",
        ),
        (bad_weights(("A", 0.5), ("B", -0.1), ("C", 0.6)), "^weight of 'B' is negative: -0.1$"),
        (bad_weights(("A", 0.5), ("B", float("nan"))), "^weight of 'B' is not finite: nan$"),
        (bad_weights(("A", 0.5), ("A", 0.5)), "duplicate symbol 'A'"),
        (bad_weights(("A", 0.5), ("B", 0.4)), "^weights sum to 0.9000, not 1 within 0.01$"),
        (bad_weights(("A", 60), ("B", 40)), "^weights sum to 100.0000: they look like percentages"),
        (bad_weights(("A", 0.5), ("", 0.5)), r"data.allocations\[1\].symbol is missing"),
        (bad_weights(("A", "0.5"), ("B", 0.5)), "^weight of 'A' is not a number: '0.5'$"),
        (bad_weights(("A", True)), "^weight of 'A' is not a number: True$"),
        ([1, 2], "not a JSON object"),
    ],
)
async def test_bad_response_is_an_error_that_names_the_problem(
    api: AllocationServer, body: object, message: str
) -> None:
    api.set_json("c", body)
    client = client_for(api)
    try:
        with pytest.raises(AllocationError, match=message):
            await client.fetch("c")
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    "weights",
    [
        {"A": 0.5, "B": 0.4},
        {"A": 60, "B": 40},
        {"A": float("nan"), "B": 1.0},
        {"A": 1.2, "B": -0.2},
    ],
    ids=["sum-0.9", "percentages", "nan", "negative"],
)
async def test_bad_weights_give_the_message_rebalancer_plan_gives(
    api: AllocationServer, weights: dict[str, float]
) -> None:
    api.set_json("c", allocation_body(weights))
    client = client_for(api)
    try:
        with pytest.raises(AllocationError) as info:
            await client.fetch("c")
    finally:
        await client.aclose()
    scenario = {"targets": weights, "prices": {"A": 10.0, "B": 20.0}, "cash": 1_000.0}
    with pytest.raises(ScenarioError) as cli:
        parse_scenario(json.loads(json.dumps(scenario)), "scenario")
    assert cli.value.location == "scenario.targets"
    assert str(info.value) == cli.value.message


@pytest.mark.parametrize(
    ("status", "raw", "delay", "message"),
    [
        (500, b"{}", 0.0, "HTTP 500"),
        (200, b"{not json", 0.0, "not valid JSON"),
        (200, b"{}", 1.0, "timed out"),
        (404, b"{}", 0.0, "HTTP 404"),
    ],
)
async def test_transport_failures_are_errors(
    api: AllocationServer, status: int, raw: bytes, delay: float, message: str
) -> None:
    api.set_raw("c", raw, status=status, delay=delay)
    client = client_for(api)
    try:
        with pytest.raises(AllocationError, match=message):
            await client.fetch("c")
    finally:
        await client.aclose()


async def test_server_errors_are_retried_a_few_times_then_fail(api: AllocationServer) -> None:
    api.set_raw("c", b"{}", status=503)
    client = client_for(api, attempts=3)
    try:
        with pytest.raises(AllocationError, match="HTTP 503"):
            await client.fetch("c")
    finally:
        await client.aclose()
    assert len(api.requests) == 3
    api.requests.clear()
    api.set_raw("c", b"{}", status=400)
    client = client_for(api, attempts=3)
    try:
        with pytest.raises(AllocationError, match="HTTP 400"):
            await client.fetch("c")
    finally:
        await client.aclose()
    assert len(api.requests) == 1, "a client error is not retried at once"


@pytest.mark.parametrize(
    ("status", "transient"), [(503, True), (500, True), (429, True), (404, False), (401, False)]
)
async def test_the_client_retries_exactly_what_the_shared_rule_calls_transient(
    api: AllocationServer, status: int, transient: bool
) -> None:
    api.set_raw("c", b"{}", status=status)
    client = client_for(api, attempts=3)
    try:
        with pytest.raises(AllocationError, match=f"HTTP {status}$") as info:
            await client.fetch("c")
    finally:
        await client.aclose()
    assert is_transient(info.value) is transient  # so the worker would classify it the same way
    assert len(api.requests) == (3 if transient else 1)


async def test_unreachable_api_is_an_error(api: AllocationServer) -> None:
    client = AllocationClient(
        AllocationSettings(base_url="http://127.0.0.1:1/api", attempts=1, timeout_seconds=1)
    )
    try:
        with pytest.raises(AllocationError, match="ConnectError") as info:
            await client.fetch("c")
    finally:
        await client.aclose()
    assert is_transient(info.value)


async def test_the_key_never_appears_in_the_error(api: AllocationServer) -> None:
    api.set_raw("c", b"{}", status=401)
    client = client_for(api)
    try:
        with pytest.raises(AllocationError) as info:
            await client.fetch("c")
    finally:
        await client.aclose()
    assert "alloc-key-123" not in str(info.value)
