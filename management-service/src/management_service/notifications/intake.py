"""New transitions in the history -> pending messages, one per (transition, target).

The history in PostgreSQL is the source: a transition is there once the lifecycle wrote it, or the
outbox drain did after a crash (a processor SIGKILLed at the moment of completion changes nothing
but the delay). Only transitions that can be notified are written with `notification_pending` set
(history_writes.py). In one transaction the intake reads a batch of flagged transitions (on
PostgreSQL `FOR UPDATE SKIP LOCKED`: replicas split the work), queues a message for each target that
wants one (rows.insert_drafts: unique by key and target), and clears the flags. A crash before the
commit changes nothing; after it, every message is queued.

Each transition is handled in a savepoint of its own: one that cannot be turned into its messages
(a stored value this release cannot read) is logged, counted (`intake_error`), queued as a plain
message saying so to the targets that want its outcome, and its flag cleared, so it never stops the
others. Transitions older than `MAX_AGE` when first seen (history written during a long PostgreSQL
outage) are not news any more: they are logged, counted (`skipped_old`) and not sent. A failure the
same event already reported within the hour, with the same class, is counted (`suppressed`) and not
sent (rules.failure_is_news).

A flag rather than a watermark: rows commit out of id order (two writers) and late (a drain after a
crash or an outage), and a watermark would pass over them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import structlog
from sqlalchemy import Row, Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from management_service.notifications.messages import transition_message
from management_service.notifications.rows import Draft, insert_drafts
from management_service.notifications.rules import TransitionFacts, failure_is_news, outcomes, outcomes_of
from management_service.notifications.runs import ended_run
from management_service.notifications.targets import Target
from rebalancer_shared.events import Command, ExecutionMode
from rebalancer_shared.logging import redact_text
from rebalancer_shared.notification_targets import NotifyOn
from rebalancer_shared.store import Transition
from rebalancer_shared.store.history_writes import is_postgres
from rebalancer_shared.store.tables import EventRow, NotificationRow, TransitionRow
from rebalancer_shared.store.views import as_utc

log = structlog.get_logger(__name__)

INTAKE_BATCH = 200
MAX_AGE = timedelta(days=1)
_NEEDS_RUN = frozenset({NotifyOn.TRADED, NotifyOn.COMPLETED})


class Taken(StrEnum):
    """What the intake did with one transition."""

    QUEUED = "queued"  # its messages (none, when no target wants it)
    SKIPPED_OLD = "skipped_old"
    SUPPRESSED = "suppressed"
    ERROR = "error"


@dataclass
class IntakeReport:
    """How many transitions one batch looked at, and how many of them ended how."""

    seen: int = 0
    skipped_old: int = 0
    suppressed: int = 0
    errors: int = 0

    def add(self, taken: Taken) -> None:
        """Count one transition's outcome."""
        self.seen += 1
        if taken is Taken.SKIPPED_OLD:
            self.skipped_old += 1
        elif taken is Taken.SUPPRESSED:
            self.suppressed += 1
        elif taken is Taken.ERROR:
            self.errors += 1


Pending = Row[TransitionRow, str, str]


def _facts(row: Pending) -> TransitionFacts:
    t, account_id, command = row
    return TransitionFacts(
        row_id=t.id,
        seq=t.seq,
        event_id=t.event_id,
        account_id=account_id,
        command=Command(command),
        state=Transition(t.state),
        times_queued=t.times_queued,
        detail=t.detail,
        failure_class=t.failure_class,
        due_at=None if t.due_at is None else as_utc(t.due_at),
        at=as_utc(t.at),
    )


def _choices(facts: TransitionFacts, targets: Sequence[Target]) -> list[tuple[Target, NotifyOn]]:
    """Each target that wants this transition, with the most specific kind it asked for."""
    chosen = []
    for target in targets:
        kind = next((k for k in outcomes(facts) if target.wants(k, facts.account_id, facts.live)), None)
        if kind is not None:
            chosen.append((target, kind))
    return chosen


async def _failure_is_news(session: AsyncSession, facts: TransitionFacts) -> bool:
    last = (
        await session.execute(
            select(NotificationRow.failure_class, NotificationRow.occurred_at)
            .where(NotificationRow.event_id == facts.event_id, NotificationRow.kind == NotifyOn.FAILED.value)
            .order_by(NotificationRow.id.desc())
            .limit(1)
        )
    ).first()
    if last is None:
        return True
    last_class, last_at = last
    return failure_is_news(facts, last_class, None if last_at is None else as_utc(last_at))


def _draft(facts: TransitionFacts, target: Target, kind: NotifyOn, title: str, body: str) -> Draft:
    return Draft(
        facts.key,
        target.target_id,
        kind,
        title,
        body,
        facts.account_id,
        facts.event_id,
        failure_class=facts.failure_class if kind is NotifyOn.FAILED else None,
        occurred_at=facts.at,
    )


async def _queue_messages(
    session: AsyncSession, row: Pending, targets: Sequence[Target], now: datetime
) -> Taken:
    facts = _facts(row)
    if as_utc(now) - facts.at > MAX_AGE:
        return Taken.SKIPPED_OLD
    chosen = _choices(facts, targets)
    if any(kind is NotifyOn.FAILED for _, kind in chosen) and not await _failure_is_news(session, facts):
        return Taken.SUPPRESSED
    needs_run = any(kind in _NEEDS_RUN for _, kind in chosen)
    run = await ended_run(session, facts) if needs_run else None
    drafts = []
    for target, kind in chosen:
        message = transition_message(kind, facts, run)
        drafts.append(_draft(facts, target, kind, message.title, message.body))
    await insert_drafts(session, drafts, now)
    return Taken.QUEUED


def fallback_drafts(
    row: tuple[TransitionRow, str, str], targets: Sequence[Target], error: str
) -> list[Draft]:
    """A plain message to the targets that want the transition's outcome, from its raw fields."""
    t, account_id, command = row
    try:
        state = Transition(t.state)
    except ValueError:  # a state this release does not know: nothing to say about it
        return []
    known = next((c for c in Command if c.value == command), None)
    kinds = outcomes_of(state, known)
    live = known is None or known.execution_mode is ExecutionMode.LIVE  # an unknown command: told
    title = f"{account_id}: {command} {t.state}"
    body = (
        f"{command} of {account_id}: {t.state}. The full message could not be written ({error}); "
        f"see the management service's log.\nEvent {t.event_id}"
    )
    key = f"transition:{t.seq}" if t.seq is not None else f"transition-row:{t.id}"
    drafts = []
    for target in targets:
        kind = next((k for k in kinds if target.wants(k, account_id, live)), None)
        if kind is not None:
            drafts.append(Draft(key, target.target_id, kind, title, body, account_id, t.event_id))
    return drafts


async def _take_one(session: AsyncSession, row: Pending, targets: Sequence[Target], now: datetime) -> Taken:
    try:
        async with session.begin_nested():
            return await _queue_messages(session, row, targets, now)
    except Exception as exc:
        error = redact_text(f"{type(exc).__name__}: {exc}").splitlines()[0][:300]
        transition = row[0]
        log.error(
            "notification intake: a transition could not be turned into its messages; a plain one "
            "is queued instead",
            transition_id=transition.id,
            event_id=str(transition.event_id),
            state=transition.state,
            error=error,
        )
    try:
        async with session.begin_nested():
            await insert_drafts(session, fallback_drafts((row[0], row[1], row[2]), targets, error), now)
    except Exception as exc:
        log.error("notification intake: the plain message was not queued either", error=str(exc)[:300])
    return Taken.ERROR


def _pending_batch(session: AsyncSession, batch: int) -> Select[TransitionRow, str, str]:
    query = (
        select(TransitionRow, EventRow.account_id, EventRow.exec_command)
        .join(EventRow, EventRow.event_id == TransitionRow.event_id)
        .where(TransitionRow.notification_pending)
        .order_by(TransitionRow.id)
        .limit(batch)
    )
    return query.with_for_update(skip_locked=True, of=TransitionRow) if is_postgres(session) else query


async def take_transitions(
    session: AsyncSession, targets: Sequence[Target], now: datetime, batch: int = INTAKE_BATCH
) -> IntakeReport:
    """Queue the messages of up to `batch` unseen transitions and clear their flags."""
    rows = (await session.execute(_pending_batch(session, batch))).all()
    report = IntakeReport()
    for row in rows:
        report.add(await _take_one(session, row, targets, now))
    if rows:
        await session.execute(
            update(TransitionRow)
            .where(TransitionRow.id.in_([row[0].id for row in rows]))
            .values(notification_pending=False)
            .execution_options(synchronize_session=False)
        )
    return report


async def clear_flags(session: AsyncSession) -> int:
    """No target wants transitions: clear every flag in one statement (nothing is read)."""
    result = await session.execute(
        update(TransitionRow)
        .where(TransitionRow.notification_pending)
        .values(notification_pending=False)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
