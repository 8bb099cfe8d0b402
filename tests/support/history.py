"""Outbox records of an event's transitions, as the queue scripts write them, for filling a history."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from rebalancer_shared.events import Event
from rebalancer_shared.store import HistoryRecord, Transition

_SEQ = itertools.count(1)  # outbox entry numbers, unique in the process


def transition_records(event: Event, transitions: Iterable[Transition]) -> list[HistoryRecord]:
    """One record per transition, at the event's acceptance time, each with an outbox entry of its own."""
    return [
        HistoryRecord(
            seq=next(_SEQ),
            event_id=event.event_id,
            transition=transition,
            times_queued=1,
            detail=None,
            event=event,
            close_runs_below=0,
            at=event.created_at,
        )
        for transition in dict.fromkeys(transitions)
    ]
