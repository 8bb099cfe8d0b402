"""EventStore against the real PostgreSQL: upserts that heal, history, runs and orders."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from rebalancer_shared.events import Command
from rebalancer_shared.store import EventStatus, EventStore, OrderRecord, RunRecord, Transition
from tests.integration.queue.helpers import make_event


async def test_history_records_every_transition_in_order(store: EventStore) -> None:
    event = make_event("DU1", Command.REBALANCE)
    await store.record(event, Transition.QUEUED)
    await store.record(event, Transition.PROCESSING)
    await store.record(event, Transition.RETRYING, times_queued=2, detail="AllocationError: sum 0.9")
    assert await store.note(event.event_id, Transition.COALESCED, "duplicate trigger while processing")
    await store.record(event, Transition.PROCESSING, times_queued=2)
    await store.record(event, Transition.COMPLETED, times_queued=2)
    history = await store.history(event.event_id)
    assert history is not None
    states = [t["state"] for t in history["transitions"]]
    assert states == ["queued", "processing", "retrying", "coalesced", "processing", "completed"]
    assert history["transitions"][2]["detail"] == "AllocationError: sum 0.9"
    assert history["event"]["status"] == "completed"
    assert history["event"]["times_queued"] == 2
    assert history["event"]["finished_at"] is not None


async def test_a_missed_write_is_healed_by_the_next_one(store: EventStore) -> None:
    event = make_event("DU2", Command.REBALANCE, data={"exec": "rebalance"})
    # The "queued" write never happened (crash between Redis and PostgreSQL):
    await store.record(event, Transition.PROCESSING)
    row = await store.get_event(event.event_id)
    assert row is not None
    assert (row.status, row.account_id, row.data) == ("processing", "DU2", {"exec": "rebalance"})


async def test_retry_error_is_kept_and_cleared_by_completion(store: EventStore) -> None:
    event = make_event("DU3")
    await store.record(event, Transition.RETRYING, times_queued=2, detail="IB Gateway unreachable")
    row = await store.get_event(event.event_id)
    assert row is not None
    assert row.last_error == "IB Gateway unreachable"
    await store.record(event, Transition.COMPLETED, times_queued=2)
    row = await store.get_event(event.event_id)
    assert row is not None
    assert row.status == "completed"


async def test_note_on_an_unknown_event_is_refused(store: EventStore) -> None:
    assert not await store.note(uuid.uuid4(), Transition.DUPLICATE)


async def test_record_refuses_a_transition_that_keeps_the_state(store: EventStore) -> None:
    with pytest.raises(ValueError, match="use note"):
        await store.record(make_event(), Transition.DUPLICATE)


async def test_runs_and_orders_are_stored_with_the_event(store: EventStore) -> None:
    event = make_event("DU4", Command.REBALANCE)
    await store.record(event, Transition.PROCESSING)
    run = RunRecord(
        event_id=event.event_id,
        attempt=1,
        account_id="DU4",
        exec_command="rebalance",
        execution_mode="live",
        worker="w1",
        status="running",
        started_at=datetime.now(UTC),
    )
    await store.save_run(run)
    equity = {"total_equity": 100000.0, "reserve_percentage": 2.0, "reserve_amount": 2000.0}
    finished = RunRecord(
        **{**run.__dict__, "status": "success", "equity_info": equity, "plan": {"orders": []}},
    )
    await store.save_run(finished)
    await store.save_orders(
        run.run_id,
        event.event_id,
        [
            OrderRecord("AAA", "SELL", 5, "MKT", str(event.event_id), "Filled", 5, 10.5, None, 7, 9001),
            OrderRecord("BBB", "BUY", 3, "LMT", str(event.event_id), "Submitted", 0, None, 20.1, 8, 9002),
        ],
    )
    history = await store.history(event.event_id)
    assert history is not None
    assert [r["status"] for r in history["runs"]] == ["success"]
    assert history["runs"][0]["equity_info"] == equity
    assert [(o["symbol"], o["perm_id"], o["filled_quantity"]) for o in history["orders"]] == [
        ("AAA", 9001, 5),
        ("BBB", 9002, 0),
    ]
    last = await store.last_run_status(["DU4", "NOBODY"])
    assert last["DU4"]["status"] == "success"
    assert "NOBODY" not in last


async def test_unfinished_events_are_listed_oldest_first(fresh_store: EventStore) -> None:
    from datetime import timedelta

    base = datetime(2026, 1, 1, tzinfo=UTC)
    events = [make_event(f"A{i}", created_at=base + timedelta(seconds=i)) for i in range(5)]
    transitions = [
        Transition.QUEUED,
        Transition.COMPLETED,
        Transition.RETRYING,
        Transition.REMOVED,
        Transition.PROCESSING,
    ]
    for event, transition in zip(reversed(events), reversed(transitions), strict=True):
        await fresh_store.record(event, transition)
    unfinished = await fresh_store.unfinished_events()
    assert [(e.account_id, s) for e, s in unfinished] == [
        ("A0", EventStatus.QUEUED),
        ("A2", EventStatus.RETRYING),
        ("A4", EventStatus.PROCESSING),
    ]


async def test_deployment_facts_upsert(fresh_store: EventStore) -> None:
    assert await fresh_store.get_fact("x") is None
    await fresh_store.set_fact("x", "1")
    await fresh_store.set_fact("x", "2")
    assert await fresh_store.get_fact("x") == "2"


async def test_a_late_acceptance_write_never_overwrites_a_later_state(store: EventStore) -> None:
    # The broker enqueues to Redis first; a worker may record processing and completed before the
    # broker's "queued" write reaches PostgreSQL.
    event = make_event("DU9", Command.PRINT_POSITIONS)
    await store.record(event, Transition.PROCESSING)
    await store.record(event, Transition.COMPLETED)
    await store.record(event, Transition.QUEUED)
    row = await store.get_event(event.event_id)
    assert row is not None
    assert row.status == "completed"
    history = await store.history(event.event_id)
    assert history is not None
    assert [t["state"] for t in history["transitions"]] == ["queued", "processing", "completed"]


async def test_requeue_moves_the_state_back_to_queued(store: EventStore) -> None:
    event = make_event("DU10")
    await store.record(event, Transition.QUEUED)
    await store.record(event, Transition.PROCESSING)
    await store.record(event, Transition.REQUEUED, times_queued=2, detail="lease expired")
    row = await store.get_event(event.event_id)
    assert row is not None
    assert (row.status, row.times_queued) == ("queued", 2)
