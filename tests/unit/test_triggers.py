"""The pure intake mapping: only {"exec": "rebalance"} trades; everything else is a dry run."""

from __future__ import annotations

import pytest

from rebalancer_shared.events import Command, Event, EventSource, dedup_key
from rebalancer_shared.triggers import decide_trigger


def test_only_exact_rebalance_value_trades() -> None:
    decision = decide_trigger({"exec": "rebalance"})
    assert decision.command is Command.REBALANCE
    assert decision.note is None
    assert decision.data == {"exec": "rebalance"}


@pytest.mark.parametrize(
    ("payload", "note_part"),
    [
        ({}, "no exec value"),
        ({"exec": "dry_run"}, "'dry_run' is not a command"),
        ({"exec": "REBALANCE"}, "'REBALANCE' is not a command"),
        ({"exec": "rebalance "}, "is not a command"),
        ({"exec": True}, "not a string"),
        ({"exec": ["rebalance"]}, "not a string"),
        (None, "empty payload"),
        ("", "empty payload"),
        ("not json at all", "not JSON"),
        ('["rebalance"]', "JSON list, not an object"),
        ('"rebalance"', "JSON str, not an object"),
        (42, "int is not a JSON object"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_anything_else_is_a_dry_run_with_a_reason(payload: object, note_part: str) -> None:
    decision = decide_trigger(payload)
    assert decision.command is Command.PRINT_REBALANCE
    assert decision.note is not None
    assert note_part in decision.note


def test_json_string_payload_is_decoded() -> None:
    decision = decide_trigger('{"exec": "rebalance", "x": 1}')
    assert decision.command is Command.REBALANCE
    assert decision.data == {"exec": "rebalance", "x": 1}


@pytest.mark.parametrize("command", [c for c in Command if c is not Command.REBALANCE])
def test_named_read_commands_map_to_themselves(command: Command) -> None:
    assert decide_trigger({"exec": command.value}).command is command


def test_dedup_key_is_account_and_command() -> None:
    event = Event(account_id="DU1", exec_command=Command.REBALANCE, source=EventSource.API)
    assert event.dedup_key == "DU1:rebalance" == dedup_key("DU1", "rebalance")


def test_only_rebalance_and_cancel_orders_are_mutating() -> None:
    assert {c for c in Command if c.is_mutating} == {Command.REBALANCE, Command.CANCEL_ORDERS}
    assert {c for c in Command if c.places_orders} == {Command.REBALANCE}
    assert {c for c in Command if c.execution_mode == "live"} == {Command.REBALANCE, Command.CANCEL_ORDERS}


def test_values_postgresql_cannot_store_are_replaced_and_noted() -> None:
    decision = decide_trigger({"exec": "rebalance", "note": "a\x00b", "x": float("nan"), "k\x00": ["\ud800"]})
    assert decision.command is Command.REBALANCE
    assert decision.data == {"exec": "rebalance", "note": "a\ufffdb", "x": None, "k\ufffd": ["\ufffd"]}
    assert decision.note is not None
    assert "replaced" in decision.note
    json_string = decide_trigger('{"exec": "rebalance", "v": NaN}')
    assert json_string.data == {"exec": "rebalance", "v": None}
