"""The event: one trigger for one account, as every service reads and writes it (schema version 1).

The shape is a contract between processes that may run different releases, so it is versioned:
any change of shape bumps `SCHEMA_VERSION`, readers accept every version in `KNOWN_SCHEMA_VERSIONS`
and reject others with `SchemaVersionError`. Fixtures of every version live in tests/contracts/.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from rebalancer_shared.errors import RebalancerError

SCHEMA_VERSION = 1
KNOWN_SCHEMA_VERSIONS = frozenset({1})


class Command(StrEnum):
    """What an event asks the processor to do (the `exec` value of a trigger)."""

    REBALANCE = "rebalance"
    PRINT_REBALANCE = "print-rebalance"
    PRINT_POSITIONS = "print-positions"
    PRINT_EQUITY = "print-equity"
    PRINT_ORDERS = "print-orders"
    CANCEL_ORDERS = "cancel-orders"

    @property
    def is_mutating(self) -> bool:
        """True for commands that change the account; one of these runs per account at a time."""
        return self in MUTATING_COMMANDS

    @property
    def places_orders(self) -> bool:
        """True only for the command that trades (a live rebalance needs the live guard's consent)."""
        return self is Command.REBALANCE

    @property
    def execution_mode(self) -> ExecutionMode:
        """The one definition of live: a command that acts on the account at the broker."""
        return ExecutionMode.LIVE if self.is_mutating else ExecutionMode.DRY_RUN


class ExecutionMode(StrEnum):
    """`live`: the command places or cancels orders; `dry_run`: it only reads the account."""

    LIVE = "live"
    DRY_RUN = "dry_run"


MUTATING_COMMANDS = frozenset({Command.REBALANCE, Command.CANCEL_ORDERS})


class EventSource(StrEnum):
    """Where an event came from."""

    ABLY = "ably"
    API = "api"
    CLI = "cli"
    RECOVERY = "recovery"


class EventError(RebalancerError):
    """An event document cannot be read."""


class SchemaVersionError(EventError):
    """An event carries a schema_version this release does not know."""


def dedup_key(account_id: str, command: Command | str) -> str:
    """The key under which at most one live event may exist: `account_id:exec_command`."""
    return f"{account_id}:{Command(command).value}"


def _now() -> datetime:
    return datetime.now(UTC)


# What an IB account id may hold (letters, digits, "_", ".", "-"), at most 64 characters.
ACCOUNT_ID_PATTERN = r"^[A-Za-z0-9_.-]+$"


class Event(BaseModel):
    """One trigger for one account. Immutable; the queue tracks `times_queued` beside it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    account_id: str = Field(min_length=1, max_length=64, pattern=ACCOUNT_ID_PATTERN)
    exec_command: Command
    data: dict[str, Any] = Field(default_factory=dict)
    source: EventSource
    created_at: AwareDatetime = Field(default_factory=_now)
    times_queued: int = Field(default=1, ge=1)
    ably_message_id: str | None = None

    @property
    def dedup_key(self) -> str:
        """`account_id:exec_command`: at most one live event per key."""
        return dedup_key(self.account_id, self.exec_command)

    def to_json(self) -> str:
        """The wire form (compact JSON)."""
        return self.model_dump_json()


def _check_version(raw: dict[str, Any]) -> None:
    version = raw.get("schema_version")
    if version not in KNOWN_SCHEMA_VERSIONS:
        known = ", ".join(str(v) for v in sorted(KNOWN_SCHEMA_VERSIONS))
        raise SchemaVersionError(
            f"event schema_version {version!r} is not supported by this release (known: {known})"
        )


def parse_event(raw: str | bytes | dict[str, Any]) -> Event:
    """Read an event of any known schema version; raise `EventError` naming what is wrong."""
    doc: object = raw
    if isinstance(raw, str | bytes):
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise EventError(f"event is not valid JSON: {exc.msg} at position {exc.pos}") from exc
    if not isinstance(doc, dict):
        raise EventError(f"event must be a JSON object, got {type(doc).__name__}")
    _check_version(doc)
    try:
        return Event.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "event"
        raise EventError(f"event field {field!r}: {first['msg']}") from exc
