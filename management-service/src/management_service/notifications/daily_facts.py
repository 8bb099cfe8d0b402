"""What a day did, read from the history for the `daily` summary: counts per account and command.

Four grouped queries over one period `[start, end)`, each on an indexed time or status column
(`ix_events_created`, `ix_event_transitions_at`, `ix_orders_created`, `ix_events_status_created`),
so a day's summary reads the day's rows, however long the history:

- events accepted in the period (`events.created_at`);
- runs finished in it, as the transitions say: `completed` or `rerun` (a success), `retrying` or
  `needs_attention` (a failed run);
- the orders of live runs placed in it (not those only an `intent` records: never known to be
  sent): how many, how many filled (in part or whole), how many ended unfilled (cancelled or
  inactive: IB's rejections included), the rest with no outcome known (a stopped run's, until a
  later run settles them), and the value filled (quantity filled times its average price, buys and
  sells alike);
- the events unfinished now (`events.status`), by state: what waits for the next session or for an
  operator when the summary is read.

The rows stay per account and command, so one reading serves every target: an account's target
sees its account only, and a target without `dry_runs` sees the live commands only (`DayFacts.only`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rebalancer_shared.events import Command, ExecutionMode
from rebalancer_shared.store import Transition
from rebalancer_shared.store.records import FINAL_ORDER_STATUSES, INTENT, UNFINISHED
from rebalancer_shared.store.tables import EventRow, OrderRow, RunRow, TransitionRow

_SUCCEEDED = (Transition.COMPLETED.value, Transition.RERUN.value)
_FAILED = (Transition.RETRYING.value, Transition.NEEDS_ATTENTION.value)


@dataclass(frozen=True)
class Tally:
    """How many of `what` one account's events of one command had: `accepted`, `completed`,
    `failed` (runs), or `now:<state>` (events unfinished at the time of reading)."""

    account_id: str
    command: str
    what: str
    count: int

    @property
    def live(self) -> bool:
        """Whether the command acts on the account (an unknown command counts as live)."""
        try:
            return Command(self.command).execution_mode is ExecutionMode.LIVE
        except ValueError:
            return True


@dataclass(frozen=True)
class OrderTally:
    """One account's orders of live runs placed in the period (an `intent` alone is not placed):
    filled (in part or whole), ended unfilled, or with no outcome known yet (the rest)."""

    account_id: str
    placed: int
    filled: int
    ended_unfilled: int
    value: float

    @property
    def unknown(self) -> int:
        """Placed orders neither filled nor ended: a stopped run's, not settled (yet)."""
        return self.placed - self.filled - self.ended_unfilled


@dataclass(frozen=True)
class DayFacts:
    """A period's tallies and orders, per account (see the module doc)."""

    tallies: tuple[Tally, ...] = ()
    orders: tuple[OrderTally, ...] = field(default_factory=tuple)

    def only(self, account_id: str | None, dry_runs: bool) -> DayFacts:
        """What a target sees: one account's (None: every account), dry runs only if it wants them."""

        def mine(row_account: str) -> bool:
            return account_id is None or row_account == account_id

        return DayFacts(
            tuple(t for t in self.tallies if mine(t.account_id) and (dry_runs or t.live)),
            tuple(o for o in self.orders if mine(o.account_id)),
        )

    def count(self, what: str, account_id: str | None = None) -> int:
        """The sum of one kind of tally, of one account or all."""
        return sum(t.count for t in self.tallies if t.what == what and account_id in (None, t.account_id))

    def accounts(self) -> list[str]:
        """Every account with a tally or an order, sorted."""
        return sorted({t.account_id for t in self.tallies} | {o.account_id for o in self.orders})


def _tallies(rows: Iterable[tuple[str, str, str, int]]) -> list[Tally]:
    return [Tally(account, command, what, int(count)) for account, command, what, count in rows]


async def _accepted(session: AsyncSession, start: datetime, end: datetime) -> list[Tally]:
    rows = await session.execute(
        select(EventRow.account_id, EventRow.exec_command, func.count())
        .where(EventRow.created_at >= start, EventRow.created_at < end)
        .group_by(EventRow.account_id, EventRow.exec_command)
    )
    return _tallies((account, command, "accepted", n) for account, command, n in rows.all())


async def _finished(session: AsyncSession, start: datetime, end: datetime) -> list[Tally]:
    outcome = case((TransitionRow.state.in_(_SUCCEEDED), "completed"), else_="failed")
    rows = await session.execute(
        select(EventRow.account_id, EventRow.exec_command, outcome, func.count())
        .join(EventRow, EventRow.event_id == TransitionRow.event_id)
        .where(
            TransitionRow.at >= start,
            TransitionRow.at < end,
            TransitionRow.state.in_(_SUCCEEDED + _FAILED),
        )
        .group_by(EventRow.account_id, EventRow.exec_command, outcome)
    )
    return _tallies((account, command, what, n) for account, command, what, n in rows.all())


async def _waiting(session: AsyncSession) -> list[Tally]:
    rows = await session.execute(
        select(EventRow.account_id, EventRow.exec_command, EventRow.status, func.count())
        .where(EventRow.status.in_([s.value for s in UNFINISHED]))
        .group_by(EventRow.account_id, EventRow.exec_command, EventRow.status)
    )
    return _tallies((account, command, f"now:{state}", n) for account, command, state, n in rows.all())


async def _orders(session: AsyncSession, start: datetime, end: datetime) -> list[OrderTally]:
    filled = OrderRow.filled_quantity > 0
    rows = await session.execute(
        select(
            RunRow.account_id,
            func.count(),
            func.count(case((filled, 1))),
            func.count(case((~filled & OrderRow.status.in_(FINAL_ORDER_STATUSES), 1))),
            func.coalesce(
                func.sum(OrderRow.filled_quantity * func.coalesce(OrderRow.avg_fill_price, 0.0)), 0.0
            ),
        )
        .join(RunRow, RunRow.run_id == OrderRow.run_id)
        .where(
            OrderRow.created_at >= start,
            OrderRow.created_at < end,
            OrderRow.status != INTENT,
            RunRow.execution_mode == ExecutionMode.LIVE.value,
        )
        .group_by(RunRow.account_id)
    )
    return [OrderTally(a, int(p), int(f), int(u), float(v)) for a, p, f, u, v in rows.all()]


async def day_facts(session: AsyncSession, start: datetime, end: datetime) -> DayFacts:
    """The tallies of `[start, end)`, and the events unfinished now (see the module doc)."""
    tallies = [
        *await _accepted(session, start, end),
        *await _finished(session, start, end),
        *await _waiting(session),
    ]
    return DayFacts(tuple(tallies), tuple(await _orders(session, start, end)))
