"""What the history holds, as plain values: event statuses, transitions, run statuses, and the records
written for runs, orders and transitions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from rebalancer_shared.events import Event


class EventStatus(StrEnum):
    """The state an event's row records; all but the last two are unfinished."""

    QUEUED = "queued"
    PROCESSING = "processing"
    RETRYING = "retrying"
    SCHEDULED = "scheduled"
    NEEDS_ATTENTION = "needs_attention"
    COMPLETED = "completed"
    REMOVED = "removed"


UNFINISHED = (
    EventStatus.QUEUED,
    EventStatus.PROCESSING,
    EventStatus.RETRYING,
    EventStatus.SCHEDULED,
    EventStatus.NEEDS_ATTENTION,
)
# The statuses of an event waiting for its due time; their transitions carry a failure class.
WAITING = (EventStatus.RETRYING, EventStatus.SCHEDULED, EventStatus.NEEDS_ATTENTION)
FINISHED = (EventStatus.COMPLETED, EventStatus.REMOVED)


class Transition(StrEnum):
    """Every kind of change an event's history records (statuses plus the ones that keep it).

    `DUPLICATE` and `COALESCED` are notes: a trigger that met the live event, which keeps its state.
    `REQUEUED` is a lease that expired (the worker died) or a release at shutdown; `RECOVERED` an
    event put back from PostgreSQL after Redis lost it; `SUPERSEDED` one that Redis lost while
    another event of its key was already live, so it ends there.
    """

    QUEUED = "queued"
    REQUEUED = "requeued"
    PROCESSING = "processing"
    RETRYING = "retrying"
    SCHEDULED = "scheduled"
    NEEDS_ATTENTION = "needs_attention"
    COMPLETED = "completed"
    REMOVED = "removed"
    DUPLICATE = "duplicate"
    COALESCED = "coalesced"
    RERUN = "rerun"
    RECOVERED = "recovered"
    SUPERSEDED = "superseded"


STATUS_AFTER: dict[Transition, EventStatus] = {
    Transition.QUEUED: EventStatus.QUEUED,
    Transition.REQUEUED: EventStatus.QUEUED,
    Transition.PROCESSING: EventStatus.PROCESSING,
    Transition.RETRYING: EventStatus.RETRYING,
    Transition.SCHEDULED: EventStatus.SCHEDULED,
    Transition.NEEDS_ATTENTION: EventStatus.NEEDS_ATTENTION,
    Transition.COMPLETED: EventStatus.COMPLETED,
    Transition.REMOVED: EventStatus.REMOVED,
    Transition.RERUN: EventStatus.QUEUED,
    Transition.RECOVERED: EventStatus.QUEUED,
    Transition.SUPERSEDED: EventStatus.REMOVED,
}


# The transitions a notification can be about (management_service.notifications.rules): only their
# rows are written with `notification_pending` set, so the notifier never touches the others.
NOTIFIABLE = frozenset(
    {
        Transition.COMPLETED,
        Transition.RERUN,
        Transition.RETRYING,
        Transition.NEEDS_ATTENTION,
        Transition.SCHEDULED,
    }
)


class RunStatus(StrEnum):
    """How a run (one attempt of a command) ended, or that it is still going.

    `INTERRUPTED`: it did not end by itself (killed, cancelled at shutdown, its lease lost) and no
    order of it was left in an unknown state; `UNKNOWN`: the same, but some order's outcome could not
    be read (it may have filled after the run stopped watching). The next live run of the event
    settles such orders from the day's executions (event_processor.order_settlement): an `UNKNOWN`
    run with no order left open then becomes `INTERRUPTED`. A run is never left `RUNNING`.
    """

    RUNNING = "running"
    SUCCESS = "success"
    PARTIAL = "partial"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    UNKNOWN = "unknown"


# Order statuses after which nothing more happens to the order at the broker.
FINAL_ORDER_STATUSES = ("Filled", "Cancelled", "ApiCancelled", "Inactive")
INTENT = "intent"  # written before the order is sent: the broker may or may not have it


@dataclass(frozen=True)
class HistoryRecord:
    """One outbox entry: a transition of an event, as the queue step that made it recorded it.

    `seq` orders entries (the stream id as a number); runs of the event with an attempt below
    `close_runs_below` that are still `running` cannot be (the event moved on) and are closed.
    """

    seq: int
    event_id: uuid.UUID
    transition: Transition
    times_queued: int
    detail: str | None
    event: Event | None
    close_runs_below: int
    at: datetime
    failure_class: str | None = None  # of a transition into a waiting state
    due_at: datetime | None = None  # when that waiting event is due


@dataclass(frozen=True)
class OrderRecord:
    """One order of a run, as the broker reported it (or as intended, before it was sent)."""

    symbol: str
    action: str
    quantity: float
    order_type: str
    order_ref: str
    status: str
    filled_quantity: float = 0.0
    avg_fill_price: float | None = None
    limit_price: float | None = None
    broker_order_id: int | None = None
    perm_id: int | None = None
    seq: int | None = None
    message: str | None = None  # the broker's rejection or error, e.g. "IB error 201: Order rejected - ..."


@dataclass(frozen=True)
class RunRecord:
    """One run (attempt) of an event's command and its result."""

    event_id: uuid.UUID
    attempt: int
    account_id: str
    exec_command: str
    execution_mode: str
    worker: str
    status: RunStatus
    started_at: datetime
    run_id: uuid.UUID = field(default_factory=uuid.uuid4)
    message: str | None = None
    error: str | None = None
    equity_info: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    finished_at: datetime | None = None
