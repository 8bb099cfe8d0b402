"""A history of 10,000 events (with their transitions, runs and orders) for the API benchmark.

Events are spread over 20 accounts, three commands, three sources and a week of acceptance times;
finished ones have a run with three orders. Events and transitions go through the store's own
history writes (as the outbox writes them); runs and orders are inserted in bulk, as rows the
processor would have written, so filling takes seconds; then the tables are analysed, as
autovacuum would have done on a history that grew over days.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, text

from rebalancer_shared.events import Command, Event, EventSource
from rebalancer_shared.store import EventStore, HistoryRecord, Transition
from rebalancer_shared.store.tables import OrderRow, RunRow
from tests.support.history import transition_records

ACCOUNTS = tuple(f"DU{n:06d}" for n in range(100_001, 100_021))
COMMANDS = (Command.REBALANCE, Command.PRINT_REBALANCE, Command.PRINT_POSITIONS)
SOURCES = (EventSource.ABLY, EventSource.API, EventSource.CLI)
ENDS = (Transition.COMPLETED,) * 6 + (Transition.QUEUED, Transition.REMOVED, Transition.PROCESSING)
SYMBOLS = ("VTI", "VXUS", "BND", "BNDX", "VNQ", "GLD")
START = datetime(2026, 11, 23, tzinfo=UTC)


@dataclass(frozen=True)
class HistoryShape:
    """What was written: the times and ids a benchmark's queries aim at."""

    events: int
    runs: int
    orders: int
    middle: datetime  # half the events were accepted before this time


def _records(rng: random.Random, count: int) -> tuple[list[HistoryRecord], list[Event]]:
    records: list[HistoryRecord] = []
    finished: list[Event] = []
    for _ in range(count):
        event = Event(
            account_id=rng.choice(ACCOUNTS),
            exec_command=rng.choice(COMMANDS),
            source=rng.choice(SOURCES),
            created_at=START + timedelta(seconds=rng.randrange(7 * 86_400)),
        )
        end = rng.choice(ENDS)
        records += transition_records(event, (Transition.QUEUED, end))
        if end is Transition.COMPLETED:
            finished.append(event)
    return records, finished


def _run_rows(event: Event, rng: random.Random) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    run_id, at = uuid.uuid4(), event.created_at + timedelta(seconds=2)
    run = {
        "run_id": run_id,
        "event_id": event.event_id,
        "attempt": 1,
        "account_id": event.account_id,
        "exec_command": event.exec_command.value,
        "execution_mode": event.exec_command.execution_mode.value,
        "worker": "bench",
        "status": "success",
        "message": "all orders filled",
        "started_at": at,
        "finished_at": at + timedelta(seconds=3),
        "plan": {"orders": [], "metrics": {"order_count": 3}},
    }
    orders = [
        {
            "run_id": run_id,
            "event_id": event.event_id,
            "seq": seq,
            "symbol": symbol,
            "action": rng.choice(("BUY", "SELL")),
            "quantity": float(rng.randint(1, 200)),
            "order_type": "MKT",
            "order_ref": f"bench-{run_id.hex[:8]}-{seq}",
            "status": "Filled",
            "filled_quantity": 1.0,
            "avg_fill_price": 100.0,
            "created_at": at + timedelta(milliseconds=seq),
            "updated_at": at + timedelta(seconds=1),
        }
        for seq, symbol in enumerate(rng.sample(SYMBOLS, 3))
    ]
    return run, orders


async def fill_history(store: EventStore, count: int = 10_000, seed: int = 16) -> HistoryShape:
    """Write `count` events (and runs and orders for the finished ones); say what was written."""
    rng = random.Random(seed)
    records, finished = _records(rng, count)
    for base in range(0, len(records), 1_000):
        await store.apply_history(records[base : base + 1_000])
    runs, orders = [], []
    for event in finished:
        run, its_orders = _run_rows(event, rng)
        runs.append(run)
        orders += its_orders
    async with store.engine.begin() as connection:
        for base in range(0, len(runs), 1_000):
            await connection.execute(insert(RunRow), runs[base : base + 1_000])
        for base in range(0, len(orders), 1_000):
            await connection.execute(insert(OrderRow), orders[base : base + 1_000])
    async with store.engine.begin() as connection:  # committed: a rolled-back ANALYZE keeps nothing
        # Statistics as autovacuum would have gathered them by now on a deployment that grew this
        # history over days (right after a bulk load the planner would guess the tables empty).
        await connection.execute(text("ANALYZE"))
    return HistoryShape(count, len(runs), len(orders), START + timedelta(days=3, hours=12))
