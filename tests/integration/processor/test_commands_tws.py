"""Each command end to end through the worker on the real ib_async against the loopback TWS."""

from __future__ import annotations

import asyncio
import json

import pytest

from event_processor.brokers import IbkrBroker
from rebalancer_shared.config import OrderSettings
from rebalancer_shared.events import Command
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore
from tests.fakes.allocations import AllocationServer
from tests.fakes.tws import FakeTws
from tests.fakes.tws.scenarios import ACCOUNT, TARGETS, ibkr_settings
from tests.integration.processor.harness import accounts_on, running_processor


@pytest.mark.parametrize(
    ("command", "orders_sent", "mode"),
    [
        (Command.REBALANCE, True, "live"),
        (Command.PRINT_REBALANCE, False, "dry_run"),
        (Command.PRINT_POSITIONS, False, "dry_run"),
        (Command.PRINT_EQUITY, False, "dry_run"),
        (Command.PRINT_ORDERS, False, "dry_run"),
        (Command.CANCEL_ORDERS, False, "live"),
    ],
)
async def test_each_command_runs_and_the_store_holds_its_result(
    queue: EventQueue,
    store: EventStore,
    api: AllocationServer,
    tws: FakeTws,
    command: Command,
    orders_sent: bool,
    mode: str,
) -> None:
    broker = IbkrBroker(ibkr_settings(tws.port), OrderSettings(), poll_interval_seconds=0.02)
    try:
        async with running_processor(queue, store, broker, api, accounts_on("chan", ACCOUNT)) as proc:
            event = await proc.submit(ACCOUNT, command)
            await proc.wait_until_idle()
    finally:
        await broker.close()
    assert bool(tws.state.received_orders) is orders_sent
    assert all(o.order_ref == str(event.event_id) for o in tws.state.received_orders)
    history = await store.history(event.event_id)
    assert history is not None
    assert history.event.status == "completed"
    [run] = history.runs
    assert run.status == "success", run
    result = run.result
    assert result is not None
    assert result["account_id"] == ACCOUNT
    assert result["execution_mode"] == mode
    assert result["status"] == "success"
    assert result["message"]
    assert result["timestamp"]
    if command in (Command.REBALANCE, Command.PRINT_REBALANCE, Command.PRINT_EQUITY):
        assert result["equity_info"]["reserve_percentage"] == 1.0
    if command is Command.REBALANCE:
        assert {o.symbol for o in history.orders} == {o.symbol for o in tws.state.received_orders}
        assert all(o.perm_id for o in history.orders)
    if command is Command.PRINT_POSITIONS:
        assert {p["symbol"] for p in result["details"]["positions"]} >= {"AAA", "BBB", "DDD"}


def weights(*pairs: tuple[str, object]) -> bytes:
    rows = [{"symbol": s, "allocation": w} for s, w in pairs]
    return json.dumps({"status": "success", "data": {"allocations": rows}}).encode()


@pytest.mark.parametrize(
    ("raw", "status", "delay", "problem"),
    [
        (b"{}", 500, 0.0, "HTTP 500"),
        (weights(("AAA", 1.0)), 200, 3.0, "timed out"),
        (b"{not json", 200, 0.0, "not valid JSON"),
        (b'{"status": "error"}', 200, 0.0, "status is 'error'"),
        (b'{"status": "success"}', 200, 0.0, "no 'data' object"),
        (b'{"status": "success", "data": {"allocations": [{"symbol": "AAA"}]}}', 200, 0.0, "not a number"),
        (weights(("AAA", 1.5), ("BBB", -0.5)), 200, 0.0, "negative"),
        (
            b'{"status": "success", "data": {"allocations": [{"symbol": "AAA", "allocation": NaN}]}}',
            200,
            0.0,
            "finite",
        ),
        (weights(("AAA", 0.5), ("AAA", 0.5)), 200, 0.0, "duplicate symbol 'AAA'"),
        (weights(("AAA", 0.5), ("BBB", 0.4)), 200, 0.0, "sum to 0.9000"),
    ],
    ids=[
        "http-500",
        "timeout",
        "invalid-json",
        "status-error",
        "missing-data",
        "missing-weight",
        "negative",
        "nan",
        "duplicate",
        "sum-0.9",
    ],
)
async def test_bad_allocations_send_no_order_to_the_gateway_and_name_the_problem(
    queue: EventQueue,
    store: EventStore,
    api: AllocationServer,
    tws: FakeTws,
    raw: bytes,
    status: int,
    delay: float,
    problem: str,
) -> None:
    api.set_raw("chan", raw, status=status, delay=delay)
    broker = IbkrBroker(ibkr_settings(tws.port), OrderSettings(), poll_interval_seconds=0.02)
    try:
        async with running_processor(queue, store, broker, api, accounts_on("chan", ACCOUNT)) as proc:
            event = await proc.submit(ACCOUNT, Command.REBALANCE)
            for _ in range(200):
                row = await store.get_event(event.event_id)
                if row is not None and row.last_error:
                    break
                await asyncio.sleep(0.05)
            assert tws.state.received_orders == []
            assert tws.state.cancels == []
            row = await store.get_event(event.event_id)
            assert row is not None
            assert row.last_error is not None
            assert problem in row.last_error
            # The API could not answer: retried on the delay. It answered something we must not
            # trade on: a person must look, and it runs again when one asks.
            transient = status >= 500 or delay > 0
            assert row.failure_class == ("transient" if transient else "needs_attention")
            api.set_weights("chan", TARGETS)
            if not transient:
                await proc.lifecycle.retry_now(str(event.event_id), "the allocation API was fixed")
            await proc.wait_until_idle()
    finally:
        await broker.close()
    assert tws.state.received_orders, "once the API is fixed the retry trades"


async def test_a_rejected_order_is_kept_with_ibs_code_and_reason_in_its_row_the_run_and_the_events_error(
    queue: EventQueue, store: EventStore, api: AllocationServer, tws: FakeTws
) -> None:
    reason = "YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED POSITION YOUR EQUITY WITH LOAN VALUE"
    expected = f"IB error 201: Order rejected - reason:{reason}"
    tws.state.rejections["CCC"] = reason
    broker = IbkrBroker(ibkr_settings(tws.port), OrderSettings(), poll_interval_seconds=0.02)
    try:
        async with running_processor(queue, store, broker, api, accounts_on("chan", ACCOUNT)) as proc:
            event = await proc.submit(ACCOUNT, Command.REBALANCE)
            for _ in range(200):
                row = await store.get_event(event.event_id)
                if row is not None and row.last_error:
                    break
                await asyncio.sleep(0.05)
            history = await store.history(event.event_id)
            await asyncio.sleep(1.0)  # five retry delays: a rejected order is not re-sent by itself
            assert [o.symbol for o in tws.state.received_orders].count("CCC") == 1
            tws.state.rejections.clear()
            await proc.lifecycle.retry_now(str(event.event_id), "trading permission granted")
            await proc.wait_until_idle()
    finally:
        await broker.close()

    assert row is not None
    assert (row.status, row.failure_class) == ("needs_attention", "needs_attention")
    assert row.last_error is not None
    assert f"BUY 113 CCC: filled 0, Inactive ({expected})" in row.last_error
    assert history is not None
    first = history.runs[0]
    assert first.error is not None
    assert row.last_error.endswith(first.error)
    [rejected] = [o for o in history.orders_of(first.run_id) if o.symbol == "CCC"]
    assert (rejected.status, rejected.filled_quantity, rejected.message) == ("Inactive", 0.0, expected)
    assert {o.message for o in history.orders_of(first.run_id) if o.symbol != "CCC"} == {None}
    assert first.result is not None
    by_symbol = {o["symbol"]: o for o in first.result["orders"]}
    assert by_symbol["CCC"]["message"] == expected
    assert by_symbol["BBB"]["status"] == "Filled"
    final = await store.history(event.event_id)
    assert final is not None
    assert final.event.status == "completed", "once IB accepts the order the retry completes"
