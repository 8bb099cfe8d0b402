"""Which outcomes a transition is, as plain data: the pure core of the notifier's intake.

One transition is at most one message per target (its key is `transition:<seq>`), even when it is
two outcomes (a live rebalance that completed is `completed` and `traded`): the message is the most
specific one the target asked for.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from rebalancer_shared.events import Command, ExecutionMode
from rebalancer_shared.notification_targets import NotifyOn
from rebalancer_shared.store import Transition

# Most specific first: the kind a message is written as, when a target wants several.
_OUTCOMES: dict[Transition, tuple[NotifyOn, ...]] = {
    Transition.RETRYING: (NotifyOn.FAILED,),
    Transition.NEEDS_ATTENTION: (NotifyOn.NEEDS_ATTENTION,),
    Transition.SCHEDULED: (NotifyOn.SCHEDULED,),
}


@dataclass(frozen=True)
class TransitionFacts:
    """A transition as the history holds it, with its event's account and command."""

    row_id: int
    seq: int | None
    event_id: uuid.UUID
    account_id: str
    command: Command
    state: Transition
    times_queued: int
    detail: str | None
    failure_class: str | None
    due_at: datetime | None
    at: datetime

    @property
    def key(self) -> str:
        """The dedup key of its messages: the outbox entry it came from (unique in the history)."""
        return f"transition:{self.seq}" if self.seq is not None else f"transition-row:{self.row_id}"

    @property
    def live(self) -> bool:
        """A command that acts on the account (rebalance, cancel-orders); the rest are dry runs."""
        return self.command.execution_mode is ExecutionMode.LIVE


def outcomes(facts: TransitionFacts) -> tuple[NotifyOn, ...]:
    """The outcomes this transition is, most specific first (none for most transitions)."""
    if facts.state is Transition.COMPLETED:
        traded = (NotifyOn.TRADED,) if facts.command is Command.REBALANCE else ()
        return (*traded, NotifyOn.COMPLETED)
    return _OUTCOMES.get(facts.state, ())
