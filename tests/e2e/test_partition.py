"""A network partition between a processor and Redis during a live run (a loopback TCP proxy that
stops forwarding without closing anything), for three lease periods, then healed; a second processor
takes over. The first processor places no order after its lease could have expired, the two runs
never have working orders at the gateway at the same time, and nothing is bought twice."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text

from rebalancer_shared.events import Command
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore
from tests.fakes.allocations import AllocationServer
from tests.integration.processor.processes import (
    processor_env,
    start_processor,
    stop,
    tws_process,
    write_accounts,
)
from tests.integration.processor.test_processor_processes import (
    HOLDINGS,
    TARGETS,
    at_targets,
    submit,
    tws_state,
)
from tests.support.proxy import partition_proxy
from tests.support.servers import REDIS_URL

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
LEASE = 3.0


def working_spans(state: dict[str, Any], order_ids: set[int]) -> list[tuple[float, float]]:
    """From the gateway's own clock: when each of these orders was received and when it ended."""
    ended: dict[int, float] = {}
    for fill in state["fills"]:
        ended[fill["order_id"]] = max(ended.get(fill["order_id"], 0.0), fill["filled_at"])
    for cancel in state["cancels"]:
        ended.setdefault(cancel["order_id"], cancel["received_at"])
    still_open = {o["order_id"] for o in state["open_orders"]}
    spans = []
    for order in state["received_orders"]:
        if order["order_id"] not in order_ids:
            continue
        end = (
            float("inf")
            if order["order_id"] in still_open
            else ended.get(order["order_id"], order["received_at"])
        )
        spans.append((order["received_at"], end))
    return spans


async def orders_by_worker_pid(store: EventStore) -> dict[int, set[int]]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT r.worker, o.broker_order_id FROM orders o JOIN runs r ON o.run_id = r.run_id"
                " WHERE o.broker_order_id IS NOT NULL"
            )
        )
        found: dict[int, set[int]] = defaultdict(set)
        for worker, order_id in rows:
            found[int(worker.split(":")[1])].add(int(order_id))
        return found


async def test_a_partitioned_processor_stops_trading_before_another_takes_the_account(
    queue: EventQueue, fresh_store: EventStore, fresh_database_url: str, tmp_path: Path
) -> None:
    accounts_file = write_accounts(tmp_path, "chan", ["DU1"])
    state0 = tws_state(["DU1"], fill_delay=4.0)  # the sells fill after the lease could have expired
    redis_port = urlsplit(REDIS_URL).port or 6379
    with (
        AllocationServer() as api,
        tws_process(state0, tmp_path) as tws,
        partition_proxy(redis_port) as proxy,
    ):
        api.set_weights("chan", TARGETS)
        base = dict(LEASE_SECONDS=str(LEASE), HEARTBEAT_SECONDS="0.5", RECONCILE_INTERVAL_SECONDS="1")
        env = processor_env(
            queue.keys.prefix, fresh_database_url, accounts_file, api.base_url, tws.port, **base
        )
        cut_off_url = f"redis://127.0.0.1:{proxy.port}{urlsplit(REDIS_URL).path or '/0'}"
        first = start_processor(env | {"REDIS_URL": cut_off_url}, tmp_path / "first.log")
        second = None
        try:
            event = await submit(queue, fresh_store, "DU1", Command.REBALANCE)
            deadline = time.monotonic() + 30
            while not tws.state()["received_orders"]:
                assert time.monotonic() < deadline, "the first processor placed no order"
                await asyncio.sleep(0.1)
            second = start_processor(env, tmp_path / "second.log")
            proxy.cut()
            cut_at = time.time()
            await asyncio.sleep(3 * LEASE)
            proxy.heal()
            deadline = time.monotonic() + 90
            while (await queue.stats()).active_events_count:
                assert time.monotonic() < deadline, "the event did not finish"
                await asyncio.sleep(0.2)
        finally:
            assert stop(first) == 0
            if second is not None:
                assert stop(second) == 0
        state = tws.state()

    # Both trade as the account's one trading client id: the history says whose run sent which order.
    assert second is not None
    by_worker = await orders_by_worker_pid(fresh_store)
    first_ids, second_ids = by_worker.get(first.pid, set()), by_worker.get(second.pid, set())
    first_orders = [o for o in state["received_orders"] if o["order_id"] in first_ids]
    second_orders = [o for o in state["received_orders"] if o["order_id"] in second_ids]
    assert first_orders, "the first processor traded before the partition"
    assert second_orders, "the second processor took the event over"
    assert max(o["received_at"] for o in first_orders) < cut_at + LEASE, "an order after the lease expired"
    first_spans, second_spans = working_spans(state, first_ids), working_spans(state, second_ids)
    last_first_working = max(end for _, end in first_spans)
    assert min(start for start, _ in second_spans) >= last_first_working, "two runs had working orders"
    account = state["accounts"]["DU1"]
    assert at_targets(account)
    bought: dict[str, float] = defaultdict(float)
    for fill in state["fills"]:
        if fill["action"] == "BUY":
            bought[fill["symbol"]] += fill["shares"]
    for symbol, shares in bought.items():
        final = account["positions"].get(symbol, {"quantity": 0.0})["quantity"]
        assert shares == final - HOLDINGS.get(symbol, 0.0), f"{symbol} was bought twice"
    history = await fresh_store.history(event.event_id)
    assert history is not None
    assert history.event.status == "completed"
    assert "running" not in {r.status for r in history.runs}
