"""Applying outbox entries to PostgreSQL: idempotent, and never moving an event's row back in time.

Each `HistoryRecord` becomes, in the caller's transaction:
1. the event's row, inserted or updated to the state the transition leads to, but only when the
   record is newer (`seq`) than the last one applied to the row; notes (duplicate, coalesced) only
   create a missing row and never change its state;
2. a transition row, unique by `seq`: the same entry written twice (at once by the lifecycle, later
   by a drainer) is stored once;
3. runs of the event that are still `running` with an attempt below `close_runs_below`: they cannot
   be running any more (the event moved on: completed, retried, reaped, released, removed, claimed
   again), so they end `interrupted`, or `unknown` when an order of theirs never reached a final
   status.

Every text stored (details, errors) is redacted first: secrets never reach the history.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import and_, case, exists, literal_column, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from rebalancer_shared.logging import redact_text
from rebalancer_shared.store.records import (
    FINAL_ORDER_STATUSES,
    FINISHED,
    NOTIFIABLE,
    STATUS_AFTER,
    WAITING,
    EventStatus,
    HistoryRecord,
    RunStatus,
)
from rebalancer_shared.store.tables import EventRow, OrderRow, RunRow, TransitionRow


def is_postgres(session: AsyncSession) -> bool:
    """True on PostgreSQL (the default when the session is unbound); False on SQLite (the demo)."""
    return session.bind is None or session.bind.dialect.name == "postgresql"


def dialect_insert(session: AsyncSession, table: Any) -> Any:
    """INSERT with ON CONFLICT support for the session's database (PostgreSQL, or SQLite for the demo)."""
    return (postgresql if is_postgres(session) else sqlite).insert(table)


_PREPARED: dict[tuple[str, ...], Any] = {}


def prepared(session: AsyncSession, key: tuple[str, ...], build: Callable[[], Any]) -> Any:
    """The statement `build` makes, made once per database dialect and `key`, then executed with its
    parameters: SQLAlchemy compiles it once. (A statement with its VALUES inlined, or an `excluded`
    alias built per call, is compiled anew every time: most of the history's CPU in a live run.)"""
    name = session.bind.dialect.name if session.bind is not None else "postgresql"
    statement = _PREPARED.get((name, *key))
    if statement is None:
        statement = _PREPARED[(name, *key)] = build()
    return statement


def _redacted(text: str | None) -> str | None:
    return redact_text(text) if text else None


async def _upsert_event(session: AsyncSession, record: HistoryRecord) -> None:
    event = record.event
    if event is None:
        return
    status = STATUS_AFTER.get(record.transition)
    detail = _redacted(record.detail)
    values: dict[str, Any] = {
        "event_id": event.event_id,
        "schema_version": event.schema_version,
        "account_id": event.account_id,
        "exec_command": event.exec_command.value,
        "source": event.source.value,
        "data": event.data,
        "ably_message_id": event.ably_message_id,
        "status": (status or EventStatus.QUEUED).value,
        "times_queued": record.times_queued,
        "last_error": detail if status in WAITING else None,
        "failure_class": record.failure_class,
        "next_attempt_at": record.due_at,
        "created_at": event.created_at,
        "updated_at": record.at,
        "finished_at": record.at if status in FINISHED else None,
        "history_seq": record.seq if status is not None else None,
    }
    kind = "note" if status is None else "waiting" if status in WAITING else "state"
    await session.execute(prepared(session, ("event", kind), lambda: _event_upsert(session, kind)), values)


_EVENT_CHANGES = ("status", "times_queued", "updated_at", "finished_at", "history_seq", "next_attempt_at")


def _event_upsert(session: AsyncSession, kind: str) -> Any:
    """A note only creates a missing row; a state change updates it when the record is newer; a
    waiting state also sets its error and failure class."""
    insert = dialect_insert(session, EventRow.__table__)
    if kind == "note":
        return insert.on_conflict_do_nothing(index_elements=["event_id"])
    columns = [*_EVENT_CHANGES, *(("last_error", "failure_class") if kind == "waiting" else ())]
    seq = EventRow.__table__.c.history_seq
    newer = or_(seq.is_(None), seq < insert.excluded.history_seq)
    return insert.on_conflict_do_update(
        index_elements=["event_id"], set_={c: insert.excluded[c] for c in columns}, where=newer
    )


async def _insert_transition(session: AsyncSession, record: HistoryRecord) -> None:
    values = {
        "event_id": record.event_id,
        "state": record.transition.value,
        "times_queued": record.times_queued,
        "detail": _redacted(record.detail),
        "at": record.at,
        "seq": record.seq,
        "failure_class": record.failure_class,
        "due_at": record.due_at,
        # Only what can be notified waits for the notifier (the rest is never read by it).
        "notification_pending": record.transition in NOTIFIABLE,
    }
    statement = prepared(
        session,
        ("transition",),
        lambda: dialect_insert(session, TransitionRow.__table__).on_conflict_do_nothing(
            index_elements=["seq"]
        ),
    )
    await session.execute(statement, values)


def open_order() -> Any:
    """An order of the run (the `runs` row at hand) that has not reached a final status."""
    # The row named as text: inside an upsert's SET nothing correlates by itself (runs would join in).
    which = and_(
        OrderRow.run_id == literal_column("runs.run_id"), OrderRow.status.not_in(FINAL_ORDER_STATUSES)
    )
    return exists().where(which)


def stopped_status() -> Any:
    """How a run that did not end by itself ends, by its orders as recorded: `unknown` while one is
    open, else `interrupted`."""
    return case((open_order(), RunStatus.UNKNOWN.value), else_=RunStatus.INTERRUPTED.value)


async def _close_runs(session: AsyncSession, record: HistoryRecord) -> None:
    if record.close_runs_below <= 0:
        return
    ending = stopped_status()
    why = f"the run did not end by itself; then the event was {record.transition.value}"
    if record.detail:
        why += f": {record.detail}"
    await session.execute(
        update(RunRow)
        .where(
            RunRow.event_id == record.event_id,
            RunRow.status == RunStatus.RUNNING.value,
            RunRow.attempt < record.close_runs_below,
        )
        .values(status=ending, finished_at=record.at, error=_redacted(why[:2000]))
        .execution_options(synchronize_session=False)
    )


async def apply_record(session: AsyncSession, record: HistoryRecord) -> None:
    """Write one outbox entry (see the module docstring)."""
    await _upsert_event(session, record)
    await _insert_transition(session, record)
    await _close_runs(session, record)
