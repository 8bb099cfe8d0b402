"""`EventStore`: the PostgreSQL history of every event, transition, run and order.

Each state write carries the whole event and is an upsert keyed by event_id, so a write that was
missed (a crash between Redis and PostgreSQL) is healed by the next one. Transitions are appended, so
the history of an event reads as its life: queued, processing, retrying (error), ..., completed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from rebalancer_shared.events import Event, EventSource
from rebalancer_shared.store.tables import (
    Base,
    DeploymentFactRow,
    EventRow,
    OrderRow,
    RunRow,
    TransitionRow,
)


class EventStatus(StrEnum):
    """The state an event's row records; the first three are unfinished."""

    QUEUED = "queued"
    PROCESSING = "processing"
    RETRYING = "retrying"
    COMPLETED = "completed"
    REMOVED = "removed"


UNFINISHED = (EventStatus.QUEUED, EventStatus.PROCESSING, EventStatus.RETRYING)
FINISHED = (EventStatus.COMPLETED, EventStatus.REMOVED)


class Transition(StrEnum):
    """Every kind of change an event's history records (statuses plus the ones that keep it).

    `QUEUED` is the acceptance of a new event. It is written after the event is in Redis, so a
    worker may already have recorded a later state: it therefore creates the row but never
    overwrites one (and is dated at the event's creation). `REQUEUED` (lease expired, released at
    shutdown) does move an existing row back to queued.
    """

    QUEUED = "queued"
    REQUEUED = "requeued"
    PROCESSING = "processing"
    RETRYING = "retrying"
    COMPLETED = "completed"
    REMOVED = "removed"
    DUPLICATE = "duplicate"
    COALESCED = "coalesced"
    RERUN = "rerun"
    RECOVERED = "recovered"


_STATUS_OF: dict[Transition, EventStatus] = {
    Transition.QUEUED: EventStatus.QUEUED,
    Transition.REQUEUED: EventStatus.QUEUED,
    Transition.PROCESSING: EventStatus.PROCESSING,
    Transition.RETRYING: EventStatus.RETRYING,
    Transition.COMPLETED: EventStatus.COMPLETED,
    Transition.REMOVED: EventStatus.REMOVED,
    Transition.RERUN: EventStatus.QUEUED,
    Transition.RECOVERED: EventStatus.QUEUED,
}


@dataclass(frozen=True)
class OrderRecord:
    """One order a run placed, as the broker reported it."""

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


@dataclass(frozen=True)
class RunRecord:
    """One run (attempt) of an event's command and its result."""

    event_id: uuid.UUID
    attempt: int
    account_id: str
    exec_command: str
    execution_mode: str
    worker: str
    status: str
    started_at: datetime
    run_id: uuid.UUID = field(default_factory=uuid.uuid4)
    message: str | None = None
    error: str | None = None
    equity_info: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    finished_at: datetime | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def async_database_url(url: str) -> str:
    """Accept plain `postgresql://` and `sqlite://` URLs and name the async drivers we use."""
    for plain, driver in (
        ("postgresql://", "postgresql+psycopg://"),
        ("postgres://", "postgresql+psycopg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


class EventStore:
    """History writes and reads over one SQLAlchemy async engine (PostgreSQL, or SQLite for the demo)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str, pool_size: int = 5) -> EventStore:
        """A store on the database at `url` (pool pre-ping so a restarted database is survived).

        `pool_size` connections are kept open; as many again may be opened under load. A processor
        sizes it to its concurrency so that no run waits for a connection.
        """
        full = async_database_url(url)
        if full.startswith("sqlite"):
            return cls(create_async_engine(full))
        return cls(create_async_engine(full, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size))

    async def create_schema(self) -> None:
        """Create the tables from the ORM models (SQLite and tests; PostgreSQL deploys init.sql)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)

    async def close(self) -> None:
        """Release the engine's connections."""
        await self.engine.dispose()

    def _insert(self, table: Any) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    async def record(
        self,
        event: Event,
        transition: Transition,
        *,
        times_queued: int | None = None,
        detail: str | None = None,
    ) -> None:
        """Record a change of the event's state: upsert its row (healing missed writes), append history."""
        status = _STATUS_OF.get(transition)
        if status is None:
            raise ValueError(f"{transition.value} does not change an event's state; use note()")
        now = _utcnow()
        times = event.times_queued if times_queued is None else times_queued
        first = transition is Transition.QUEUED
        async with self._sessions.begin() as session:
            await self._upsert_event(session, event, status, times, detail, now, insert_only=first)
            at = min(now, event.created_at) if first else now
            session.add(_transition(event.event_id, transition, times, detail, at))

    async def note(self, event_id: uuid.UUID, transition: Transition, detail: str | None = None) -> bool:
        """Append a transition that keeps the state (duplicate, coalesced); False if the event is unknown."""
        async with self._sessions.begin() as session:
            row = await session.get(EventRow, event_id)
            if row is None:
                return False
            session.add(_transition(event_id, transition, row.times_queued, detail, _utcnow()))
            return True

    async def _upsert_event(
        self,
        session: AsyncSession,
        event: Event,
        status: EventStatus,
        times: int,
        detail: str | None,
        now: datetime,
        *,
        insert_only: bool = False,
    ) -> None:
        values: dict[str, Any] = {
            "event_id": event.event_id,
            "schema_version": event.schema_version,
            "account_id": event.account_id,
            "exec_command": event.exec_command.value,
            "source": event.source.value,
            "data": event.data,
            "ably_message_id": event.ably_message_id,
            "status": status.value,
            "times_queued": times,
            "last_error": detail if status is EventStatus.RETRYING else None,
            "created_at": event.created_at,
            "updated_at": now,
            "finished_at": now if status in FINISHED else None,
        }
        update = {k: values[k] for k in ("status", "times_queued", "updated_at", "finished_at")}
        if status is EventStatus.RETRYING:
            update["last_error"] = detail
        insert = self._insert(EventRow).values(**values)
        if insert_only:
            stmt = insert.on_conflict_do_nothing(index_elements=["event_id"])
        else:
            stmt = insert.on_conflict_do_update(index_elements=["event_id"], set_=update)
        await session.execute(stmt)

    async def save_run(self, run: RunRecord) -> None:
        """Insert or update a run by its run_id (start it, then save it again when it finishes)."""
        values = {k: getattr(run, k) for k in RunRow.__table__.columns.keys()}  # noqa: SIM118
        update = {k: v for k, v in values.items() if k not in ("run_id", "event_id", "started_at")}
        stmt = (
            self._insert(RunRow)
            .values(**values)
            .on_conflict_do_update(index_elements=["run_id"], set_=update)
        )
        async with self._sessions.begin() as session:
            await session.execute(stmt)

    async def save_orders(
        self, run_id: uuid.UUID, event_id: uuid.UUID, orders: Sequence[OrderRecord]
    ) -> None:
        """Store the orders of a run (replacing any stored earlier for that run)."""
        now = _utcnow()
        async with self._sessions.begin() as session:
            await session.execute(delete(OrderRow).where(OrderRow.run_id == run_id))
            for order in orders:
                session.add(
                    OrderRow(
                        run_id=run_id,
                        event_id=event_id,
                        created_at=now,
                        updated_at=now,
                        **order.__dict__,
                    )
                )

    async def unfinished_events(self) -> list[tuple[Event, EventStatus]]:
        """Every event still queued, processing or retrying, oldest first, with its recorded status."""
        stmt = (
            select(EventRow)
            .where(EventRow.status.in_([s.value for s in UNFINISHED]))
            .order_by(EventRow.created_at, EventRow.event_id)
        )
        async with self._sessions() as session:
            rows = (await session.scalars(stmt)).all()
        return [(_event_of(row), EventStatus(row.status)) for row in rows]

    async def get_event(self, event_id: uuid.UUID) -> EventRow | None:
        """The event's row, or None."""
        async with self._sessions() as session:
            return await session.get(EventRow, event_id)

    async def history(self, event_id: uuid.UUID) -> dict[str, Any] | None:
        """An event with its transitions, runs and each run's orders, or None when unknown."""
        async with self._sessions() as session:
            row = await session.get(EventRow, event_id)
            if row is None:
                return None
            transitions = await session.scalars(
                select(TransitionRow)
                .where(TransitionRow.event_id == event_id)
                .order_by(TransitionRow.at, TransitionRow.id)
            )
            runs = await session.scalars(
                select(RunRow).where(RunRow.event_id == event_id).order_by(RunRow.started_at)
            )
            orders = await session.scalars(
                select(OrderRow).where(OrderRow.event_id == event_id).order_by(OrderRow.id)
            )
            return {
                "event": _columns(row),
                "transitions": [_columns(t) for t in transitions],
                "runs": [_columns(r) for r in runs],
                "orders": [_columns(o) for o in orders],
            }

    async def last_run_status(self, account_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The newest run of each account: status, command, times (accounts without runs omitted)."""
        newest = (
            select(RunRow.account_id, func.max(RunRow.started_at).label("started_at"))
            .where(RunRow.account_id.in_(list(account_ids)))
            .group_by(RunRow.account_id)
            .subquery()
        )
        stmt = select(RunRow).join(
            newest,
            (RunRow.account_id == newest.c.account_id) & (RunRow.started_at == newest.c.started_at),
        )
        async with self._sessions() as session:
            rows = (await session.scalars(stmt)).all()
        return {
            r.account_id: {
                "status": r.status,
                "exec_command": r.exec_command,
                "event_id": str(r.event_id),
                "started_at": _as_utc(r.started_at).isoformat(),
                "finished_at": _as_utc(r.finished_at).isoformat() if r.finished_at else None,
                "message": r.message,
            }
            for r in rows
        }

    async def get_fact(self, name: str) -> str | None:
        """A deployment fact (e.g. that the Redis marker was written), or None."""
        async with self._sessions() as session:
            row = await session.get(DeploymentFactRow, name)
            return row.value if row else None

    async def set_fact(self, name: str, value: str) -> None:
        """Record a deployment fact (upsert)."""
        stmt = (
            self._insert(DeploymentFactRow)
            .values(name=name, value=value, updated_at=_utcnow())
            .on_conflict_do_update(index_elements=["name"], set_={"value": value, "updated_at": _utcnow()})
        )
        async with self._sessions.begin() as session:
            await session.execute(stmt)

    async def ping(self) -> None:
        """Raise when the database does not answer."""
        async with self.engine.connect() as conn:
            await conn.execute(select(1))


def _transition(
    event_id: uuid.UUID, transition: Transition, times: int, detail: str | None, at: datetime
) -> TransitionRow:
    return TransitionRow(event_id=event_id, state=transition.value, times_queued=times, detail=detail, at=at)


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _event_of(row: EventRow) -> Event:
    return Event(
        event_id=row.event_id,
        account_id=row.account_id,
        exec_command=row.exec_command,  # type: ignore[arg-type]  # validated by pydantic
        data=row.data,
        source=EventSource(row.source),
        created_at=_as_utc(row.created_at),
        times_queued=row.times_queued,
        ably_message_id=row.ably_message_id,
    )


def _columns(row: Base) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column in row.__table__.columns:
        value = getattr(row, column.key)
        if isinstance(value, datetime):
            value = _as_utc(value).isoformat()
        elif isinstance(value, uuid.UUID):
            value = str(value)
        out[column.key] = value
    return out
