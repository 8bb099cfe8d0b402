"""/events/{event_id}: an event's whole history from PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx

from rebalancer_shared.events import Command
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.store import EventStore, OrderRecord, RunRecord, RunStatus
from tests.integration.management.helpers import ACCOUNT_A
from tests.integration.queue.helpers import make_event


def _run(event_id: uuid.UUID, attempt: int, status: RunStatus, **extra: object) -> RunRecord:
    return RunRecord(
        event_id=event_id,
        attempt=attempt,
        account_id=ACCOUNT_A,
        exec_command="rebalance",
        execution_mode="live",
        worker="host:1:abc",
        status=status,
        started_at=datetime.now(UTC),
        **extra,  # type: ignore[arg-type]
    )


async def test_history_shows_transitions_runs_with_errors_equity_plan_and_orders(
    client: httpx.AsyncClient, lifecycle: EventLifecycle, store: EventStore
) -> None:
    event = make_event(ACCOUNT_A, Command.REBALANCE, data={"exec": "rebalance"})
    await lifecycle.submit(event)
    claim = await lifecycle.claim("host:1:abc", 0)
    assert claim is not None
    failed = _run(event.event_id, 1, RunStatus.FAILED, error="AllocationError: weights sum to 0.9")
    await store.save_run(failed)
    await lifecycle.fail(claim, "AllocationError: weights sum to 0.9", retry_delay_seconds=0)
    claim = await lifecycle.claim("host:1:abc", 0)
    assert claim is not None
    done = _run(
        event.event_id,
        2,
        RunStatus.SUCCESS,
        equity_info={"net_liquidation": 100000.0, "reserve": 1000.0},
        plan={"orders": [{"symbol": "SPY", "action": "BUY", "quantity": 10}]},
        finished_at=datetime.now(UTC),
    )
    await store.save_run(done)
    order = OrderRecord(
        "SPY", "BUY", 10, "MKT", "rb-1", "Filled", 10, 450.5, broker_order_id=7, perm_id=99, seq=0
    )
    await store.save_orders(done.run_id, event.event_id, [order])
    await lifecycle.complete(claim)

    response = await client.get(f"/events/{event.event_id}")
    assert response.status_code == 200
    body = response.json()
    assert body["event"]["event_id"] == str(event.event_id)
    assert (body["event"]["status"], body["event"]["times_queued"]) == ("completed", 2)
    assert body["event"]["data"] == {"exec": "rebalance"}
    states = [t["state"] for t in body["transitions"]]
    assert states == ["queued", "processing", "retrying", "processing", "completed"]
    assert body["transitions"][2]["detail"] == "AllocationError: weights sum to 0.9"
    first, second = body["runs"]
    assert (first["attempt"], first["status"], first["error"], first["orders"]) == (
        1,
        "failed",
        "AllocationError: weights sum to 0.9",
        [],
    )
    assert second["equity_info"] == {"net_liquidation": 100000.0, "reserve": 1000.0}
    assert second["plan"]["orders"][0]["symbol"] == "SPY"
    assert [
        (o["symbol"], o["status"], o["filled_quantity"], o["avg_fill_price"]) for o in second["orders"]
    ] == [("SPY", "Filled", 10.0, 450.5)]
    assert second["orders"][0]["perm_id"] == 99


async def test_an_unknown_event_is_404(client: httpx.AsyncClient) -> None:
    event_id = uuid.uuid4()
    response = await client.get(f"/events/{event_id}")
    assert response.status_code == 404
    assert response.json() == {"detail": f"event {event_id} is unknown"}


async def test_a_malformed_event_id_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/events/12345")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "event_id"]
