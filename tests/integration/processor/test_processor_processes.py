"""Processor processes against the loopback TWS process: scale-out, SIGKILL mid-run, SIGTERM."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from event_processor.planner import Holding, PlanInput, plan_rebalance
from rebalancer_shared.events import Command, Event, EventSource
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore
from tests.fakes.allocations import AllocationServer
from tests.fakes.tws.account import TwsState
from tests.integration.processor.processes import (
    processor_env,
    start_processor,
    stop,
    tws_process,
    write_accounts,
)

TARGETS = {"AAA": 0.3, "BBB": 0.3, "CCC": 0.4}
PRICES = {"AAA": 50.0, "BBB": 100.0, "CCC": 40.0, "DDD": 25.0}
HOLDINGS = {"AAA": 100.0, "BBB": 10.0, "DDD": 20.0}


@pytest.fixture
def api() -> Iterator[AllocationServer]:
    with AllocationServer() as server:
        server.set_weights("chan", TARGETS)
        yield server


def tws_state(accounts: list[str], fill_delay: float = 0.0) -> TwsState:
    state = TwsState()
    for account in accounts:
        state.add_account(account, 5_000.0, HOLDINGS)
    for symbol, price in PRICES.items():
        state.set_price(symbol, price)
    state.fill_delay_seconds = fill_delay
    return state


async def submit(queue: EventQueue, store: EventStore, account: str, command: Command) -> Event:
    event = Event(
        account_id=account, exec_command=command, data={"exec": command.value}, source=EventSource.API
    )
    await EventLifecycle(queue, store).submit(event)
    return event


async def wait_for(condition: Any, within: float, message: str) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.1)


def at_targets(account: dict[str, Any]) -> bool:
    """Planning again on the account as the fake holds it gives no orders: it is at its targets."""
    holdings = {s: Holding(p["quantity"], p["sec_type"]) for s, p in account["positions"].items()}
    value = account["cash"] + sum(h.quantity * PRICES[s] for s, h in holdings.items())
    plan = plan_rebalance(PlanInput(TARGETS, holdings, PRICES, account["cash"], value))
    return not plan.orders


async def overlapping_mutating_runs(store: EventStore) -> list[tuple[Any, ...]]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT a.account_id, a.exec_command, b.exec_command FROM runs a JOIN runs b"
                " ON a.account_id = b.account_id AND a.run_id < b.run_id"
                " AND a.exec_command IN ('rebalance', 'cancel-orders')"
                " AND b.exec_command IN ('rebalance', 'cancel-orders')"
                " AND a.started_at < b.finished_at AND b.started_at < a.finished_at"
            )
        )
        return [tuple(r) for r in rows]


def order_intervals_overlap(state: dict[str, Any]) -> list[str]:
    """From the TWS's own timeline: the orders of two events of one account never interleave."""
    spans: dict[tuple[str, str], list[float]] = defaultdict(list)
    fills_by_order = defaultdict(list)  # order ids are unique per client id only
    for fill in state["fills"]:
        fills_by_order[(fill["client_id"], fill["order_id"])].append(fill["filled_at"])
    for order in state["received_orders"]:
        times = [order["received_at"], *fills_by_order[(order["client_id"], order["order_id"])]]
        spans[(order["account"], order["order_ref"])].extend(times)
    problems = []
    by_account: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for (account, ref), times in spans.items():
        by_account[account].append((min(times), max(times), ref))
    for account, intervals in by_account.items():
        intervals.sort()
        for (_, end, ref), (start, _, other) in itertools.pairwise(intervals):
            if start < end:
                problems.append(f"{account}: {ref} and {other} overlap")
    return problems


# About 50 s alone and up to 2 minutes on the loaded 4-worker suite: the hang guard sits above the
# test's own 240 s wait, not at the suite's 120 s default.
@pytest.mark.timeout(360)
async def test_three_processors_share_300_events_each_completing_once_without_overlap(
    queue: EventQueue, fresh_store: EventStore, fresh_database_url: str, api: AllocationServer, tmp_path: Path
) -> None:
    accounts = [f"ACC{i:03d}" for i in range(100)]
    accounts_file = write_accounts(tmp_path, "chan", accounts)
    events = []
    for account in accounts:
        for command in (Command.REBALANCE, Command.CANCEL_ORDERS, Command.PRINT_POSITIONS):
            events.append(await submit(queue, fresh_store, account, command))
    with tws_process(tws_state(accounts, fill_delay=0.01), tmp_path) as tws:
        env = processor_env(
            queue.keys.prefix,
            fresh_database_url,
            accounts_file,
            api.base_url,
            tws.port,
            MAX_CONCURRENT_EVENTS="4",
        )
        processors = [start_processor(env, tmp_path / f"processor-{i}.log") for i in range(3)]
        try:

            async def drained() -> bool:
                return (await queue.stats()).active_events_count == 0

            await wait_for(drained, 240, "the three processors did not finish the 300 events")
        finally:
            codes = [stop(p) for p in processors]
        state = tws.state()
    assert codes == [0, 0, 0]
    async with fresh_store.engine.connect() as conn:
        completed = await conn.execute(
            text(
                "SELECT event_id, count(*) FROM event_transitions WHERE state = 'completed' GROUP BY event_id"
            )
        )
        per_event = {str(r[0]): r[1] for r in completed}
        workers = await conn.execute(text("SELECT count(DISTINCT worker) FROM runs"))
        worker_count = workers.scalar_one()
    assert len(per_event) == 300
    assert set(per_event.values()) == {1}, "every event completed exactly once"
    assert {str(e.event_id) for e in events} == set(per_event)
    assert worker_count == 3, "all three processors took part"
    assert await overlapping_mutating_runs(fresh_store) == []
    assert order_intervals_overlap(state) == []
    assert all(at_targets(state["accounts"][a]) for a in accounts)


async def test_processor_killed_mid_rebalance_is_finished_by_another_without_buying_twice(
    queue: EventQueue, fresh_store: EventStore, fresh_database_url: str, api: AllocationServer, tmp_path: Path
) -> None:
    accounts_file = write_accounts(tmp_path, "chan", ["DU1"])
    with tws_process(tws_state(["DU1"], fill_delay=1.5), tmp_path) as tws:
        # Nothing configured: the account's fixed trading client id lets the successor cancel the
        # orders its dead predecessor left working.
        env = processor_env(queue.keys.prefix, fresh_database_url, accounts_file, api.base_url, tws.port)
        first = start_processor(env, tmp_path / "first.log")
        event = await submit(queue, fresh_store, "DU1", Command.REBALANCE)

        async def orders_sent() -> bool:
            return bool(tws.state()["received_orders"])

        await wait_for(orders_sent, 30, "the first processor never placed an order")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        second = start_processor(env, tmp_path / "second.log")
        try:

            async def drained() -> bool:
                return (await queue.stats()).active_events_count == 0

            await wait_for(drained, 60, "the second processor did not finish the event")
        finally:
            assert stop(second) == 0
        state = tws.state()
    history = await fresh_store.history(event.event_id)
    assert history is not None
    assert history.event.status == "completed"
    assert history.event.times_queued == 2, "the interrupted run counts as a retry"
    assert len({r.worker for r in history.runs}) == 2
    account = state["accounts"]["DU1"]
    assert at_targets(account)
    bought: dict[str, float] = defaultdict(float)
    for fill in state["fills"]:
        if fill["action"] == "BUY":
            bought[fill["symbol"]] += fill["shares"]
    for symbol, shares in bought.items():
        final = account["positions"].get(symbol, {"quantity": 0.0})["quantity"]
        assert shares == final - HOLDINGS.get(symbol, 0.0), f"{symbol} bought more than it needed"
    # The killed run's orders, settled by the successor from the day's executions: what the TWS did.
    killed = history.runs[0]
    assert killed.status == "interrupted", killed
    filled_at_gateway: dict[int, float] = defaultdict(float)
    for fill in state["fills"]:
        filled_at_gateway[fill["perm_id"]] += fill["shares"]
    for order in history.orders_of(killed.run_id):
        assert order.status in ("Filled", "Cancelled", "ApiCancelled", "Inactive"), order
        assert order.filled_quantity == (filled_at_gateway[order.perm_id] if order.perm_id else 0), order


async def test_sigterm_mid_run_finishes_or_returns_the_event(
    queue: EventQueue, fresh_store: EventStore, fresh_database_url: str, api: AllocationServer, tmp_path: Path
) -> None:
    accounts_file = write_accounts(tmp_path, "chan", ["DU1", "DU2"])
    with tws_process(tws_state(["DU1", "DU2"], fill_delay=2.0), tmp_path) as tws:
        env = processor_env(
            queue.keys.prefix,
            fresh_database_url,
            accounts_file,
            api.base_url,
            tws.port,
            SHUTDOWN_GRACE_SECONDS="0.5",
            MAX_CONCURRENT_EVENTS="1",
        )
        processor = start_processor(env, tmp_path / "processor.log")
        events = [await submit(queue, fresh_store, a, Command.REBALANCE) for a in ("DU1", "DU2")]

        async def orders_sent() -> bool:
            return bool(tws.state()["received_orders"])

        await wait_for(orders_sent, 30, "no order was placed")
        assert stop(processor, signal.SIGTERM, wait=30) == 0
    stats = await queue.stats()
    assert stats.processing_count == 0
    live = {str(v.event.event_id): v for v in await queue.list_events(10)}
    for event in events:
        row = await fresh_store.get_event(event.event_id)
        assert row is not None
        if row.status != "completed":
            assert str(event.event_id) in live, "an unfinished event is back in the queue"
            assert live[str(event.event_id)].state.value == "queued"
            assert row.status == "queued"
