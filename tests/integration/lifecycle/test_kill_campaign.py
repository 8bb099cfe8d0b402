"""SIGKILL the processor at 20 random points of live rebalances of several accounts (real processes,
the loopback TWS, real Redis and PostgreSQL): every order the gateway received is in `orders`, no run
is left `running`, every event ends `completed` in Redis and PostgreSQL, and the shares traded are
exactly a clean run's (sells planned on the start, buys re-planned after the sells).

A real management service watches throughout with one notification target per account (apprise's
json:// to a local receiver, wanting `traded`): however the kills fell, each account's rebalance is
notified exactly once, as it finished, with the orders it placed."""

from __future__ import annotations

import asyncio
import random
import re
import signal
import time
from collections import Counter as Tally
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from event_processor.planner import Holding, PlanInput, plan_rebalance
from rebalancer_shared.events import Command
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore
from tests.fakes.allocations import AllocationServer
from tests.fakes.notify_receiver import NotifyReceiver
from tests.integration.management.live_server import live_management_server
from tests.integration.processor.processes import (
    processor_env,
    start_processor,
    stop,
    tws_process,
    write_accounts,
)
from tests.integration.processor.test_processor_processes import HOLDINGS, PRICES, TARGETS, submit, tws_state
from tests.support.servers import REDIS_URL

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
ACCOUNTS = [f"KC{i}" for i in range(1, 11)]
KILLS = 20
SEED = 20261202


def clean_run_fills() -> dict[tuple[str, str, str], float]:
    """What one uninterrupted rebalance of each account trades: its sells, then the re-planned buys."""
    expected: dict[tuple[str, str, str], float] = defaultdict(float)
    for account in ACCOUNTS:
        holdings = {s: Holding(q, "STK") for s, q in HOLDINGS.items()}
        cash = 5_000.0
        value = cash + sum(q * PRICES[s] for s, q in HOLDINGS.items())
        first = plan_rebalance(PlanInput(TARGETS, holdings, PRICES, cash, value))
        for order in first.sells():
            expected[(account, order.symbol, "SELL")] += order.quantity
            holdings[order.symbol] = Holding(holdings[order.symbol].quantity - order.quantity, "STK")
            cash += order.quantity * PRICES[order.symbol]
        holdings = {s: h for s, h in holdings.items() if h.quantity}
        second = plan_rebalance(PlanInput(TARGETS, holdings, PRICES, cash, value))
        for order in second.buys():
            expected[(account, order.symbol, "BUY")] += order.quantity
    return expected


def traded(state: dict[str, Any]) -> dict[tuple[str, str, str], float]:
    fills: dict[tuple[str, str, str], float] = defaultdict(float)
    for fill in state["fills"]:
        fills[(fill["account"], fill["symbol"], fill["action"])] += fill["shares"]
    return fills


async def rows(store: EventStore, sql: str) -> list[tuple[Any, ...]]:
    async with store.engine.connect() as conn:
        return [tuple(r) for r in await conn.execute(text(sql))]


def unrecorded(state: dict[str, Any], orders: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Gateway orders with no row: neither by the broker's id, nor as an intent of the same event."""
    by_id = {(str(ref), int(oid)) for ref, oid, *_ in orders if oid is not None}  # one ref: one account
    intents = Tally(
        (str(ref), sym, act, float(qty)) for ref, oid, sym, act, qty, status in orders if oid is None
    )
    missing = []
    for order in state["received_orders"]:
        if (order["order_ref"], order["order_id"]) in by_id:
            continue
        key = (order["order_ref"], order["symbol"], order["action"], float(order["quantity"]))
        if intents[key]:
            intents[key] -= 1
            continue
        missing.append(order)
    return missing


def _log_since(log: Path, since: int) -> str:
    return log.read_text(errors="replace")[since:]


async def wait_started(log: Path, since: int, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while "event processor started" not in await asyncio.to_thread(_log_since, log, since):
        assert time.monotonic() < deadline, "the processor did not start"
        await asyncio.sleep(0.05)


def notified_accounts_yaml(receiver: NotifyReceiver) -> str:
    """The accounts, each with a target of its own that wants its live rebalances."""
    return "".join(
        f'- account_id: "{a}"\n  notification:\n    channel: "chan"\n'
        f'  notify:\n    - url: "{receiver.url()}"\n      "on": [traded]\n'
        for a in ACCOUNTS
    )


async def wait_for_messages(receiver: NotifyReceiver, count: int, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while len(receiver.titles()) < count:
        assert time.monotonic() < deadline, f"notified: {receiver.titles()}"
        await asyncio.sleep(0.2)


async def notifier_done(store: EventStore, within: float = 60) -> None:
    """Until no transition waits for the notifier and no message waits to be sent."""
    deadline = time.monotonic() + within
    waiting = "SELECT (SELECT count(*) FROM event_transitions WHERE notification_pending) + " + (
        "(SELECT count(*) FROM notifications WHERE status = 'pending')"
    )
    while (await rows(store, waiting))[0][0]:
        assert time.monotonic() < deadline, "the notifier did not finish"
        await asyncio.sleep(0.2)


async def test_twenty_kills_lose_no_order_leave_no_run_running_and_trade_like_a_clean_run(
    queue: EventQueue, fresh_store: EventStore, fresh_database_url: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    accounts_file = write_accounts(tmp_path, "chan", ACCOUNTS)
    with (
        AllocationServer() as api,
        tws_process(tws_state(ACCOUNTS, fill_delay=0.8), tmp_path) as tws,
        NotifyReceiver() as receiver,
        live_management_server(
            tmp_path / "management",
            notified_accounts_yaml(receiver),
            REDIS_URL=REDIS_URL,
            REDIS_KEY_PREFIX=queue.keys.prefix,
            DATABASE_URL=fresh_database_url,
        ),
    ):
        api.set_weights("chan", TARGETS)
        env = processor_env(
            queue.keys.prefix,
            fresh_database_url,
            accounts_file,
            api.base_url,
            tws.port,
            MAX_CONCURRENT_EVENTS="2",
            LEASE_SECONDS="2",
            HEARTBEAT_SECONDS="0.4",
            RETRY_DELAY_SECONDS="0.2",
        )
        events = [await submit(queue, fresh_store, a, Command.REBALANCE) for a in ACCOUNTS]
        log = tmp_path / "processor.log"
        log.touch()
        kills_with_orders_working = 0
        for _ in range(KILLS):
            since = log.stat().st_size
            processor = start_processor(env, log)
            await wait_started(log, since)
            await asyncio.sleep(rng.uniform(0.0, 2.5))
            working = any(o["status"] in ("Submitted", "PreSubmitted") for o in tws.state()["open_orders"])
            kills_with_orders_working += working
            processor.send_signal(signal.SIGKILL)
            processor.wait(timeout=10)
        since = log.stat().st_size
        final = start_processor(env, log)
        try:
            await wait_started(log, since)
            deadline = time.monotonic() + 120
            while (await queue.stats()).active_events_count:
                assert time.monotonic() < deadline, "the last processor did not finish the events"
                await asyncio.sleep(0.2)
            # A processor killed between a queue step and its history write left that write in the
            # outbox: the last one's drainer writes it (late, never lost).
            while await queue.redis.xlen(queue.keys.outbox):
                assert time.monotonic() < deadline, "the outbox was not drained"
                await asyncio.sleep(0.2)
        finally:
            assert stop(final) == 0
        state = tws.state()
        await wait_for_messages(receiver, len(ACCOUNTS))
        await notifier_done(fresh_store)  # every message that will ever go has gone
        notified = receiver.titles()
        bodies = [str(m.get("message")) for m in receiver.messages]

    orders = await rows(
        fresh_store, "SELECT order_ref, broker_order_id, symbol, action, quantity, status FROM orders"
    )
    statuses = await rows(fresh_store, "SELECT status, count(*) FROM runs GROUP BY status")
    events_done = await rows(fresh_store, "SELECT status, count(*) FROM events GROUP BY status")
    print(
        f"\nkill campaign: {KILLS} kills ({kills_with_orders_working} with orders working), "
        f"{len(state['received_orders'])} orders at the gateway, {len(orders)} order rows, runs {statuses}"
    )
    missing = unrecorded(state, orders)
    assert missing == [], f"gateway orders missing from the history: {missing}; rows: {orders}"
    assert "running" not in dict(statuses), "a run was left running"
    assert events_done == [("completed", len(ACCOUNTS))]
    assert await queue.list_events(100) == []
    for event in events:
        assert await queue.redis.zscore(queue.keys.finished, str(event.event_id)) is not None
    assert dict(traded(state)) == dict(clean_run_fills()), "the kills changed what was traded"
    assert Tally(title.split(":")[0] for title in notified) == Tally(ACCOUNTS), notified
    assert all(": rebalance success, " in title for title in notified), notified
    # Each message tells every order of its account's rebalance, the killed attempts' included.
    per_account = dict(
        await rows(
            fresh_store,
            "SELECT e.account_id, count(*) FROM orders o JOIN events e USING (event_id) GROUP BY 1",
        )
    )
    told = {
        title.split(":")[0]: len(re.findall(r"^- (BUY|SELL) ", body, re.MULTILINE))
        for title, body in zip(notified, bodies, strict=True)
    }
    assert told == per_account, bodies
