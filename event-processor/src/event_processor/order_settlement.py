"""Settling the orders an earlier run of the same event left open in the history, from the day's
executions (pure: the runner reads the rows and the executions, and writes what this returns).

A run that did not end by itself (its lease lost, its processor killed or stopped) leaves the orders
it had sent as it last saw them: `Submitted`, a part filled, or only `intent` when it stopped between
the intent write and the broker's answer. IB went on with them. The next live rebalance of the event
cancels every open order of the account first (engine step 1), so once it has run, none of those
orders can fill any more, and what they did is in the account's executions of the day:

- a row with its order's id (`perm_id`, or the order id when IB's perm id had not come yet) takes
  the executions of that order: `Filled` when they cover its quantity, else `Cancelled` (by that
  cancel, or before) with what did fill;
- an `intent` row (no id) takes an order the history never heard of: executions whose `order_ref` is
  the event's id and whose `perm_id` no row of the event holds, grouped by order, matched by symbol
  and side to the earliest such row; it gets the order's id and fills;
- an `intent` row left without one was never sent, or was cancelled before anything filled: it is
  `Cancelled` with nothing filled (both leave the account as if it was never sent).

Executions cover one trading day (IB hands over the day's, by New York date), so only rows written on
that day are settled; older rows stay as they were. Each settled row says so in its `message`.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from event_processor.brokers.models import BrokerExecution
from rebalancer_shared.store import FINAL_ORDER_STATUSES, OrderRecord, OrderView

FILLED = "Filled"
CANCELLED = "Cancelled"
_SHARE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class SettledOrder:
    """An earlier run's order row, as the day's executions settle it."""

    run_id: uuid.UUID
    record: OrderRecord


def unsettled(rows: Iterable[OrderView], current_run: uuid.UUID, since: datetime) -> list[OrderView]:
    """The rows of other runs, written since `since`, whose order may still have done something."""
    return [
        r
        for r in rows
        if r.run_id != current_run and r.status not in FINAL_ORDER_STATUSES and r.created_at >= since
    ]


def _record(row: OrderView, fills: Sequence[BrokerExecution], perm_id: int | None, note: str) -> OrderRecord:
    filled = sum(e.shares for e in fills)
    average = sum(e.shares * e.price for e in fills) / filled if filled else None
    done = filled >= row.quantity * (1 - _SHARE_TOLERANCE)
    order_id = row.broker_order_id or (fills[0].order_id if fills and fills[0].order_id else None)
    return OrderRecord(
        symbol=row.symbol,
        action=row.action,
        quantity=row.quantity,
        order_type=row.order_type,
        order_ref=row.order_ref,
        status=FILLED if done else CANCELLED,
        filled_quantity=filled,
        avg_fill_price=average,
        limit_price=row.limit_price,
        broker_order_id=order_id,
        perm_id=perm_id,
        seq=row.seq,
        message=note,
    )


@dataclass(frozen=True)
class _Executions:
    """The event's executions of the day, by order (its perm id), and each order id's perm id."""

    by_order: dict[int, list[BrokerExecution]]
    perm_of: dict[int, int]

    @classmethod
    def of(cls, executions: Iterable[BrokerExecution], event_ref: str) -> _Executions:
        by_order: dict[int, list[BrokerExecution]] = defaultdict(list)
        perm_of: dict[int, int] = {}
        for execution in executions:
            if execution.order_ref == event_ref and execution.perm_id:
                by_order[execution.perm_id].append(execution)
                if execution.order_id:
                    perm_of[execution.order_id] = execution.perm_id
        return cls(by_order, perm_of)

    def perm_of_row(self, row: OrderView) -> int | None:
        """The row's order, by its perm id, else by its order id (None: only its intent is known)."""
        if row.perm_id:
            return row.perm_id
        return self.perm_of.get(row.broker_order_id or 0) if row.broker_order_id else None


def settle(
    rows: Sequence[OrderView],
    executions: Sequence[BrokerExecution],
    event_ref: str,
    current_run: uuid.UUID,
    since: datetime,
) -> list[SettledOrder]:
    """What every unsettled row of an earlier run did (see the module doc); `rows`: every order row
    of the event (the current run's too: their orders are not given to another row)."""
    day = _Executions.of(executions, event_ref)
    known = {perm for perm in map(day.perm_of_row, rows) if perm}
    strangers = sorted(
        (perm for perm in day.by_order if perm not in known),
        key=lambda p: min(e.time for e in day.by_order[p]),
    )
    open_rows = unsettled(rows, current_run, since)
    intents = sorted(
        (r for r in open_rows if not r.perm_id and not r.broker_order_id),
        key=lambda r: (r.created_at, r.seq or 0),
    )
    matched = _match(intents, strangers, day.by_order)
    return [SettledOrder(row.run_id, _settled(row, day, matched.get(id(row)))) for row in open_rows]


def _settled(row: OrderView, day: _Executions, stranger: int | None) -> OrderRecord:
    if stranger is not None:
        note = f"settled by a later run: IB had it as order {stranger} (its id was never recorded)"
        return _record(row, day.by_order[stranger], stranger, note)
    perm = day.perm_of_row(row)
    if row.perm_id or row.broker_order_id:
        fills = day.by_order.get(perm, []) if perm else []
        note = f"settled by a later run from the day's executions ({len(fills)} of this order)"
        return _record(row, fills, perm or row.perm_id, note)
    note = "settled by a later run: no execution of it today (never sent, or cancelled unfilled)"
    return _record(row, [], None, note)


def _match(
    intents: Sequence[OrderView], strangers: Sequence[int], by_order: dict[int, list[BrokerExecution]]
) -> dict[int, int]:
    """Each order the history never heard of, given to the earliest intent row of its symbol and side."""
    matched: dict[int, int] = {}
    for perm in strangers:
        first = by_order[perm][0]
        row = next(
            (
                r
                for r in intents
                if id(r) not in matched and (r.symbol, r.action) == (first.symbol, first.side)
            ),
            None,
        )
        if row is not None:
            matched[id(row)] = perm
    return matched
