"""What `EventStore` reads return: the history's rows as frozen dataclasses, never ORM rows or dicts.

Times are aware and in UTC (SQLite gives them back naive; they were written in UTC); values with a
closed set of members are the enums of records.py and events.py. The `*_view` functions map the ORM
rows of tables.py to these, so the store only queries.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rebalancer_shared.events import Command, Event, EventSource
from rebalancer_shared.store.records import EventStatus, RunStatus, Transition
from rebalancer_shared.store.tables import EventRow, OrderRow, RunRow, TransitionRow


@dataclass(frozen=True)
class EventSummary:
    """An event's row: the event as accepted, where it stands now and the last error it met."""

    event_id: uuid.UUID
    schema_version: int
    account_id: str
    exec_command: Command
    source: EventSource
    data: dict[str, Any]
    ably_message_id: str | None
    status: EventStatus
    times_queued: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    failure_class: str | None = None  # of its last failure (transient, market_closed, needs_attention)
    next_attempt_at: datetime | None = None  # while it waits: when it runs again

    def to_event(self) -> Event:
        """The event itself, with the runs counted so far (what recovery puts back into Redis)."""
        return Event(
            event_id=self.event_id,
            account_id=self.account_id,
            exec_command=self.exec_command,
            data=self.data,
            source=self.source,
            created_at=self.created_at,
            times_queued=self.times_queued,
            ably_message_id=self.ably_message_id,
        )


@dataclass(frozen=True)
class TransitionView:
    """One change of an event's state (a retry carries its error in `detail`).

    `seq` is the outbox entry that wrote it; None for rows of the first release, which had no outbox.
    """

    event_id: uuid.UUID
    state: Transition
    times_queued: int
    detail: str | None
    at: datetime
    seq: int | None
    failure_class: str | None = None
    due_at: datetime | None = None


@dataclass(frozen=True)
class RunView:
    """One run (attempt) of an event's command: how it ended, and what it saw, planned and did."""

    run_id: uuid.UUID
    event_id: uuid.UUID
    attempt: int
    account_id: str
    exec_command: Command
    execution_mode: str
    worker: str
    status: RunStatus
    message: str | None
    error: str | None
    equity_info: dict[str, Any] | None
    plan: dict[str, Any] | None
    result: dict[str, Any] | None
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class OrderView:
    """An order a run placed (or meant to: status `intent`), as the broker last reported it.

    `action` is BUY or SELL and `status` the broker's word (Submitted, Filled, ...), kept as given.
    """

    run_id: uuid.UUID
    event_id: uuid.UUID
    seq: int | None
    symbol: str
    action: str
    quantity: float
    order_type: str
    limit_price: float | None
    broker_order_id: int | None
    perm_id: int | None
    order_ref: str
    status: str
    filled_quantity: float
    avg_fill_price: float | None
    created_at: datetime
    updated_at: datetime
    message: str | None = None  # the broker's rejection or error, when it gave one


@dataclass(frozen=True)
class ListedOrder:
    """An order in a listing: the order, the account its run traded, and its row id (its page key)."""

    order: OrderView
    account_id: str
    row_id: int


@dataclass(frozen=True)
class RunWithOrders:
    """One run and the orders it placed, in the order they were recorded."""

    run: RunView
    orders: tuple[OrderView, ...]


@dataclass(frozen=True)
class EventHistory:
    """An event with its transitions (in the order they happened), runs (oldest first) and orders."""

    event: EventSummary
    transitions: tuple[TransitionView, ...]
    runs: tuple[RunView, ...]
    orders: tuple[OrderView, ...]

    def orders_of(self, run_id: uuid.UUID) -> tuple[OrderView, ...]:
        """The orders one run placed, in the order they were recorded."""
        return tuple(order for order in self.orders if order.run_id == run_id)


def as_utc(moment: datetime) -> datetime:
    """The moment as an aware UTC datetime (a naive one, as SQLite returns, is taken to be UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _maybe_utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else as_utc(moment)


def event_view(row: EventRow) -> EventSummary:
    """The events row as an `EventSummary`."""
    return EventSummary(
        event_id=row.event_id,
        schema_version=row.schema_version,
        account_id=row.account_id,
        exec_command=Command(row.exec_command),
        source=EventSource(row.source),
        data=row.data,
        ably_message_id=row.ably_message_id,
        status=EventStatus(row.status),
        times_queued=row.times_queued,
        last_error=row.last_error,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        finished_at=_maybe_utc(row.finished_at),
        failure_class=row.failure_class,
        next_attempt_at=_maybe_utc(row.next_attempt_at),
    )


def transition_view(row: TransitionRow) -> TransitionView:
    """An event_transitions row as a `TransitionView`."""
    return TransitionView(
        event_id=row.event_id,
        state=Transition(row.state),
        times_queued=row.times_queued,
        detail=row.detail,
        at=as_utc(row.at),
        seq=row.seq,
        failure_class=row.failure_class,
        due_at=_maybe_utc(row.due_at),
    )


def run_view(row: RunRow) -> RunView:
    """A runs row as a `RunView`."""
    return RunView(
        run_id=row.run_id,
        event_id=row.event_id,
        attempt=row.attempt,
        account_id=row.account_id,
        exec_command=Command(row.exec_command),
        execution_mode=row.execution_mode,
        worker=row.worker,
        status=RunStatus(row.status),
        message=row.message,
        error=row.error,
        equity_info=row.equity_info,
        plan=row.plan,
        result=row.result,
        started_at=as_utc(row.started_at),
        finished_at=_maybe_utc(row.finished_at),
    )


def order_view(row: OrderRow) -> OrderView:
    """An orders row as an `OrderView`."""
    return OrderView(
        run_id=row.run_id,
        event_id=row.event_id,
        seq=row.seq,
        symbol=row.symbol,
        action=row.action,
        quantity=row.quantity,
        order_type=row.order_type,
        limit_price=row.limit_price,
        broker_order_id=row.broker_order_id,
        perm_id=row.perm_id,
        order_ref=row.order_ref,
        status=row.status,
        filled_quantity=row.filled_quantity,
        avg_fill_price=row.avg_fill_price,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        message=row.message,
    )


def history_view(
    event: EventRow,
    transitions: Iterable[TransitionRow],
    runs: Iterable[RunRow],
    orders: Iterable[OrderRow],
) -> EventHistory:
    """An event's rows, in the order the store read them, as an `EventHistory`."""
    return EventHistory(
        event=event_view(event),
        transitions=tuple(map(transition_view, transitions)),
        runs=tuple(map(run_view, runs)),
        orders=tuple(map(order_view, orders)),
    )
