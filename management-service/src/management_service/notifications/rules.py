"""Which outcomes a transition is, as plain data: the pure core of the notifier's intake.

One transition is at most one message per target (its key is `transition:<seq>`), even when it is
two outcomes (a live rebalance that completed is `completed` and `traded`): the message is the most
specific one the target asked for. A run that succeeded while a trigger for the same account and
command arrived ends in `rerun` (the event runs once more) instead of `completed`: the run that
traded is reported all the same.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from rebalancer_shared.events import Command, ExecutionMode
from rebalancer_shared.notification_targets import NotifyOn
from rebalancer_shared.store import Transition

# Most specific first: the kind a message is written as, when a target wants several.
_OUTCOMES: dict[Transition, tuple[NotifyOn, ...]] = {
    Transition.RETRYING: (NotifyOn.FAILED,),
    Transition.NEEDS_ATTENTION: (NotifyOn.NEEDS_ATTENTION,),
    Transition.SCHEDULED: (NotifyOn.SCHEDULED,),
}
# A run that succeeded: `completed`, or `rerun` when a trigger arrived meanwhile.
_SUCCEEDED = frozenset({Transition.COMPLETED, Transition.RERUN})
# The transitions that can be an outcome: what history_writes flags for the notifier (NOTIFIABLE).
NOTIFIED = frozenset(_OUTCOMES) | _SUCCEEDED


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


def outcomes_of(state: Transition, command: Command | None) -> tuple[NotifyOn, ...]:
    """The outcomes a transition of `state` is for `command`, most specific first (none for most)."""
    if state in _SUCCEEDED:
        traded = (NotifyOn.TRADED,) if command is Command.REBALANCE else ()
        return (*traded, NotifyOn.COMPLETED)
    return _OUTCOMES.get(state, ())


def outcomes(facts: TransitionFacts) -> tuple[NotifyOn, ...]:
    """The outcomes this transition is, most specific first (none for most transitions)."""
    return outcomes_of(facts.state, facts.command)


# A failure repeated by the same event (a retry every 30 s) is sent again at most this often.
REPEAT_FAILURE_AFTER = timedelta(hours=1)


def failure_is_news(facts: TransitionFacts, last_class: str | None, last_at: datetime | None) -> bool:
    """Whether a failure is worth a message, given the event's last failure that was sent (its
    class and time; None: none was): the first of a streak, a change of class, or an hour later.
    Both times are the history's (Redis TIME), so no two clocks are compared."""
    if last_at is None or last_class != facts.failure_class:
        return True
    return facts.at - last_at >= REPEAT_FAILURE_AFTER
