"""The event broker's pure intake mapping: one Ably message and the accounts following its channel -> events.

No I/O and no logging: the relay logs what this returns. The payload decides the command through
`rebalancer_shared.triggers.decide_trigger` (only `{"exec": "rebalance"}` trades; everything else it
cannot read becomes a dry run with a note). Every account that follows the message's channel gets
one event carrying the Ably message id; an account that follows another channel gets none.

An event's id is derived from the Ably message id and the account (`event_id_for`), so the same
message delivered or submitted twice makes the same events, which the queue recognises.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from rebalancer_shared.accounts import Account
from rebalancer_shared.events import Event, EventSource
from rebalancer_shared.triggers import TriggerDecision, decide_trigger


@dataclass(frozen=True)
class ReceivedMessage:
    """An Ably message as the subscriber hands it over: its channel, name, decoded data and id."""

    channel: str
    name: str | None
    data: object
    message_id: str | None
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class RejectedAccount:
    """An account that follows the channel but for which no valid event could be built."""

    account_id: str
    reason: str


@dataclass(frozen=True)
class MessageIntake:
    """What one message becomes: the decision on its payload and one event per following account."""

    decision: TriggerDecision
    events: tuple[Event, ...]
    rejected: tuple[RejectedAccount, ...] = ()

    @property
    def followed(self) -> bool:
        """False when no account follows the message's channel (the message is dropped)."""
        return bool(self.events or self.rejected)


# The namespace of event ids derived from Ably message ids (uuid5): fixed forever.
ABLY_EVENT_NAMESPACE = uuid.UUID("5b0e4c8e-3f64-4b5e-9d3a-0c6f4d1e2a77")


def event_id_for(message_id: str, account_id: str) -> uuid.UUID:
    """The id of the event one Ably message makes for one account: the same every time."""
    return uuid.uuid5(ABLY_EVENT_NAMESPACE, f"{message_id}\n{account_id}")


def _event_for(
    account: Account, message: ReceivedMessage, decision: TriggerDecision, created_at: datetime | None
) -> Event:
    fields: dict[str, object] = {
        "account_id": account.account_id,
        "exec_command": decision.command,
        "data": decision.data,
        "source": EventSource.ABLY,
        "ably_message_id": message.message_id,
    }
    if created_at is not None:
        fields["created_at"] = created_at
    if message.message_id is not None:
        fields["event_id"] = event_id_for(message.message_id, account.account_id)
    return Event.model_validate(fields)


def events_for_message(
    message: ReceivedMessage, accounts: Iterable[Account], created_at: datetime | None = None
) -> MessageIntake:
    """Map a message to one event per account on its channel (accounts on other channels are skipped)."""
    decision = decide_trigger(message.data)
    events: list[Event] = []
    rejected: list[RejectedAccount] = []
    for account in accounts:
        if account.channel != message.channel:
            continue
        try:
            events.append(_event_for(account, message, decision, created_at))
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "event"
            rejected.append(RejectedAccount(account.account_id, f"{field}: {first['msg']}"))
    return MessageIntake(decision=decision, events=tuple(events), rejected=tuple(rejected))
