"""Plain data the queue returns: outcomes of enqueue, claims, stats and views of live events."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from rebalancer_shared.events import Event


class EnqueueOutcome(StrEnum):
    """What an enqueue did: a new event, a drop (already queued) or a rerun mark (processing)."""

    QUEUED = "queued"
    DUPLICATE = "duplicate"
    COALESCED = "coalesced"


class EventState(StrEnum):
    """Where a live event is. Finished events (completed, removed) leave Redis entirely."""

    QUEUED = "queued"
    PROCESSING = "processing"
    RETRYING = "retrying"


class CompleteOutcome(StrEnum):
    """What completing a run did: finished the event, or queued it once more (coalesced trigger)."""

    COMPLETED = "completed"
    RERUN = "rerun"


@dataclass(frozen=True)
class EnqueueResult:
    """The outcome and the id of the event that now stands for the key (new or existing)."""

    outcome: EnqueueOutcome
    event_id: str


@dataclass(frozen=True)
class Claim:
    """A claimed event and the token of its lease (needed to renew, complete or fail it)."""

    event: Event
    lease_token: str


@dataclass(frozen=True)
class QueueStats:
    """Counters read without scanning the queue."""

    queue_length: int
    processing_count: int
    retrying_count: int
    active_events_count: int
    events_with_retries: int
    oldest_event_age_seconds: float | None


@dataclass(frozen=True)
class QueuedEventView:
    """A live event as the management API lists it."""

    event: Event
    state: EventState
    rerun: bool
    last_error: str | None
