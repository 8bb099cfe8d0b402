"""Small factories for queue tests."""

from __future__ import annotations

from rebalancer_shared.events import Command, Event, EventSource


def make_event(account: str = "DU1", command: Command = Command.PRINT_REBALANCE, **extra: object) -> Event:
    return Event(account_id=account, exec_command=command, source=EventSource.API, **extra)  # type: ignore[arg-type]
