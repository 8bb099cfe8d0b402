"""The `notifications` table: pending messages inserted once, claimed, and marked how they ended.

- **Dedup**: a row is unique by (`key`, `target`). `key` names what is notified (`transition:<seq>`:
  the outbox entry, unique in the history; `health:<component>:down:<since>`), so however often a
  transition or a health change is looked at (a crash, two replicas), it is queued once per target.
- **Claim**: due pending rows of one target are taken by moving their `next_attempt_at` a lease
  ahead, counting the attempt and writing a fresh claim token into `claimed_by`, in one transaction;
  on PostgreSQL the rows are selected `FOR UPDATE SKIP LOCKED`, so two replicas never claim the same
  row. No transaction is held while sending. Every later write (`sent`, a retry, a failure) names
  the token: a sender whose lease ran out and whose row someone else claimed since changes nothing.
  A process that dies mid-send leaves its rows pending; they are claimed again when the lease ends.
- **The one duplicate left**: a message delivered, then the process killed (or its lease run out)
  before its `sent` commit, is sent again after the lease. Nothing can close that window without the
  receiver's help.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from rebalancer_shared.logging import redact_text
from rebalancer_shared.notification_targets import NotifyOn
from rebalancer_shared.store.history_writes import dialect_insert, is_postgres
from rebalancer_shared.store.tables import NotificationRow

CLAIM_BATCH = 10


class NotificationStatus(StrEnum):
    """Where a message stands."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


PENDING = NotificationStatus.PENDING.value


@dataclass(frozen=True)
class Draft:
    """A message to queue for one target."""

    key: str
    target_id: str
    kind: NotifyOn
    title: str
    body: str
    account_id: str | None = None
    event_id: uuid.UUID | None = None
    failure_class: str | None = None  # of a `failed` message: what it reported
    occurred_at: datetime | None = None  # when what it reports happened (a transition's time)


@dataclass(frozen=True)
class Claimed:
    """A pending message this claimer may now send (until its lease ends)."""

    row_id: int
    key: str
    target_id: str
    title: str
    body: str
    attempts: int  # including this one
    created_at: datetime
    token: str  # the claim: only writes naming it change the row


async def insert_drafts(session: AsyncSession, drafts: Sequence[Draft], now: datetime) -> None:
    """Queue each draft unless its (key, target) is queued already (then nothing changes)."""
    if not drafts:
        return
    rows = [
        {
            "key": d.key,
            "target": d.target_id,
            "kind": d.kind.value,
            "account_id": d.account_id,
            "event_id": d.event_id,
            "title": redact_text(d.title),
            "body": redact_text(d.body),
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "failure_class": d.failure_class,
            "occurred_at": d.occurred_at,
        }
        for d in drafts
    ]
    insert = dialect_insert(session, NotificationRow.__table__)
    await session.execute(insert.on_conflict_do_nothing(index_elements=["key", "target"]), rows)


def _due(target_id: str, now: datetime) -> Any:
    return (
        NotificationRow.status == PENDING,
        NotificationRow.next_attempt_at <= now,
        NotificationRow.target == target_id,
    )


async def claim_due(
    session: AsyncSession, target_id: str, now: datetime, lease: timedelta, limit: int = CLAIM_BATCH
) -> list[Claimed]:
    """Take up to `limit` due pending rows of one target, oldest first (see the module doc)."""
    if limit <= 0:
        return []
    due = select(NotificationRow).where(*_due(target_id, now)).order_by(NotificationRow.id).limit(limit)
    if is_postgres(session):
        due = due.with_for_update(skip_locked=True)
    rows = (await session.scalars(due)).all()
    if not rows:
        return []
    token = uuid.uuid4().hex
    await session.execute(
        update(NotificationRow)
        .where(NotificationRow.id.in_([r.id for r in rows]))
        .values(next_attempt_at=now + lease, attempts=NotificationRow.attempts + 1, claimed_by=token)
        .execution_options(synchronize_session=False)
    )
    return [
        Claimed(r.id, r.key, r.target, r.title, r.body, r.attempts + 1, r.created_at, token) for r in rows
    ]


async def defer_due(session: AsyncSession, target_id: str, now: datetime, until: datetime) -> int:
    """Over the target's rate: its due rows wait until `until` (no attempt counted); how many."""
    result = await session.execute(
        update(NotificationRow)
        .where(*_due(target_id, now))
        .values(next_attempt_at=until)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result)


async def _set(session: AsyncSession, message: Claimed, **values: Any) -> None:
    await session.execute(
        update(NotificationRow)
        .where(
            NotificationRow.id == message.row_id,
            NotificationRow.status == PENDING,
            NotificationRow.claimed_by == message.token,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def mark_sent(session: AsyncSession, message: Claimed, now: datetime) -> None:
    """Delivered."""
    await _set(session, message, status=NotificationStatus.SENT.value, sent_at=now, last_error=None)


async def mark_retry(session: AsyncSession, message: Claimed, at: datetime, error: str) -> None:
    """Not delivered: try again at `at`."""
    await _set(session, message, next_attempt_at=at, last_error=redact_text(error)[:1000])


async def mark_failed(session: AsyncSession, message: Claimed, error: str) -> None:
    """Not delivered, and given up."""
    await _set(session, message, status=NotificationStatus.FAILED.value, last_error=redact_text(error)[:1000])


async def fail_unconfigured(session: AsyncSession, target_ids: Sequence[str]) -> list[tuple[str, int]]:
    """Mark failed the pending rows of targets no longer configured; (target, count) of each."""
    gone = NotificationRow.status == PENDING, NotificationRow.target.not_in(list(target_ids))
    counts = await session.execute(
        select(NotificationRow.target, func.count()).where(*gone).group_by(NotificationRow.target)
    )
    found = [(str(target), int(count)) for target, count in counts.all()]
    if found:
        await session.execute(
            update(NotificationRow)
            .where(*gone)
            .values(status=NotificationStatus.FAILED.value, last_error="its target is no longer configured")
            .execution_options(synchronize_session=False)
        )
    return found


async def delete_sent_before(session: AsyncSession, before: datetime) -> int:
    """Delete the rows sent before `before` (the retention); how many."""
    result = await session.execute(
        delete(NotificationRow)
        .where(NotificationRow.status == NotificationStatus.SENT.value, NotificationRow.sent_at < before)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result)


async def oldest_pending(session: AsyncSession) -> datetime | None:
    """When the oldest pending message was queued (None: nothing pending)."""
    oldest: datetime | None = await session.scalar(
        select(func.min(NotificationRow.created_at)).where(NotificationRow.status == PENDING)
    )
    return oldest


def _rowcount(result: Any) -> int:
    return int(result.rowcount) if isinstance(result, CursorResult) else 0
