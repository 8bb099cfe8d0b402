"""The broker's pure intake mapping: one Ably message + the accounts on its channel -> events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from event_broker.intake import ReceivedMessage, events_for_message
from rebalancer_shared.accounts import Account, RebalancingSettings
from rebalancer_shared.events import Command, EventSource


def account(account_id: str, channel: str = "strategy-a") -> Account:
    return Account(account_id=account_id, channel=channel, settings=RebalancingSettings())


def message(data: object, channel: str = "strategy-a", message_id: str | None = "msg-1:0") -> ReceivedMessage:
    return ReceivedMessage(channel=channel, name="trigger", data=data, message_id=message_id)


def test_rebalance_payload_becomes_one_live_event_per_account_on_the_channel() -> None:
    intake = events_for_message(message({"exec": "rebalance"}), [account("DU1"), account("DU2")])

    assert [(e.account_id, e.exec_command) for e in intake.events] == [
        ("DU1", Command.REBALANCE),
        ("DU2", Command.REBALANCE),
    ]
    assert all(e.source is EventSource.ABLY for e in intake.events)
    assert all(e.ably_message_id == "msg-1:0" for e in intake.events)
    assert all(e.data == {"exec": "rebalance"} for e in intake.events)
    assert len({e.event_id for e in intake.events}) == 2
    assert intake.decision.note is None
    assert intake.followed


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({}, id="empty-object"),
        pytest.param({"exec": "dry_run"}, id="dry_run"),
        pytest.param({"exec": "liquidate-everything"}, id="unknown-command"),
        pytest.param({"exec": 1}, id="non-string-exec"),
        pytest.param('"rebalance"', id="json-string"),
        pytest.param("rebalance", id="plain-text"),
        pytest.param('{"exec": rebalance', id="not-json"),
        pytest.param(None, id="no-data"),
        pytest.param("", id="empty-text"),
        pytest.param(b"\x00\xff", id="binary"),
        pytest.param(["rebalance"], id="json-array"),
    ],
)
def test_anything_but_exactly_rebalance_becomes_a_dry_run_with_a_note(payload: object) -> None:
    intake = events_for_message(message(payload), [account("DU1")])

    [event] = intake.events
    assert event.exec_command is Command.PRINT_REBALANCE
    assert intake.decision.note


def test_a_payload_naming_another_command_gets_that_command() -> None:
    intake = events_for_message(message({"exec": "print-positions", "extra": 1}), [account("DU1")])

    [event] = intake.events
    assert event.exec_command is Command.PRINT_POSITIONS
    assert event.data == {"exec": "print-positions", "extra": 1}


def test_json_text_holding_an_object_is_read_as_that_object() -> None:
    intake = events_for_message(message('{"exec": "rebalance"}'), [account("DU1")])

    assert [e.exec_command for e in intake.events] == [Command.REBALANCE]
    assert intake.events[0].data == {"exec": "rebalance"}


def test_non_object_payload_is_recorded_as_an_empty_object() -> None:
    [event] = events_for_message(message("not json"), [account("DU1")]).events

    assert event.data == {}


def test_accounts_of_another_channel_get_no_event() -> None:
    accounts = [account("DU1", "strategy-a"), account("DU2", "strategy-b"), account("DU3", "strategy-a")]

    intake = events_for_message(message({"exec": "rebalance"}, channel="strategy-a"), accounts)

    assert [e.account_id for e in intake.events] == ["DU1", "DU3"]


def test_message_on_a_channel_nobody_follows_gives_no_event_and_is_marked_unfollowed() -> None:
    intake = events_for_message(message({"exec": "rebalance"}, channel="nobody"), [account("DU1")])

    assert intake.events == ()
    assert not intake.followed


def test_message_with_no_accounts_at_all_is_unfollowed() -> None:
    assert not events_for_message(message({"exec": "rebalance"}), []).followed


def test_account_that_cannot_be_an_event_is_rejected_and_the_others_still_get_theirs() -> None:
    intake = events_for_message(message({"exec": "rebalance"}), [account("bad id!"), account("DU2")])

    assert [e.account_id for e in intake.events] == ["DU2"]
    [rejected] = intake.rejected
    assert rejected.account_id == "bad id!"
    assert "account_id" in rejected.reason
    assert intake.followed


def test_message_without_id_still_maps_with_no_ably_message_id() -> None:
    [event] = events_for_message(message({}, message_id=None), [account("DU1")]).events

    assert event.ably_message_id is None


def test_created_at_is_taken_when_given() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    [event] = events_for_message(message({}), [account("DU1")], created_at=moment).events

    assert event.created_at == moment
