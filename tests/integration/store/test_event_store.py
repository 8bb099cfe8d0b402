"""EventStore against the real PostgreSQL: outbox entries applied idempotently and in order, runs
closed when their event moved on, orders recorded as they are placed, nothing secret stored."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rebalancer_shared.events import Command, Event, EventSource
from rebalancer_shared.logging import register_secret
from rebalancer_shared.store import (
    INTENT,
    EventStatus,
    EventStore,
    HistoryRecord,
    OrderRecord,
    RunRecord,
    RunStatus,
    Transition,
)
from tests.integration.queue.helpers import make_event

_SEQ = itertools.count(1_000_000)
CLOSES = {Transition.QUEUED: 0, Transition.DUPLICATE: 0, Transition.COALESCED: 0}


def entry(
    event: Event,
    transition: Transition,
    *,
    times: int = 1,
    detail: str | None = None,
    seq: int | None = None,
    close: int | None = None,
) -> HistoryRecord:
    """An outbox entry as a queue script would write it."""
    return HistoryRecord(
        seq=next(_SEQ) if seq is None else seq,
        event_id=event.event_id,
        transition=transition,
        times_queued=times,
        detail=detail,
        event=event,
        close_runs_below=CLOSES.get(transition, times) if close is None else close,
        at=datetime.now(UTC),
    )


def run_of(event: Event, attempt: int = 1, status: RunStatus = RunStatus.RUNNING) -> RunRecord:
    return RunRecord(
        event_id=event.event_id,
        attempt=attempt,
        account_id=event.account_id,
        exec_command=event.exec_command.value,
        execution_mode="live",
        worker="w1",
        status=status,
        started_at=datetime.now(UTC),
    )


async def test_history_records_every_transition_in_order(store: EventStore) -> None:
    event = make_event("DU1", Command.REBALANCE)
    await store.apply_history(
        [
            entry(event, Transition.QUEUED),
            entry(event, Transition.PROCESSING),
            entry(event, Transition.RETRYING, times=2, detail="AllocationError: sum 0.9"),
            entry(event, Transition.COALESCED, times=2, detail="duplicate trigger while processing"),
            entry(event, Transition.PROCESSING, times=2),
            entry(event, Transition.COMPLETED, times=2),
        ]
    )
    history = await store.history(event.event_id)
    assert history is not None
    states = [t.state for t in history.transitions]
    assert states == ["queued", "processing", "retrying", "coalesced", "processing", "completed"]
    assert history.transitions[2].detail == "AllocationError: sum 0.9"
    assert history.event.status == "completed"
    assert history.event.times_queued == 2
    assert history.event.finished_at is not None


async def test_a_missed_write_is_healed_by_the_next_one(store: EventStore) -> None:
    event = make_event("DU2", Command.REBALANCE, data={"exec": "rebalance"})
    await store.apply_history([entry(event, Transition.PROCESSING)])  # "queued" never written
    row = await store.get_event(event.event_id)
    assert row is not None
    assert (row.status, row.account_id, row.data) == ("processing", "DU2", {"exec": "rebalance"})


async def test_an_entry_written_twice_is_stored_once(store: EventStore) -> None:
    event = make_event("DU3")
    queued, processing = entry(event, Transition.QUEUED), entry(event, Transition.PROCESSING)
    await store.apply_history([queued, processing])
    await store.apply_history([queued, processing])  # the lifecycle wrote them; a drainer again
    history = await store.history(event.event_id)
    assert history is not None
    assert [t.state for t in history.transitions] == ["queued", "processing"]


async def test_an_older_entry_written_late_never_moves_the_row_back(store: EventStore) -> None:
    event = make_event("DU9", Command.PRINT_POSITIONS)
    queued, processing, completed = (
        entry(event, Transition.QUEUED),
        entry(event, Transition.PROCESSING),
        entry(event, Transition.COMPLETED),
    )
    await store.apply_history([processing, completed])
    await store.apply_history([queued])
    row = await store.get_event(event.event_id)
    assert row is not None
    assert row.status == "completed"
    history = await store.history(event.event_id)
    assert history is not None
    assert [t.state for t in history.transitions] == ["queued", "processing", "completed"]


async def test_a_note_creates_a_missing_row_but_never_changes_the_state(store: EventStore) -> None:
    event = make_event("DU11")
    await store.apply_history([entry(event, Transition.DUPLICATE, detail="duplicate trigger dropped")])
    await store.apply_history([entry(event, Transition.RETRYING, times=2, detail="boom")])
    await store.apply_history([entry(event, Transition.COALESCED, times=2)])
    row = await store.get_event(event.event_id)
    assert row is not None
    assert (row.status, row.last_error, row.times_queued) == ("retrying", "boom", 2)


async def test_requeue_moves_the_state_back_to_queued(store: EventStore) -> None:
    event = make_event("DU10")
    await store.apply_history(
        [
            entry(event, Transition.QUEUED),
            entry(event, Transition.PROCESSING),
            entry(event, Transition.REQUEUED, times=2, detail="lease expired"),
        ]
    )
    row = await store.get_event(event.event_id)
    assert row is not None
    assert (row.status, row.times_queued) == ("queued", 2)


async def test_orders_are_one_row_each_from_intent_to_fill(store: EventStore) -> None:
    event = make_event("DU4", Command.REBALANCE)
    await store.apply_history([entry(event, Transition.PROCESSING)])
    run = run_of(event)
    await store.save_run(run)
    ref = str(event.event_id)
    await store.save_orders(
        run.run_id,
        event.event_id,
        [
            OrderRecord("AAA", "SELL", 5, "MKT", ref, INTENT, seq=0),
            OrderRecord("BBB", "BUY", 3, "MKT", ref, INTENT, seq=1),
        ],
    )
    await store.save_orders(
        run.run_id,
        event.event_id,
        [OrderRecord("AAA", "SELL", 5, "MKT", ref, "Submitted", broker_order_id=7, perm_id=9001, seq=0)],
    )
    await store.save_orders(
        run.run_id,
        event.event_id,
        [OrderRecord("AAA", "SELL", 5, "MKT", ref, "Filled", 5, 10.5, None, 7, 9001, seq=0)],
    )
    equity = {"total_equity": 100000.0, "reserve_percentage": 2.0, "reserve_amount": 2000.0}
    await store.save_run(RunRecord(**{**run.__dict__, "status": RunStatus.SUCCESS, "equity_info": equity}))
    history = await store.history(event.event_id)
    assert history is not None
    assert [r.status for r in history.runs] == ["success"]
    assert history.runs[0].equity_info == equity
    assert [(o.symbol, o.status, o.perm_id, o.filled_quantity) for o in history.orders] == [
        ("AAA", "Filled", 9001, 5),
        ("BBB", INTENT, None, 0),
    ]
    last = await store.last_run_status(["DU4", "NOBODY"])
    assert last["DU4"].status == "success"
    assert "NOBODY" not in last


async def test_a_run_left_running_is_closed_when_its_event_moves_on(store: EventStore) -> None:
    event = make_event("DU12", Command.REBALANCE)
    await store.apply_history([entry(event, Transition.PROCESSING)])
    quiet, busy = run_of(event), run_of(event)
    await store.save_run(quiet)
    other = make_event("DU13", Command.REBALANCE)
    await store.apply_history([entry(other, Transition.PROCESSING)])
    await store.save_run(busy := run_of(other))
    await store.save_orders(
        busy.run_id, other.event_id, [OrderRecord("AAA", "BUY", 1, "MKT", "r", "Submitted", seq=0)]
    )

    await store.apply_history(
        [
            entry(event, Transition.REQUEUED, times=2, detail="lease expired: its worker stopped"),
            entry(other, Transition.RETRYING, times=2, detail="boom"),
        ]
    )
    histories = [await store.history(e.event_id) for e in (event, other)]
    runs = {r.event_id: r for h in histories if h is not None for r in h.runs}
    assert runs[event.event_id].status == "interrupted"
    assert "lease expired" in (runs[event.event_id].error or "")
    assert runs[event.event_id].finished_at is not None
    assert runs[other.event_id].status == "unknown"  # an order never reached a final status


async def test_a_run_of_the_current_attempt_is_not_closed(store: EventStore) -> None:
    event = make_event("DU14", Command.REBALANCE)
    run = run_of(event, attempt=2)
    await store.apply_history([entry(event, Transition.PROCESSING, times=2)])
    await store.save_run(run)
    await store.apply_history([entry(event, Transition.COALESCED, times=2)])
    history = await store.history(event.event_id)
    assert history is not None
    assert history.runs[0].status == "running"


async def test_secrets_never_reach_the_history(store: EventStore) -> None:
    secret = f"alloc-key-{uuid.uuid4().hex}"
    register_secret(secret)
    event = make_event("DU15", Command.REBALANCE)
    await store.apply_history([entry(event, Transition.RETRYING, times=2, detail=f"401 for key {secret}")])
    await store.save_run(
        RunRecord(**{**run_of(event).__dict__, "status": RunStatus.FAILED, "error": f"x {secret}"})
    )
    history = await store.history(event.event_id)
    assert history is not None
    assert secret not in repr(history)
    assert history.event.last_error == "401 for key ***"


async def test_history_is_read_as_typed_values_with_times_in_utc(store: EventStore) -> None:
    event = make_event("DU16", Command.REBALANCE)
    await store.apply_history([entry(event, Transition.QUEUED), entry(event, Transition.PROCESSING)])
    first, second = run_of(event), run_of(event, attempt=2)
    await store.save_run(first)
    await store.save_run(second)
    await store.save_orders(
        second.run_id, event.event_id, [OrderRecord("AAA", "BUY", 1, "MKT", "r", INTENT, seq=0)]
    )
    history = await store.history(event.event_id)
    assert history is not None
    summary = history.event
    assert (summary.status, summary.exec_command, summary.source) == (
        EventStatus.PROCESSING,
        Command.REBALANCE,
        EventSource.API,
    )
    assert {type(t.state) for t in history.transitions} == {Transition}
    assert {type(r.status) for r in history.runs} == {RunStatus}
    times = [summary.created_at, summary.updated_at, *(t.at for t in history.transitions)]
    times += [r.started_at for r in history.runs] + [o.updated_at for o in history.orders]
    assert {t.tzinfo for t in times} == {UTC}
    assert history.orders_of(first.run_id) == ()
    assert [o.symbol for o in history.orders_of(second.run_id)] == ["AAA"]
    assert summary.to_event() == event
    assert await store.get_event(event.event_id) == summary


async def test_unfinished_events_are_listed_oldest_first(fresh_store: EventStore) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    events = [make_event(f"A{i}", created_at=base + timedelta(seconds=i)) for i in range(5)]
    transitions = [
        Transition.QUEUED,
        Transition.COMPLETED,
        Transition.RETRYING,
        Transition.REMOVED,
        Transition.PROCESSING,
    ]
    await fresh_store.apply_history(
        [entry(e, t) for e, t in zip(reversed(events), reversed(transitions), strict=True)]
    )
    unfinished = await fresh_store.unfinished_events()
    assert [(e.account_id, e.status) for e in unfinished] == [
        ("A0", EventStatus.QUEUED),
        ("A2", EventStatus.RETRYING),
        ("A4", EventStatus.PROCESSING),
    ]


async def test_deployment_facts_upsert(fresh_store: EventStore) -> None:
    assert await fresh_store.get_fact("x") is None
    await fresh_store.set_fact("x", "1")
    await fresh_store.set_fact("x", "2")
    assert await fresh_store.get_fact("x") == "2"


@pytest.fixture(params=["postgresql", "sqlite"])
async def any_store(
    request: pytest.FixtureRequest, store: EventStore, tmp_path: Path
) -> AsyncIterator[EventStore]:
    """The history on PostgreSQL (the services') and on SQLite (the demo's)."""
    if request.param == "postgresql":
        yield store
        return
    sqlite = EventStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'history.db'}")
    await sqlite.create_schema()
    yield sqlite
    await sqlite.close()


async def test_settled_orders_make_an_unknown_run_interrupted_only_when_none_is_left_open(
    any_store: EventStore,
) -> None:
    event = make_event("DU15", Command.REBALANCE)
    await any_store.apply_history([entry(event, Transition.PROCESSING)])
    ref = str(event.event_id)
    whole, half = run_of(event, status=RunStatus.UNKNOWN), run_of(event, status=RunStatus.UNKNOWN)
    for run in (whole, half):
        await any_store.save_run(run)
        await any_store.save_orders(
            run.run_id,
            event.event_id,
            [
                OrderRecord(
                    "AAA", "SELL", 5, "MKT", ref, "Submitted", broker_order_id=7, perm_id=9001, seq=0
                ),
                OrderRecord("BBB", "BUY", 3, "MKT", ref, INTENT, seq=1),
            ],
        )
    filled = OrderRecord("AAA", "SELL", 5, "MKT", ref, "Filled", 5, 10.5, None, 7, 9001, seq=0)
    unsent = OrderRecord("BBB", "BUY", 3, "MKT", ref, "Cancelled", seq=1, message="never sent")
    note = "settled by run X"
    closed = await any_store.settle_orders(
        event.event_id, [(whole.run_id, filled), (whole.run_id, unsent), (half.run_id, filled)], note
    )

    assert closed == 1
    history = await any_store.history(event.event_id)
    assert history is not None
    runs = {r.run_id: r for r in history.runs}
    assert (runs[whole.run_id].status, runs[whole.run_id].message) == ("interrupted", note)
    assert runs[half.run_id].status == "unknown"  # its BBB is still only an intent
    assert [(o.symbol, o.status, o.filled_quantity) for o in history.orders_of(whole.run_id)] == [
        ("AAA", "Filled", 5),
        ("BBB", "Cancelled", 0),
    ]
    assert len(await any_store.event_orders(event.event_id)) == 4

    # The stopped run's own last saves land late: they undo nothing the settlement wrote.
    stale = OrderRecord("AAA", "SELL", 5, "MKT", ref, "Submitted", broker_order_id=7, perm_id=9001, seq=0)
    await any_store.save_orders(whole.run_id, event.event_id, [stale])
    await any_store.save_run(RunRecord(**{**whole.__dict__, "error": "stopped: its lease was lost"}))
    history = await any_store.history(event.event_id)
    assert history is not None
    assert {r.run_id: r.status for r in history.runs}[whole.run_id] == "interrupted"
    assert [o.status for o in history.orders_of(whole.run_id)] == ["Filled", "Cancelled"]
