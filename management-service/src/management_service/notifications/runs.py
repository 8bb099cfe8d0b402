"""The run a `completed` or `rerun` transition ended, with its orders, for the message to describe.

No clock is compared: the transition's time is Redis's, a run's `started_at` the processor's. A
transition carries `times_queued`, which is the run's `attempt`. A success that met a trigger ends in
`rerun` and the event runs again under the same attempt number, so an attempt may have several
runs; the transition ended the one after as many earlier runs of that attempt as there are earlier
`rerun` transitions of it (ordered by `seq`, Redis's order). A transition without `seq` (rows of the
first release) or an attempt without runs falls back to the event's newest run.

The orders told are the run's own, and apart those of the attempts before it that did not succeed
(killed, interrupted, failed) since the event's previous success: a rebalance whose first attempt
sold and was killed, and whose retry bought, tells both.
"""

from __future__ import annotations

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from management_service.notifications.messages import OrderFacts, RunFacts
from management_service.notifications.rules import TransitionFacts
from rebalancer_shared.store import RunStatus, Transition
from rebalancer_shared.store.tables import OrderRow, RunRow, TransitionRow


async def _earlier_reruns(session: AsyncSession, facts: TransitionFacts) -> int:
    if facts.seq is None:
        return 0
    count = await session.scalar(
        select(func.count()).where(
            TransitionRow.event_id == facts.event_id,
            TransitionRow.state == Transition.RERUN.value,
            TransitionRow.times_queued == facts.times_queued,
            TransitionRow.seq < facts.seq,
        )
    )
    return int(count or 0)


def _newest(facts: TransitionFacts) -> Select[RunRow]:
    return (
        select(RunRow)
        .where(RunRow.event_id == facts.event_id)
        .order_by(RunRow.attempt.desc(), RunRow.started_at.desc())
        .limit(1)
    )


async def _run(session: AsyncSession, facts: TransitionFacts) -> RunRow | None:
    earlier = await _earlier_reruns(session, facts)
    run = await session.scalar(
        select(RunRow)
        .where(RunRow.event_id == facts.event_id, RunRow.attempt == facts.times_queued)
        .order_by(RunRow.started_at, RunRow.run_id)
        .offset(earlier)
        .limit(1)
    )
    return run if run is not None else await session.scalar(_newest(facts))


async def _try_of(session: AsyncSession, run: RunRow) -> list[RunRow]:
    """`run` and the event's runs before it back to (not including) its previous successful one."""
    runs = (
        await session.scalars(
            select(RunRow)
            .where(RunRow.event_id == run.event_id)
            .order_by(RunRow.attempt, RunRow.started_at, RunRow.run_id)
        )
    ).all()
    if run not in runs:
        return [run]
    end = runs.index(run)
    start = end
    while start > 0 and runs[start - 1].status != RunStatus.SUCCESS.value:
        start -= 1
    return list(runs[start : end + 1])


async def ended_run(session: AsyncSession, facts: TransitionFacts) -> RunFacts | None:
    """The run this transition ended, as stored (None: the history has no run of the event)."""
    run = await _run(session, facts)
    if run is None:
        return None
    tries = await _try_of(session, run)
    rows = (
        await session.scalars(
            select(OrderRow)
            .where(OrderRow.run_id.in_([r.run_id for r in tries]))
            .order_by(OrderRow.created_at, OrderRow.seq, OrderRow.id)
        )
    ).all()
    return RunFacts(
        status=run.status,
        error=run.error,
        message=run.message,
        equity_info=run.equity_info,
        plan=run.plan,
        orders=tuple(_facts(o) for o in rows if o.run_id == run.run_id),
        earlier_orders=tuple(_facts(o) for o in rows if o.run_id != run.run_id),
    )


def _facts(order: OrderRow) -> OrderFacts:
    return OrderFacts(
        order.symbol, order.action, order.quantity, order.filled_quantity, order.avg_fill_price, order.status
    )
