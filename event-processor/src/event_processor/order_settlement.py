"""Settling the orders an earlier run of the same event left open in the history, from the day's
executions (pure: the runner reads the rows and the executions, and writes what this returns).

A run that did not end by itself (its lease lost, its processor killed or stopped) leaves the orders
it had sent as it last saw them: `Submitted`, a part filled, or only `intent` when it stopped between
the intent write and the broker's answer. IB went on with them. The next live rebalance of the event
cancels every open order of the account first (engine step 1), so once it has run, none of those
orders can fill any more, and what they did is in the account's executions of the day, as the run's
trading connection sees them (the account's fixed client id: every earlier run's orders):

- a row with its order's id (`perm_id`, or the order id when IB's perm id had not come yet) takes
  the executions of that order: `Filled` when they cover its quantity, else `Cancelled` (by that
  cancel, or before) with what did fill;
- an `intent` row (no id) takes an order the history never heard of (executions whose `order_ref` is
  the event's id and whose order no row of the event holds) when it is the one intent that order
  can be: the same symbol and side, a quantity the fills fit in. It gets the order's id and fills.
  Two intents that one such order could be are left as they are (nothing says which it was);
- an `intent` row no such order can be was never sent, or was cancelled before anything filled: it
  is `Cancelled` with nothing filled (both leave the account as if it was never sent).

What a row recorded is never lowered: a fill it holds stays, whatever the executions show. Each
settled row keeps its message (IB's rejection text, say) and adds how it was settled.

Executions cover one trading day (IB hands over the day's, by New York date), so only rows written on
that day are settled; older rows stay as they were (no rebalance trades near midnight in New York,
so the processor's clock and the gateway's agree on the day).
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


def _record(row: OrderView, fills: Sequence[BrokerExecution], perm_id: int | None, how: str) -> OrderRecord:
    executed = sum(e.shares for e in fills)
    filled, average = row.filled_quantity, row.avg_fill_price
    if executed > filled:  # never lower what the row recorded
        filled, average = executed, sum(e.shares * e.price for e in fills) / executed
    order_id = row.broker_order_id or (fills[0].order_id if fills and fills[0].order_id else None)
    return OrderRecord(
        symbol=row.symbol,
        action=row.action,
        quantity=row.quantity,
        order_type=row.order_type,
        order_ref=row.order_ref,
        status=FILLED if filled >= row.quantity * (1 - _SHARE_TOLERANCE) else CANCELLED,
        filled_quantity=filled,
        avg_fill_price=average,
        limit_price=row.limit_price,
        broker_order_id=order_id,
        perm_id=perm_id,
        seq=row.seq,
        message=f"{row.message}; {how}" if row.message else how,
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

    def strangers(self, rows: Iterable[OrderView], since: datetime) -> list[int]:
        """The orders no row holds, earliest first. Perm ids are IB's for good; an order id only
        names an order of the day (rows before `since` are matched by perm id alone)."""
        known = {r.perm_id for r in rows if r.perm_id}
        known |= {p for r in rows if r.created_at >= since and (p := self.perm_of_row(r))}
        found = (p for p in self.by_order if p not in known)
        return sorted(found, key=lambda p: min(e.time for e in self.by_order[p]))


def settle(
    rows: Sequence[OrderView],
    executions: Sequence[BrokerExecution],
    event_ref: str,
    current_run: uuid.UUID,
    since: datetime,
) -> list[SettledOrder]:
    """What every unsettled row of an earlier run did, as far as it can be told (see the module doc);
    `rows`: every order row of the event (the current run's too: their orders are no stranger)."""
    day = _Executions.of(executions, event_ref)
    open_rows = unsettled(rows, current_run, since)
    intents = [r for r in open_rows if not r.perm_id and not r.broker_order_id]
    matched, doubtful = _match(intents, day.strangers(rows, since), day.by_order)
    return [
        SettledOrder(row.run_id, _settled(row, day, matched.get(id(row))))
        for row in open_rows
        if id(row) not in doubtful
    ]


def _settled(row: OrderView, day: _Executions, stranger: int | None) -> OrderRecord:
    if stranger is not None:
        how = f"settled by a later run: IB had it as order {stranger} (its id was never recorded)"
        return _record(row, day.by_order[stranger], stranger, how)
    if row.perm_id or row.broker_order_id:
        perm = day.perm_of_row(row)
        fills = day.by_order.get(perm, []) if perm else []
        how = f"settled by a later run from the day's executions ({len(fills)} of this order)"
        return _record(row, fills, perm or row.perm_id, how)
    how = "settled by a later run: no execution of it today (never sent, or cancelled unfilled)"
    return _record(row, [], None, how)


def _match(
    intents: Sequence[OrderView], strangers: Sequence[int], by_order: dict[int, list[BrokerExecution]]
) -> tuple[dict[int, int], set[int]]:
    """Each stranger order given to the one intent it can be (by `id()` of the row), and the intents
    left in doubt: those a stranger could be more than one of. A match can settle a doubt (the order
    of 4 is the intent of 4, so the order of 3 is the intent of 3): passes repeat while they match."""
    matched: dict[int, int] = {}
    left = list(strangers)
    while True:
        candidates = {perm: _fits(intents, by_order[perm], matched) for perm in left}
        sure = {perm: fits[0] for perm, fits in candidates.items() if len(fits) == 1}
        if not sure:
            return matched, {id(r) for fits in candidates.values() for r in fits} - set(matched)
        for perm, row in sure.items():
            if id(row) not in matched:  # two orders sure of one intent: the earlier keeps it
                matched[id(row)] = perm
                left.remove(perm)


def _fits(
    intents: Sequence[OrderView], fills: Sequence[BrokerExecution], matched: dict[int, int]
) -> list[OrderView]:
    """The intents not matched yet that an order with these fills can be."""
    executed = sum(e.shares for e in fills)
    return [
        r
        for r in intents
        if id(r) not in matched
        and (r.symbol, r.action) == (fills[0].symbol, fills[0].side)
        and executed <= r.quantity * (1 + _SHARE_TOLERANCE)
    ]
