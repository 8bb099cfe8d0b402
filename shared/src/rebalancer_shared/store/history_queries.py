"""Browsing the history: filtered events, runs and orders, newest first, one page at a time.

Pages are keyset pages, not offsets: a row is placed by its time and a tie-breaking key (events:
(created_at, event_id); runs: (started_at, run_id); orders: (created_at, id)), both descending, and
the next page starts strictly after the last row of the one before. Rows written meanwhile do not
shift a page or repeat a row, and a page costs the same at the end of a long history as at its start
(the `ix_events_account`, `ix_events_status_created`, `ix_runs_account` and `ix_orders_*` indexes
serve the filters).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from rebalancer_shared.store.tables import EventRow, OrderRow, RunRow

AnySelect = Select[*tuple[Any, ...]]  # a SELECT, whatever its columns
_Query = TypeVar("_Query", bound=AnySelect)


@dataclass(frozen=True)
class TimeRange:
    """since <= time < until; None leaves that side open."""

    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class EventFilter:
    """Which events a listing shows; every field left None matches all. `accepted` bounds the time
    the event was accepted (`created_at`)."""

    account_id: str | None = None
    exec_command: str | None = None
    status: str | None = None
    source: str | None = None
    accepted: TimeRange = TimeRange()


@dataclass(frozen=True)
class OrderFilter:
    """Which orders a listing shows; `placed` bounds the time the order was recorded (its intent)."""

    account_id: str | None = None
    event_id: uuid.UUID | None = None
    run_id: uuid.UUID | None = None
    symbol: str | None = None
    status: str | None = None
    placed: TimeRange = TimeRange()


@dataclass(frozen=True)
class PageKey:
    """Where a page ends: the next one holds the rows that sort after this one (time, then key)."""

    at: datetime
    key: uuid.UUID | int


def _narrowed(
    statement: _Query,
    equal: Mapping[InstrumentedAttribute[Any], object],
    at: InstrumentedAttribute[datetime],
    within: TimeRange,
) -> _Query:
    conditions: list[ColumnElement[bool]] = [
        column == value for column, value in equal.items() if value is not None
    ]
    if within.since is not None:
        conditions.append(at >= within.since)
    if within.until is not None:
        conditions.append(at < within.until)
    return statement.where(*conditions)


def _page(
    statement: _Query,
    order: tuple[InstrumentedAttribute[Any], InstrumentedAttribute[Any]],
    limit: int,
    after: PageKey | None,
) -> _Query:
    if after is not None:
        statement = statement.where(tuple_(*order) < tuple_(after.at, after.key))
    return statement.order_by(*(column.desc() for column in order)).limit(limit)


def events_page(where: EventFilter, limit: int, after: PageKey | None) -> AnySelect:
    """The SELECT of one page of `limit` events (newest first) matching `where`, after `after`."""
    equal = {
        EventRow.account_id: where.account_id,
        EventRow.exec_command: where.exec_command,
        EventRow.status: where.status,
        EventRow.source: where.source,
    }
    statement = _narrowed(select(EventRow), equal, EventRow.created_at, where.accepted)
    return _page(statement, (EventRow.created_at, EventRow.event_id), limit, after)


def account_runs_page(account_id: str, limit: int, after: PageKey | None) -> AnySelect:
    """The SELECT of one page of an account's runs, newest first."""
    statement = select(RunRow).where(RunRow.account_id == account_id)
    return _page(statement, (RunRow.started_at, RunRow.run_id), limit, after)


def orders_page(where: OrderFilter, limit: int, after: PageKey | None) -> AnySelect:
    """The SELECT of one page of (order, account_id) rows matching `where`, newest first."""
    equal = {
        RunRow.account_id: where.account_id,
        OrderRow.event_id: where.event_id,
        OrderRow.run_id: where.run_id,
        OrderRow.symbol: where.symbol,
        OrderRow.status: where.status,
    }
    joined = select(OrderRow, RunRow.account_id).join(RunRow, RunRow.run_id == OrderRow.run_id)
    statement = _narrowed(joined, equal, OrderRow.created_at, where.placed)
    return _page(statement, (OrderRow.created_at, OrderRow.id), limit, after)
