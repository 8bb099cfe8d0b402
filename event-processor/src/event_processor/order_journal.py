"""`RecordedOrders`: the live run's `OrderGuard`, writing every order to the history as it goes.

Each order gets its place in the run (`seq`, counting sells then buys) and one row in `orders`,
keyed by (run_id, seq): written with status `intent` before the batch is sent (and the send refused
if that write fails: no order without a record), updated with the broker's ids once sent and with
its fills when the run stops waiting. The fence is checked before the intent write and again after
it, right before the send. A later attempt settles what earlier runs of the event left open, once the
account's open orders are cancelled (`settle_earlier`, event_processor.order_settlement).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, time

import structlog

from event_processor.brokers.day_trades import NEW_YORK, trading_day
from event_processor.brokers.models import OrderRequest, OrderResult
from event_processor.execution.guard import ReadExecutions
from event_processor.order_settlement import settle, unsettled
from rebalancer_shared.queue import LeaseFence
from rebalancer_shared.store import FINAL_ORDER_STATUSES, INTENT, EventStore, OrderRecord

log = structlog.get_logger(__name__)
# The longest a live run's first reads wait for the settlement of earlier runs' orders.
SETTLE_SECONDS = 5.0


def _row(order: OrderResult, seq: int) -> OrderRecord:
    return OrderRecord(
        symbol=order.symbol,
        action=order.action,
        quantity=order.quantity,
        order_type=order.order_type,
        order_ref=order.order_ref,
        status=order.status,
        filled_quantity=order.filled_quantity,
        avg_fill_price=order.avg_fill_price or None,
        limit_price=order.limit_price,
        broker_order_id=order.order_id,
        perm_id=order.perm_id,
        seq=seq,
        message=order.message or None,
    )


class RecordedOrders:
    """One run's orders in the history, and its lease fence in front of every action."""

    def __init__(
        self,
        store: EventStore,
        run_id: uuid.UUID,
        event_id: uuid.UUID,
        fence: LeaseFence,
        order_type: str,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.event_id = event_id
        self.fence = fence
        self.order_type = order_type
        self._next_seq = 0
        self._batch: list[int] = []
        self._seq_of: dict[int, int] = {}
        self._status: dict[int, str] = {}

    @property
    def unsettled(self) -> bool:
        """Some order of the run was (or may have been) sent and never reached a final status."""
        return any(status not in FINAL_ORDER_STATUSES for status in self._status.values())

    def check(self, action: str) -> None:
        self.fence.check(action)

    async def before_placing(self, requests: Sequence[OrderRequest]) -> None:
        self.fence.check("place orders")
        first = self._next_seq
        self._batch = list(range(first, first + len(requests)))
        self._next_seq += len(requests)
        intents = [
            OrderRecord(
                symbol=r.symbol,
                action=r.action,
                quantity=r.quantity,
                order_type=self.order_type,
                order_ref=str(self.event_id),
                status=INTENT,
                seq=seq,
            )
            for r, seq in zip(requests, self._batch, strict=True)
        ]
        await self.store.save_orders(self.run_id, self.event_id, intents)
        self._status.update((seq, INTENT) for seq in self._batch)
        self.fence.check("place orders")

    async def placed(self, orders: Sequence[OrderResult]) -> None:
        for order, seq in zip(orders, self._batch, strict=True):
            self._seq_of[order.order_id] = seq
        await self._save(orders)

    async def settled(self, orders: Sequence[OrderResult]) -> None:
        await self._save(orders)

    def _rows(self, orders: Sequence[OrderResult]) -> list[OrderRecord]:
        rows = [_row(o, self._seq_of[o.order_id]) for o in orders if o.order_id in self._seq_of]
        self._status.update((row.seq, row.status) for row in rows if row.seq is not None)
        return rows

    async def _save(self, orders: Sequence[OrderResult]) -> None:
        rows = self._rows(orders)
        try:
            await self.store.save_orders(self.run_id, self.event_id, rows)
        except Exception as exc:  # the intent rows stand; the run's end writes the orders again
            log.warning("order update not recorded yet", error=str(exc).splitlines()[0], orders=len(rows))

    async def settle_earlier(self, executions: ReadExecutions) -> None:
        # One indexed read of the event's orders, beside the run's first account reads; bounded, so
        # a slow database or gateway holds the trading up by SETTLE_SECONDS at most.
        try:
            async with asyncio.timeout(SETTLE_SECONDS):
                await self._settle_earlier(executions)
        except Exception as exc:  # a timeout too: the earlier runs' rows stay as they were
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("orders left open by earlier runs not settled", error=why)

    async def _settle_earlier(self, executions: ReadExecutions) -> None:
        since = datetime.combine(trading_day(datetime.now(UTC)), time(0), tzinfo=NEW_YORK)
        rows = await self.store.event_orders(self.event_id)
        left_open = unsettled(rows, self.run_id, since)
        if not left_open:
            return
        found = settle(rows, await executions(), str(self.event_id), self.run_id, since)
        note = f"its orders were settled later from the day's executions, by run {self.run_id}"
        closed = await self.store.settle_orders(self.event_id, [(s.run_id, s.record) for s in found], note)
        log.info(
            "orders left open by earlier runs settled from the day's executions",
            orders=len(found),
            filled=sum(1 for s in found if s.record.filled_quantity > 0),
            left_in_doubt=len(left_open) - len(found),
            runs_no_longer_unknown=closed,
        )

    async def record_all(self, orders: Sequence[OrderResult]) -> None:
        """The run's last word on its orders (raises if it cannot be written)."""
        await self.store.save_orders(self.run_id, self.event_id, self._rows(orders))
