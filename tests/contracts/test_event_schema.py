"""Contract tests: every stored fixture of every schema version parses and round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rebalancer_shared.events import (
    KNOWN_SCHEMA_VERSIONS,
    Command,
    EventError,
    SchemaVersionError,
    parse_event,
)

FIXTURES = sorted(Path(__file__).parent.glob("v*/*.json"))


def test_there_is_a_fixture_for_every_known_schema_version() -> None:
    versions = {json.loads(p.read_text())["schema_version"] for p in FIXTURES}
    assert versions == set(KNOWN_SCHEMA_VERSIONS)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fixture_parses_and_round_trips(path: Path) -> None:
    raw = json.loads(path.read_text())
    event = parse_event(path.read_text())
    assert str(event.event_id) == raw["event_id"]
    assert event.exec_command == Command(raw["exec_command"])
    assert event.data == raw["data"]
    again = parse_event(event.to_json())
    assert again == event
    assert json.loads(again.to_json()) == json.loads(event.to_json())


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_unknown_schema_version_is_rejected_by_name(version: object) -> None:
    raw = json.loads(FIXTURES[0].read_text())
    raw["schema_version"] = version
    with pytest.raises(SchemaVersionError, match=r"schema_version .* is not supported .*known: 1"):
        parse_event(json.dumps(raw))


def test_missing_schema_version_is_rejected() -> None:
    raw = json.loads(FIXTURES[0].read_text())
    del raw["schema_version"]
    with pytest.raises(SchemaVersionError):
        parse_event(raw)


def test_unknown_field_and_bad_command_name_the_field() -> None:
    raw = json.loads(FIXTURES[0].read_text())
    with pytest.raises(EventError, match="'surprise'"):
        parse_event({**raw, "surprise": 1})
    with pytest.raises(EventError, match="'exec_command'"):
        parse_event({**raw, "exec_command": "sell-everything"})
    with pytest.raises(EventError, match="not valid JSON"):
        parse_event("{nope")


def test_naive_timestamp_is_rejected() -> None:
    raw = json.loads(FIXTURES[0].read_text())
    with pytest.raises(EventError, match="'created_at'"):
        parse_event({**raw, "created_at": "2026-11-20T14:30:00"})
