"""Events per hour from the history: how many were accepted, completed and failed (the console's chart).

Counted in the database, grouped by the hour (UTC) of each row's time, so only one row per hour
and kind comes back: accepted from `events.created_at`, completed and failed from
`event_transitions` (a failed run is a `retrying` or `needs_attention` transition; `scheduled` is a
market that was closed, not a failure). Both time columns are indexed (`ix_events_created`,
`ix_event_transitions_at`), so a call reads the last day's rows only; the console asks every 30 s,
not on every refresh. Hours without any row are filled with zeros, so a chart gets one bar per hour.

The hour is truncated per dialect (PostgreSQL's `date_trunc` on the UTC time, SQLite's `strftime`
for the demo), both giving a naive UTC time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from rebalancer_shared.store.records import Transition
from rebalancer_shared.store.tables import EventRow, TransitionRow

HOUR = timedelta(hours=1)
FAILED = (Transition.RETRYING.value, Transition.NEEDS_ATTENTION.value)


@dataclass(frozen=True)
class HourActivity:
    """One hour (starting at `hour`, UTC): events accepted, runs completed and runs failed in it."""

    hour: datetime
    accepted: int = 0
    completed: int = 0
    failed: int = 0


def _hour_of(column: Any, dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.date_trunc("hour", func.timezone("UTC", column))
    return func.strftime("%Y-%m-%d %H:00:00", column)


def _as_hour(value: datetime | str) -> datetime:
    hour = datetime.fromisoformat(value) if isinstance(value, str) else value
    return hour.replace(tzinfo=UTC) if hour.tzinfo is None else hour.astimezone(UTC)


def start_of_hour(at: datetime) -> datetime:
    """The hour `at` falls in (UTC)."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


async def hourly_activity(engine: AsyncEngine, until: datetime, hours: int = 24) -> list[HourActivity]:
    """The `hours` hours up to and including the one `until` falls in, oldest first."""
    first = start_of_hour(until) - (hours - 1) * HOUR
    dialect = engine.dialect.name
    accepted_hour = _hour_of(EventRow.created_at, dialect)
    accepted = select(accepted_hour, func.count()).where(EventRow.created_at >= first).group_by(accepted_hour)
    changed_hour = _hour_of(TransitionRow.at, dialect)
    finished = (
        select(changed_hour, TransitionRow.state, func.count())
        .where(TransitionRow.at >= first, TransitionRow.state.in_((Transition.COMPLETED.value, *FAILED)))
        .group_by(changed_hour, TransitionRow.state)
    )
    async with engine.connect() as conn:
        accepted_rows = (await conn.execute(accepted)).all()
        finished_rows = (await conn.execute(finished)).all()
    counts: dict[datetime, dict[str, int]] = {first + i * HOUR: {} for i in range(hours)}
    _add(counts, ((hour, "accepted", n) for hour, n in accepted_rows))
    _add(counts, ((hour, _kind(state), n) for hour, state, n in finished_rows))
    return [HourActivity(hour, **kinds) for hour, kinds in counts.items()]


def _kind(state: str) -> str:
    return "completed" if state == Transition.COMPLETED else "failed"


def _add(counts: dict[datetime, dict[str, int]], rows: Iterable[tuple[datetime | str, str, int]]) -> None:
    for raw_hour, kind, n in rows:
        kinds = counts.get(_as_hour(raw_hour))
        if kinds is not None:  # a row written after `until` (clock skew) has no bar
            kinds[kind] = kinds.get(kind, 0) + int(n)
