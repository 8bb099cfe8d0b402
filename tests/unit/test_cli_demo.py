"""`rebalancer demo` without running the story: its accounts, its API key, and a busy port."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from rebalancer_cli.app import app
from rebalancer_cli.demo.run import DemoApiKey, port_free
from rebalancer_cli.demo.world import (
    ACCOUNT_IDS,
    BROKEN_ACCOUNT_ID,
    BROKEN_CHANNEL,
    CHANNEL,
    DATA,
    PROCESSING,
    demo_accounts,
)
from rebalancer_cli.demo_command import busy_port_message


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def test_the_demo_serves_the_readme_accounts_on_one_channel_and_a_broken_one_apart() -> None:
    accounts = demo_accounts()
    assert ACCOUNT_IDS == ("DU123456", "DU789012")  # the ids of accounts.yaml and the README
    assert {a: accounts[a].channel for a in accounts} == {
        "DU123456": CHANNEL,
        "DU789012": CHANNEL,
        BROKEN_ACCOUNT_ID: BROKEN_CHANNEL,
    }
    simulated = json.loads((DATA / "simulated_accounts.json").read_text(encoding="utf-8"))
    assert set(simulated["accounts"]) == set(accounts)


def test_the_broken_strategy_sums_to_0_9_and_waits_long_enough_to_be_removed() -> None:
    responses = json.loads((DATA / "allocations.json").read_text(encoding="utf-8"))
    weights = [row["allocation"] for row in responses[BROKEN_CHANNEL]["data"]["allocations"]]
    assert sum(weights) == pytest.approx(0.9)
    assert PROCESSING.retry_delay_seconds >= 30


def test_without_a_key_in_the_environment_the_demo_makes_one_and_prints_its_export_line() -> None:
    for environ in ({}, {"MANAGEMENT_API_KEY": ""}, {"MANAGEMENT_API_KEY": "  "}):
        key = DemoApiKey.from_environment(environ)
        assert key.generated
        assert len(key.value) >= 16
        assert key.announcement() == f"export MANAGEMENT_API_KEY={key.value}"
    assert DemoApiKey.from_environment({}).value != DemoApiKey.from_environment({}).value


def test_a_key_in_the_environment_is_used_and_not_printed() -> None:
    key = DemoApiKey.from_environment({"MANAGEMENT_API_KEY": "my-own-key-123"})
    assert (key.value, key.generated) == ("my-own-key-123", False)
    assert "my-own-key-123" not in key.announcement()
    assert "environment" in key.announcement()


def test_a_busy_port_suggests_a_free_one_with_commands_that_need_no_uv(busy_port: int) -> None:
    result = CliRunner().invoke(app, ["demo", "--port", str(busy_port)])
    assert result.exit_code == 2
    assert f"port {busy_port} on 127.0.0.1 is in use" in result.stderr
    suggested = re.search(r"port (\d+) is free", result.stderr)
    assert suggested is not None
    free = int(suggested.group(1))
    assert free != busy_port
    assert port_free("127.0.0.1", free)
    assert f"make demo PORT={free}\n" in result.stderr
    assert f"./rebalancer demo --port {free}" in result.stderr
    assert not re.search(r"\buv\b", result.stderr)


def test_a_busy_port_on_another_host_keeps_the_host_in_both_commands(busy_port: int) -> None:
    message = busy_port_message("0.0.0.0", busy_port)
    assert re.search(r"make demo HOST=0\.0\.0\.0 PORT=\d+\n", message)
    assert re.search(r"\./rebalancer demo --host 0\.0\.0\.0 --port \d+$", message)
