"""The `notifications` table: pending messages inserted once, claimed, and marked how they ended.

- **Dedup**: a row is unique by (`key`, `target`). `key` names what is notified (`transition:<seq>`:
  the outbox entry, unique in the history; `health:<component>:down:<since>`), so however often a
  transition or a health change is looked at (a crash, two replicas), it is queued once per target.
- **Claim**: due pending rows are taken by moving their `next_attempt_at` one claim lease ahead and
  counting the attempt, in one transaction; on PostgreSQL the rows are selected `FOR UPDATE SKIP
  LOCKED`, so two replicas never claim the same row. No transaction is held while sending. A process
  that dies mid-send leaves its rows pending; they are claimed again when the lease ends.
- **The one duplicate left**: a message delivered, then the process killed before its `sent` commit,
  is sent again after the lease. Nothing can close that window without the receiver's help.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from rebalancer_shared.logging import redact_text
from rebalancer_shared.store.history_writes import dialect_insert
from rebalancer_shared.store.tables import NotificationRow

PENDING, SENT, FAILED = "pending", "sent", "failed"
CLAIM_BATCH = 50


@dataclass(frozen=True)
class Draft:
    """A message to queue for one target."""

    key: str
    target_id: str
    kind: str
    title: str
    body: str
    account_id: str | None = None
    event_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Claimed:
    """A pending message this process may now send (until its lease ends)."""

    row_id: int
    key: str
    target_id: str
    title: str
    body: str
    attempts: int  # including this one


def _is_postgres(session: AsyncSession) -> bool:
    return session.bind is not None and session.bind.dialect.name == "postgresql"


async def insert_drafts(session: AsyncSession, drafts: Sequence[Draft], now: datetime) -> None:
    """Queue each draft unless its (key, target) is queued already (then nothing changes)."""
    if not drafts:
        return
    rows = [
        {
            "key": d.key,
            "target": d.target_id,
            "kind": d.kind,
            "account_id": d.account_id,
            "event_id": d.event_id,
            "title": redact_text(d.title),
            "body": redact_text(d.body),
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for d in drafts
    ]
    insert = dialect_insert(session, NotificationRow.__table__)
    await session.execute(insert.on_conflict_do_nothing(index_elements=["key", "target"]), rows)


async def claim_due(
    session: AsyncSession,
    target_ids: Sequence[str],
    now: datetime,
    lease: timedelta,
    limit: int = CLAIM_BATCH,
) -> list[Claimed]:
    """Take up to `limit` due pending rows of these targets, oldest first (see the module doc)."""
    due = (
        select(NotificationRow)
        .where(
            NotificationRow.status == PENDING,
            NotificationRow.next_attempt_at <= now,
            NotificationRow.target.in_(list(target_ids)),
        )
        .order_by(NotificationRow.id)
        .limit(limit)
    )
    if _is_postgres(session):
        due = due.with_for_update(skip_locked=True)
    rows = (await session.scalars(due)).all()
    if not rows:
        return []
    await session.execute(
        update(NotificationRow)
        .where(NotificationRow.id.in_([r.id for r in rows]))
        .values(next_attempt_at=now + lease, attempts=NotificationRow.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    return [Claimed(r.id, r.key, r.target, r.title, r.body, r.attempts + 1) for r in rows]


async def _set(session: AsyncSession, row_id: int, **values: Any) -> None:
    await session.execute(
        update(NotificationRow)
        .where(NotificationRow.id == row_id, NotificationRow.status == PENDING)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def mark_sent(session: AsyncSession, row_id: int, now: datetime) -> None:
    """Delivered."""
    await _set(session, row_id, status=SENT, sent_at=now, last_error=None)


async def mark_retry(session: AsyncSession, row_id: int, at: datetime, error: str) -> None:
    """Not delivered: try again at `at`."""
    await _set(session, row_id, next_attempt_at=at, last_error=redact_text(error)[:1000])


async def mark_failed(session: AsyncSession, row_id: int, error: str) -> None:
    """Not delivered, and no attempts left."""
    await _set(session, row_id, status=FAILED, last_error=redact_text(error)[:1000])


async def defer(session: AsyncSession, row_id: int, at: datetime) -> None:
    """Over the target's rate: wait until `at`; the claim does not count as an attempt."""
    await _set(session, row_id, next_attempt_at=at, attempts=NotificationRow.attempts - 1)
