"""Plain data the queue returns: outcomes of enqueue, claims, stats and views of live events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from rebalancer_shared.events import Event
from rebalancer_shared.failures import FailureClass


class EnqueueOutcome(StrEnum):
    """What an enqueue did: a new event, a drop (already queued) or a rerun mark (processing).

    `ALREADY_ACCEPTED`: this very event (same id) was submitted before and is live or finished in the
    last day: a retried submit, or a replayed trigger, changes nothing.
    """

    QUEUED = "queued"
    DUPLICATE = "duplicate"
    COALESCED = "coalesced"
    ALREADY_ACCEPTED = "already_accepted"


class RestoreOutcome(StrEnum):
    """What putting back an event PostgreSQL knows as unfinished did."""

    RESTORED = "restored"
    PRESENT = "present"
    FINISHED = "finished"
    SUPERSEDED = "superseded"


class EventState(StrEnum):
    """Where a live event is. Finished events (completed, removed) leave Redis entirely.

    The last three are waiting states: the event is claimable from its due time on (see
    rebalancer_shared.failures for which failure leads to which).
    """

    QUEUED = "queued"
    PROCESSING = "processing"
    RETRYING = "retrying"
    SCHEDULED = "scheduled"
    NEEDS_ATTENTION = "needs_attention"


WAITING_STATES = (EventState.RETRYING, EventState.SCHEDULED, EventState.NEEDS_ATTENTION)


class RetryNowOutcome(StrEnum):
    """What an operator's "retry now" did: made a waiting event due, or found it already queued."""

    REQUEUED = "requeued"
    QUEUED = "queued"


class CompleteOutcome(StrEnum):
    """What completing a run did: finished the event, or queued it once more (coalesced trigger)."""

    COMPLETED = "completed"
    RERUN = "rerun"


# `entries` of every result below: the outbox entries the step appended (see scripts.py), which the
# lifecycle writes to PostgreSQL at once.
Entries = tuple[str, ...]


@dataclass(frozen=True)
class EnqueueResult:
    """The outcome and the id of the event that now stands for the key (new or existing)."""

    outcome: EnqueueOutcome
    event_id: str
    entries: Entries = ()


@dataclass(frozen=True)
class RestoreResult:
    """The outcome of a restore; `existing_event_id` is the live event that holds the key instead."""

    outcome: RestoreOutcome
    existing_event_id: str | None = None
    entries: Entries = ()


@dataclass(frozen=True)
class Claim:
    """A claimed event and the token of its lease (needed to renew, complete or fail it).

    `sent_at`: when the script that claimed it was sent, on this process's monotonic clock; the
    lease began no earlier, so the run's `LeaseFence` counts from it.
    """

    event: Event
    lease_token: str
    sent_at: float
    entries: Entries = ()


@dataclass(frozen=True)
class CompleteResult:
    """What completing did, and the next claim when completing could take one at once."""

    outcome: CompleteOutcome
    entries: Entries = ()
    next_claim: Claim | None = None


@dataclass(frozen=True)
class FailResult:
    """A failed (or deferred) run's event waits until `due_at` with this many runs counted."""

    times_queued: int
    entries: Entries = ()
    due_at: datetime | None = None


@dataclass(frozen=True)
class Wait:
    """How a run that did not succeed waits: its state, failure class and due time.

    `due_at` None: `delay_seconds` from now (by Redis's clock). `attempted` False: the run was not
    tried (a deferral decided before it started), so nothing is counted as a failure.
    """

    state: EventState = EventState.RETRYING
    failure_class: FailureClass = FailureClass.TRANSIENT
    delay_seconds: float = 0.0
    due_at: datetime | None = None
    attempted: bool = True


@dataclass(frozen=True)
class Reaped:
    """An event whose lease expired, back in the queue."""

    event_id: str
    times_queued: int
    entries: Entries = ()


@dataclass(frozen=True)
class Removed:
    """An event an operator removed."""

    event: Event
    entries: Entries = ()


@dataclass(frozen=True)
class QueueStats:
    """Counters read without scanning the queue."""

    queue_length: int
    processing_count: int
    retrying_count: int
    active_events_count: int
    events_with_retries: int
    oldest_event_age_seconds: float | None
    scheduled_count: int = 0
    needs_attention_count: int = 0


@dataclass(frozen=True)
class QueuedEventView:
    """A live event as the management API lists it."""

    event: Event
    state: EventState
    rerun: bool
    last_error: str | None
    failure_class: FailureClass | None = None
    due_at: datetime | None = None  # set while the event waits
