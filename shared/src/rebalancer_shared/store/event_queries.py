"""Browsing the history's events: filters, newest first, one page at a time.

Pages are keyset pages, not offsets: an event is placed by its (created_at, event_id), both
descending, and the next page starts strictly after the last event of the one before. Events
accepted meanwhile do not shift a page or repeat an event, and a page costs the same at the end of
a long history as at its start (the `ix_events_account` and `ix_events_status_created` indexes serve
the account and state filters).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select, tuple_

from rebalancer_shared.store.tables import EventRow


@dataclass(frozen=True)
class EventFilter:
    """Which events a listing shows; every field left None matches all. `since` and `until` bound
    the time the event was accepted (`created_at`): since <= created_at < until."""

    account_id: str | None = None
    exec_command: str | None = None
    status: str | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class PageKey:
    """Where a page ends: the next one holds the events that sort after this one."""

    created_at: datetime
    event_id: uuid.UUID


def events_page(where: EventFilter, limit: int, after: PageKey | None) -> Select[Any]:
    """The SELECT of one page of `limit` events (newest first) matching `where`, after `after`."""
    statement = select(EventRow)
    equal = {
        EventRow.account_id: where.account_id,
        EventRow.exec_command: where.exec_command,
        EventRow.status: where.status,
        EventRow.source: where.source,
    }
    for column, value in equal.items():
        if value is not None:
            statement = statement.where(column == value)
    if where.since is not None:
        statement = statement.where(EventRow.created_at >= where.since)
    if where.until is not None:
        statement = statement.where(EventRow.created_at < where.until)
    if after is not None:
        key = tuple_(EventRow.created_at, EventRow.event_id)
        statement = statement.where(key < tuple_(after.created_at, after.event_id))
    order = (EventRow.created_at.desc(), EventRow.event_id.desc())
    return statement.order_by(*order).limit(limit)
