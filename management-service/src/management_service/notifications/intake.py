"""New transitions in the history -> pending messages, one per (transition, target).

The history in PostgreSQL is the source: a transition is there once the lifecycle wrote it, or the
outbox drain did after a crash (a processor SIGKILLed at the moment of completion changes nothing
but the delay). In one transaction the intake reads transitions whose `notification_pending` flag
is still set (on PostgreSQL `FOR UPDATE SKIP LOCKED`: replicas split the work), queues a message for
each target that wants one (rows.insert_drafts: unique by key and target), and clears the flags.
A crash before the commit changes nothing; after it, every message is queued.

A flag rather than a watermark: rows commit out of id order (two writers) and late (a drain after a
crash or an outage), and a watermark would pass over them. Transitions older than `MAX_AGE` when
first seen (history written during a long PostgreSQL outage, or before notifications were set up)
are not news any more: they are marked and not sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from management_service.notifications.messages import OrderFacts, RunFacts, transition_message
from management_service.notifications.rows import Draft, insert_drafts
from management_service.notifications.rules import TransitionFacts, outcomes
from management_service.notifications.targets import Target
from rebalancer_shared.events import Command
from rebalancer_shared.notification_targets import NotifyOn
from rebalancer_shared.store import Transition
from rebalancer_shared.store.tables import EventRow, OrderRow, RunRow, TransitionRow

INTAKE_BATCH = 200
MAX_AGE = timedelta(days=1)
_NEEDS_RUN = frozenset({NotifyOn.TRADED, NotifyOn.COMPLETED})


def _facts(row: Row[TransitionRow, str, str]) -> TransitionFacts | None:
    t, account_id, command = row
    try:
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
            due_at=t.due_at,
            at=t.at,
        )
    except ValueError:  # a state or command this release does not know: nothing to say about it
        return None


async def _run_facts(session: AsyncSession, event_id: uuid.UUID, before: datetime) -> RunFacts | None:
    run = await session.scalar(
        select(RunRow)
        .where(RunRow.event_id == event_id, RunRow.started_at <= before)
        .order_by(RunRow.started_at.desc())
        .limit(1)
    )
    if run is None:
        return None
    orders = await session.scalars(
        select(OrderRow).where(OrderRow.run_id == run.run_id).order_by(OrderRow.seq, OrderRow.id)
    )
    return RunFacts(
        status=run.status,
        error=run.error,
        message=run.message,
        equity_info=run.equity_info,
        plan=run.plan,
        orders=tuple(
            OrderFacts(o.symbol, o.action, o.quantity, o.filled_quantity, o.avg_fill_price, o.status)
            for o in orders
        ),
    )


def _choices(facts: TransitionFacts, targets: Sequence[Target]) -> list[tuple[Target, NotifyOn]]:
    """Each target that wants this transition, with the most specific kind it asked for."""
    chosen = []
    for target in targets:
        kind = next((k for k in outcomes(facts) if target.wants(k, facts.account_id, facts.live)), None)
        if kind is not None:
            chosen.append((target, kind))
    return chosen


async def _drafts(session: AsyncSession, facts: TransitionFacts, targets: Sequence[Target]) -> list[Draft]:
    chosen = _choices(facts, targets)
    needs_run = any(kind in _NEEDS_RUN for _, kind in chosen)
    run = await _run_facts(session, facts.event_id, facts.at) if needs_run else None
    drafts = []
    for target, kind in chosen:
        message = transition_message(kind, facts, run)
        drafts.append(
            Draft(
                facts.key,
                target.target_id,
                kind.value,
                message.title,
                message.body,
                facts.account_id,
                facts.event_id,
            )
        )
    return drafts


async def take_transitions(
    session: AsyncSession, targets: Sequence[Target], now: datetime, batch: int = INTAKE_BATCH
) -> int:
    """Queue the messages of up to `batch` unseen transitions and mark them seen; return how many."""
    query = (
        select(TransitionRow, EventRow.account_id, EventRow.exec_command)
        .join(EventRow, EventRow.event_id == TransitionRow.event_id)
        .where(TransitionRow.notification_pending)
        .order_by(TransitionRow.id)
        .limit(batch)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=TransitionRow)
    rows = (await session.execute(query)).all()
    drafts: list[Draft] = []
    for row in rows:
        facts = _facts(row)
        if facts is not None and now - facts.at <= MAX_AGE:
            drafts += await _drafts(session, facts, targets)
    await insert_drafts(session, drafts, now)
    if rows:
        await session.execute(
            update(TransitionRow)
            .where(TransitionRow.id.in_([row[0].id for row in rows]))
            .values(notification_pending=False)
            .execution_options(synchronize_session=False)
        )
    return len(rows)
