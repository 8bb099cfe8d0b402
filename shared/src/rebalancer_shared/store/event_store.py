"""`EventStore`: the PostgreSQL history of every event, transition, run and order.

Transitions reach it from the outbox (`apply_history`, see history_writes.py): idempotent upserts
keyed by the outbox entry, so a crash between the Redis step and this write only delays it. Runs and
orders are written by the processor as they happen: a run row when the command starts and when it
ends; an order row before the order is sent (its intent), again with the broker's ids once sent, and
with its fills, so every order the gateway saw is in `orders`.

Reads return the frozen dataclasses of views.py (`EventSummary`, `EventHistory`, `RunView`, ...).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, literal_column, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from rebalancer_shared.logging import redact_text
from rebalancer_shared.store.history_queries import (
    EventFilter,
    OrderFilter,
    PageKey,
    account_runs_page,
    events_page,
    orders_page,
)
from rebalancer_shared.store.history_writes import (
    apply_record,
    dialect_insert,
    open_order,
    prepared,
    stopped_status,
)
from rebalancer_shared.store.records import (
    FINAL_ORDER_STATUSES,
    UNFINISHED,
    HistoryRecord,
    OrderRecord,
    RunRecord,
    RunStatus,
)
from rebalancer_shared.store.tables import (
    Base,
    DeploymentFactRow,
    EventRow,
    OrderRow,
    RunRow,
    TransitionRow,
)
from rebalancer_shared.store.views import (
    EventHistory,
    EventSummary,
    ListedOrder,
    OrderView,
    RunView,
    RunWithOrders,
    event_view,
    history_view,
    order_view,
    run_view,
)

_RUN_TEXTS = ("message", "error")
FOREIGN_KEY_VIOLATION = "23503"  # PostgreSQL's SQLSTATE
_ORDER_KEPT = frozenset({"id", "run_id", "event_id", "seq", "created_at"})  # never updated


def _order_upsert(session: AsyncSession) -> Any:
    """INSERT ... ON CONFLICT (run_id, seq) DO UPDATE of every column but the kept ones, built once
    and executed with all the rows (history_writes.prepared): 5 ms of CPU for four orders before.

    A row whose order reached a final status never goes back to an open one: a late write (a stopped
    run's save landing after a later run settled its orders) changes nothing there."""

    def build() -> Any:
        insert = dialect_insert(session, OrderRow.__table__)
        columns = [c.name for c in OrderRow.__table__.columns if c.name not in _ORDER_KEPT]
        # Inlined (constants): an IN list of bound parameters cannot be executed with many rows.
        final: list[Any] = [literal_column(f"'{status}'") for status in FINAL_ORDER_STATUSES]
        ended = OrderRow.__table__.c.status.in_(final)
        return insert.on_conflict_do_update(
            index_elements=["run_id", "seq"],
            set_={c: insert.excluded[c] for c in columns},
            where=~ended | insert.excluded.status.in_(final),
        )

    return prepared(session, ("orders",), build)


# A run that did not end by itself: saved as its orders say (store.history_writes.stopped_status).
_STOPPED = (RunStatus.UNKNOWN, RunStatus.INTERRUPTED)


class EventRowMissing(Exception):
    """A run was saved for an event whose row the history does not have yet (its acceptance's write
    was postponed: the outbox still holds it)."""


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


def _order_rows(event_id: uuid.UUID, orders: Sequence[tuple[uuid.UUID, OrderRecord]]) -> list[dict[str, Any]]:
    """`(run_id, order)` pairs as rows of `orders` (`created_at` is kept on update, see _ORDER_KEPT)."""
    now = _utcnow()
    return [
        {**order.__dict__, "run_id": run_id, "event_id": event_id, "updated_at": now, "created_at": now}
        for run_id, order in orders
    ]


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

    async def apply_history(self, records: Sequence[HistoryRecord]) -> None:
        """Write outbox entries, in one transaction, idempotently (see history_writes.py)."""
        if not records:
            return
        async with self._sessions.begin() as session:
            for record in records:
                await apply_record(session, record)

    async def save_run(self, run: RunRecord) -> None:
        """Insert or update a run by its run_id (start it, then save it again when it finishes)."""
        values = {k: getattr(run, k) for k in RunRow.__table__.columns.keys()}  # noqa: SIM118
        values["status"] = run.status.value
        for key in _RUN_TEXTS:
            values[key] = redact_text(values[key]) if values[key] else values[key]
        update: dict[str, Any] = {
            k: v for k, v in values.items() if k not in ("run_id", "event_id", "started_at")
        }
        if run.status in _STOPPED:  # the orders as recorded say which (a late save never undoes a settlement)
            update["status"] = stopped_status()
        try:
            async with self._sessions.begin() as session:
                stmt = (
                    dialect_insert(session, RunRow)
                    .values(**values)
                    .on_conflict_do_update(index_elements=["run_id"], set_=update)
                )
                await session.execute(stmt)
        except IntegrityError as exc:
            if getattr(exc.orig, "sqlstate", None) == FOREIGN_KEY_VIOLATION:
                raise EventRowMissing(f"event {run.event_id} has no row in the history yet") from exc
            raise

    async def save_orders(
        self, run_id: uuid.UUID, event_id: uuid.UUID, orders: Sequence[OrderRecord]
    ) -> None:
        """Insert or update orders of a run by their place in it (`seq`): intent, ids, fills.

        One statement for all of them (a run records its orders several times; a statement per order
        was most of a live run's CPU in the fan-out benchmark)."""
        if not orders:
            return
        async with self._sessions.begin() as session:
            await session.execute(
                _order_upsert(session), _order_rows(event_id, [(run_id, o) for o in orders])
            )

    async def event_orders(self, event_id: uuid.UUID) -> list[OrderView]:
        """Every order row of the event, of every run, oldest first."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(OrderRow).where(OrderRow.event_id == event_id).order_by(OrderRow.id)
            )
            return [order_view(row) for row in rows]

    async def settle_orders(
        self, event_id: uuid.UUID, settled: Sequence[tuple[uuid.UUID, OrderRecord]], note: str
    ) -> int:
        """Write what later knowledge says earlier runs' orders did (`(run_id, order)` pairs, by
        `seq`), and make each such run that was `unknown` only for them `interrupted` (no order of it
        is left in an unknown state), with `note` as its message when it had none; how many runs."""
        if not settled:
            return 0
        runs = sorted({run_id for run_id, _ in settled})
        async with self._sessions.begin() as session:
            await session.execute(_order_upsert(session), _order_rows(event_id, settled))
            result = await session.execute(
                update(RunRow)
                .where(RunRow.run_id.in_(runs), RunRow.status == RunStatus.UNKNOWN.value, ~open_order())
                .values(status=RunStatus.INTERRUPTED.value, message=func.coalesce(RunRow.message, note))
                .execution_options(synchronize_session=False)
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def unfinished_events(self) -> list[EventSummary]:
        """Every event still queued, processing or retrying, oldest first."""
        stmt = (
            select(EventRow)
            .where(EventRow.status.in_([s.value for s in UNFINISHED]))
            .order_by(EventRow.created_at, EventRow.event_id)
        )
        async with self._sessions() as session:
            rows = (await session.scalars(stmt)).all()
        return [event_view(row) for row in rows]

    async def list_events(
        self, where: EventFilter, limit: int, after: PageKey | None = None
    ) -> list[EventSummary]:
        """Up to `limit` events matching `where`, newest first, after `after` (history_queries.py)."""
        async with self._sessions() as session:
            rows = (await session.scalars(events_page(where, limit, after))).all()
        return [event_view(row) for row in rows]

    async def account_runs(self, account_id: str, limit: int, after: PageKey | None = None) -> list[RunView]:
        """Up to `limit` runs of the account, newest first, after `after`."""
        async with self._sessions() as session:
            rows = (await session.scalars(account_runs_page(account_id, limit, after))).all()
        return [run_view(row) for row in rows]

    async def list_orders(
        self, where: OrderFilter, limit: int, after: PageKey | None = None
    ) -> list[ListedOrder]:
        """Up to `limit` orders matching `where`, newest first, with the account each run traded."""
        async with self._sessions() as session:
            rows = (await session.execute(orders_page(where, limit, after))).all()
        return [ListedOrder(order_view(order), account_id, order.id) for order, account_id in rows]

    async def run(self, run_id: uuid.UUID) -> RunWithOrders | None:
        """One run with its orders, or None when no run has this id."""
        async with self._sessions() as session:
            row = await session.get(RunRow, run_id)
            if row is None:
                return None
            orders = await session.scalars(
                select(OrderRow).where(OrderRow.run_id == run_id).order_by(OrderRow.id)
            )
            return RunWithOrders(run_view(row), tuple(map(order_view, orders)))

    async def get_event(self, event_id: uuid.UUID) -> EventSummary | None:
        """The event's row, or None."""
        async with self._sessions() as session:
            row = await session.get(EventRow, event_id)
        return None if row is None else event_view(row)

    async def history(self, event_id: uuid.UUID) -> EventHistory | None:
        """An event with its transitions, runs and their orders, or None when unknown."""
        async with self._sessions() as session:
            row = await session.get(EventRow, event_id)
            if row is None:
                return None
            transitions = await session.scalars(
                select(TransitionRow)
                .where(TransitionRow.event_id == event_id)
                .order_by(TransitionRow.seq.nulls_first(), TransitionRow.at, TransitionRow.id)
            )
            runs = await session.scalars(
                select(RunRow).where(RunRow.event_id == event_id).order_by(RunRow.started_at)
            )
            orders = await session.scalars(
                select(OrderRow).where(OrderRow.event_id == event_id).order_by(OrderRow.id)
            )
            return history_view(row, transitions, runs, orders)

    async def last_run_status(self, account_ids: Sequence[str]) -> dict[str, RunView]:
        """The newest run of each account, by account id (accounts without runs omitted)."""
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
        return {row.account_id: run_view(row) for row in rows}

    async def get_fact(self, name: str) -> str | None:
        """A deployment fact (e.g. that the Redis marker was written), or None."""
        async with self._sessions() as session:
            row = await session.get(DeploymentFactRow, name)
            return row.value if row else None

    async def set_fact(self, name: str, value: str) -> None:
        """Record a deployment fact (upsert)."""
        async with self._sessions.begin() as session:
            stmt = (
                dialect_insert(session, DeploymentFactRow)
                .values(name=name, value=value, updated_at=_utcnow())
                .on_conflict_do_update(
                    index_elements=["name"], set_={"value": value, "updated_at": _utcnow()}
                )
            )
            await session.execute(stmt)

    async def ping(self) -> None:
        """Raise when the database does not answer."""
        async with self.engine.connect() as conn:
            await conn.execute(select(1))
