"""The worker loop end to end on the simulated broker: runs, retries, FIFO, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from event_processor.brokers import SimulatedBroker
from rebalancer_shared.events import Command, Event, EventSource
from rebalancer_shared.failures import FailureClass
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EventQueue, EventState, RetryNowOutcome
from rebalancer_shared.store import EventStore
from tests.fakes.allocations import AllocationServer
from tests.integration.processor.harness import FAST, accounts_on, running_processor

PRICES = {"AAA": 100.0, "BBB": 50.0, "CCC": 20.0}
TARGETS = {"AAA": 0.6, "BBB": 0.4}


@pytest.fixture
def api() -> Iterator[AllocationServer]:
    with AllocationServer() as server:
        server.set_weights("chan", TARGETS)
        yield server


def broker_with(*accounts: str, latency: float = 0.0) -> SimulatedBroker:
    broker = SimulatedBroker(PRICES, latency_seconds=latency)
    for account in accounts:
        broker.add_account(account, cash=10_000.0, positions={"CCC": 50})
    return broker


async def test_the_allocation_request_does_not_wait_for_the_runs_history_to_be_written(
    queue: EventQueue, store: EventStore, api: AllocationServer
) -> None:
    # The request is read-only and on a trigger's path to its first order: it goes out while the run
    # row is written. Nothing trades before that row: with the runs table locked, the run waits.
    broker = broker_with("DU1")
    event = Event(account_id="DU1", exec_command=Command.REBALANCE, data={}, source=EventSource.API)
    await EventLifecycle(queue, store).submit(event)  # accepted, and in the history, before the lock
    async with store.engine.begin() as conn:
        await conn.execute(text("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE"))
        async with running_processor(queue, store, broker, api, accounts_on("chan", "DU1")) as proc:
            deadline = asyncio.get_running_loop().time() + 20
            while not api.requests:
                assert asyncio.get_running_loop().time() < deadline, (
                    "no allocation request while the run row waits"
                )
                await asyncio.sleep(0.02)
            assert broker.accounts["DU1"].positions == {"CCC": 50}, "nothing traded before the run row"
            await conn.commit()  # the lock goes
            await proc.wait_until_idle()

    assert len(api.requests) == 1
    history = await store.history(event.event_id)
    assert history is not None
    assert history.event.status == "completed"
    assert [run.status for run in history.runs] == ["success"]


async def test_live_rebalance_reaches_targets_and_the_store_holds_the_run(
    queue: EventQueue, store: EventStore, api: AllocationServer
) -> None:
    broker = broker_with("DU1")
    async with running_processor(queue, store, broker, api, accounts_on("chan", "DU1")) as proc:
        event = await proc.submit("DU1", Command.REBALANCE, {"exec": "rebalance"})
        await proc.wait_until_idle()
    positions = broker.accounts["DU1"].positions
    assert positions.get("CCC", 0) == 0
    equity = 11_000.0 * 0.99
    assert positions["AAA"] == pytest.approx(equity * 0.6 / 100, abs=1)
    assert positions["BBB"] == pytest.approx(equity * 0.4 / 50, abs=1)
    history = await store.history(event.event_id)
    assert history is not None
    assert history.event.status == "completed"
    [run] = history.runs
    assert run.status == "success"
    result = run.result
    assert result is not None
    assert set(result) >= {
        "account_id",
        "execution_mode",
        "equity_info",
        "orders",
        "status",
        "message",
        "timestamp",
    }
    assert result["execution_mode"] == "live"
    assert result["equity_info"]["reserve_percentage"] == 1.0
    assert {o.symbol for o in history.orders} == {"AAA", "BBB", "CCC"}
    assert all(o.order_ref == str(event.event_id) for o in history.orders)


async def test_dry_run_places_nothing_and_stores_the_plan(
    queue: EventQueue, store: EventStore, api: AllocationServer
) -> None:
    broker = broker_with("DU1")
    async with running_processor(queue, store, broker, api, accounts_on("chan", "DU1")) as proc:
        event = await proc.submit("DU1", Command.PRINT_REBALANCE)
        await proc.wait_until_idle()
    assert broker.placed_orders == []
    history = await store.history(event.event_id)
    assert history is not None
    [run] = history.runs
    assert run.result is not None
    assert run.plan is not None
    assert run.result["execution_mode"] == "dry_run"
    assert {o["symbol"] for o in run.result["orders"]} == {"AAA", "BBB", "CCC"}
    assert run.plan["orders"]


@pytest.mark.parametrize(
    "command", [Command.PRINT_POSITIONS, Command.PRINT_EQUITY, Command.PRINT_ORDERS, Command.CANCEL_ORDERS]
)
async def test_other_commands_complete_with_a_result(
    queue: EventQueue, store: EventStore, api: AllocationServer, command: Command
) -> None:
    broker = broker_with("DU1")
    broker.add_open_order("DU1", "AAA", "BUY", 3)
    async with running_processor(queue, store, broker, api, accounts_on("chan", "DU1")) as proc:
        event = await proc.submit("DU1", command)
        await proc.wait_until_idle()
    history = await store.history(event.event_id)
    assert history is not None
    [run] = history.runs
    assert run.status == "success", run
    assert broker.placed_orders == []
    assert (len(broker.cancelled_orders) == 1) is (command is Command.CANCEL_ORDERS)


async def test_bad_allocations_need_attention_once_and_run_when_an_operator_retries(
    queue: EventQueue, store: EventStore, api: AllocationServer
) -> None:
    api.set_json(
        "chan", {"status": "success", "data": {"allocations": [{"symbol": "AAA", "allocation": 0.9}]}}
    )
    broker = broker_with("DU1")
    async with running_processor(queue, store, broker, api, accounts_on("chan", "DU1")) as proc:
        event = await proc.submit("DU1", Command.REBALANCE)
        for _ in range(200):
            view = await queue.get(str(event.event_id))
            if view is not None and view.state is EventState.NEEDS_ATTENTION:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # five retry delays: an event that needs attention is not retried
        view = await queue.get(str(event.event_id))
        assert view is not None
        assert view.state is EventState.NEEDS_ATTENTION
        assert view.failure_class is FailureClass.NEEDS_ATTENTION
        assert view.event.times_queued == 2, "tried once, then left for a person"
        assert broker.placed_orders == []
        row = await store.get_event(event.event_id)
        assert row is not None
        assert row.status == "needs_attention"
        assert row.failure_class == "needs_attention"
        assert row.last_error is not None
        assert "sum to 0.9000" in row.last_error
        api.set_weights("chan", TARGETS)
        assert await proc.lifecycle.retry_now(str(event.event_id), "fixed") is RetryNowOutcome.REQUEUED
        await proc.wait_until_idle()
    row = await store.get_event(event.event_id)
    assert row is not None
    assert row.status == "completed"
    assert broker.placed_orders


async def test_a_failing_event_goes_to_the_back_and_later_events_run_first(
    queue: EventQueue, store: EventStore, api: AllocationServer
) -> None:
    api.set_raw("broken", b"{}", status=500)
    broker = broker_with("BAD", "G1", "G2", "G3")
    accounts = {**accounts_on("broken", "BAD"), **accounts_on("chan", "G1", "G2", "G3")}
    one_slot = FAST.__class__(**{**FAST.__dict__, "max_concurrent_events": 1, "retry_delay_seconds": 0.3})
    async with running_processor(queue, store, broker, api, accounts, one_slot) as proc:
        bad = await proc.submit("BAD", Command.PRINT_REBALANCE)
        good = [await proc.submit(a, Command.PRINT_REBALANCE) for a in ("G1", "G2", "G3")]
        for _ in range(200):
            done = [await store.get_event(g.event_id) for g in good]
            if all(r is not None and r.status == "completed" for r in done):
                break
            await asyncio.sleep(0.05)
        bad_row = await store.get_event(bad.event_id)
        assert bad_row is not None
        assert bad_row.status in ("retrying", "queued", "processing")
        api.set_weights("broken", TARGETS)
        await proc.wait_until_idle()
    history = await store.history(bad.event_id)
    assert history is not None
    states = [t.state for t in history.transitions]
    assert states[:3] == ["queued", "processing", "retrying"]
    assert states[-1] == "completed"
    assert history.event.times_queued >= 2
    good_done = []
    for g in good:
        good_history = await store.history(g.event_id)
        assert good_history is not None
        good_done += [t.at for t in good_history.transitions if t.state == "completed"]
    first_good_done = min(good_done)
    bad_done = next(t.at for t in history.transitions if t.state == "completed")
    assert first_good_done < bad_done


async def test_stop_during_a_run_finishes_it_or_returns_it_nothing_lost(
    queue: EventQueue, store: EventStore, api: AllocationServer
) -> None:
    broker = broker_with("DU1", "DU2", latency=0.3)
    short_grace = FAST.__class__(
        **{**FAST.__dict__, "shutdown_grace_seconds": 0.1, "max_concurrent_events": 1}
    )
    async with running_processor(
        queue, store, broker, api, accounts_on("chan", "DU1", "DU2"), short_grace
    ) as proc:
        first = await proc.submit("DU1", Command.PRINT_REBALANCE)
        second = await proc.submit("DU2", Command.PRINT_REBALANCE)
        await asyncio.sleep(0.4)
    views = {str(v.event.event_id): v for v in await queue.list_events(10)}
    for event in (first, second):
        row = await store.get_event(event.event_id)
        assert row is not None
        if row.status != "completed":
            assert str(event.event_id) in views, "an unfinished event is back in the queue"
            assert views[str(event.event_id)].state.value == "queued"
    assert (await queue.stats()).processing_count == 0


async def test_the_accounts_of_one_trigger_share_one_allocation_request(
    queue: EventQueue, store: EventStore, api: AllocationServer
) -> None:
    accounts = [f"DU{i}" for i in range(20)]
    broker = broker_with(*accounts)
    async with running_processor(queue, store, broker, api, accounts_on("chan", *accounts)) as proc:
        for message in ("ably-message-1", "ably-message-2"):
            for account in accounts:
                event = Event(
                    account_id=account,
                    exec_command=Command.PRINT_REBALANCE,
                    data={"exec": "print-rebalance"},
                    source=EventSource.ABLY,
                    ably_message_id=message,
                )
                await proc.lifecycle.submit(event)
            await proc.wait_until_idle()
        assert len(api.requests) == 2, "one request per trigger, not one per account"
        await proc.submit("DU1", Command.PRINT_REBALANCE)
        await proc.submit("DU2", Command.PRINT_REBALANCE)
        await proc.wait_until_idle()
    assert len(api.requests) == 4, "an event added by hand is its own trigger"
