"""The worker's idle slots wake on a nudge or a due time, not by polling (fallback poll: 5 s here).

The bounds are behaviour, not speed: an event that runs within 1 s of its trigger, with a 5 s fallback,
ran because its slot was woken.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from event_processor.brokers import SimulatedBroker
from rebalancer_shared.events import Command
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore
from tests.fakes.allocations import AllocationServer
from tests.integration.processor.harness import FAST, accounts_on, running_processor

FALLBACK = FAST.model_copy(update={"claim_poll_seconds": 5.0, "retry_delay_seconds": 0.4})
AT_ONCE = 1.0


@pytest.fixture
def api() -> Iterator[AllocationServer]:
    with AllocationServer() as server:
        server.set_weights("chan", {"AAA": 1.0})
        yield server


def broker(latency: float = 0.0) -> SimulatedBroker:
    simulated = SimulatedBroker({"AAA": 100.0}, latency_seconds=latency)
    simulated.add_account("DU1", cash=10_000.0)
    return simulated


async def completed_within(store: EventStore, event_id: uuid.UUID, seconds: float) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < seconds:
        row = await store.get_event(event_id)
        if row is not None and row.status == "completed":
            return loop.time() - start
        await asyncio.sleep(0.01)
    raise AssertionError(f"the event did not complete within {seconds} s")


async def test_an_event_submitted_while_every_slot_idles_runs_at_once(
    queue: EventQueue, store: EventStore, api: AllocationServer
) -> None:
    async with running_processor(queue, store, broker(), api, accounts_on("chan", "DU1"), FALLBACK) as proc:
        await asyncio.sleep(0.5)  # every slot has found nothing and sleeps
        event = await proc.submit("DU1", Command.PRINT_POSITIONS)
        took = await completed_within(store, event.event_id, FALLBACK.claim_poll_seconds)
    assert took < AT_ONCE


async def test_a_failed_event_runs_again_at_its_due_time_not_at_the_fallback(
    queue: EventQueue, store: EventStore, api: AllocationServer
) -> None:
    api.set_raw("chan", b"{}", status=500)
    async with running_processor(queue, store, broker(), api, accounts_on("chan", "DU1"), FALLBACK) as proc:
        event = await proc.submit("DU1", Command.PRINT_REBALANCE)
        while not api.requests:
            await asyncio.sleep(0.01)
        api.set_weights("chan", {"AAA": 1.0})  # the retry will succeed
        took = await completed_within(store, event.event_id, FALLBACK.claim_poll_seconds)
    history = await store.history(event.event_id)
    assert history is not None
    assert [t.state for t in history.transitions] == [
        "queued",
        "processing",
        "retrying",
        "processing",
        "completed",
    ]
    assert FALLBACK.retry_delay_seconds - 0.1 < took < FALLBACK.retry_delay_seconds + AT_ONCE


async def test_stop_is_prompt_while_every_slot_idles(
    queue: EventQueue, store: EventStore, api: AllocationServer
) -> None:
    loop = asyncio.get_running_loop()
    async with running_processor(queue, store, broker(), api, accounts_on("chan", "DU1"), FALLBACK):
        await asyncio.sleep(0.5)
        stopping = loop.time()
    # Well under the 5 s fallback, with room for a loaded machine.
    assert loop.time() - stopping < 3 * AT_ONCE, "idle slots do not sleep out their fallback at shutdown"


async def test_a_run_claimed_after_a_long_idle_wait_has_its_whole_lease(
    queue: EventQueue, store: EventStore, api: AllocationServer
) -> None:
    short_lease = FALLBACK.model_copy(update={"lease_seconds": 1.0, "heartbeat_seconds": 0.2})
    accounts = accounts_on("chan", "DU1")
    async with running_processor(queue, store, broker(latency=0.3), api, accounts, short_lease) as proc:
        await asyncio.sleep(1.5)  # idle for longer than the lease: the fence counts from the claim
        event = await proc.submit("DU1", Command.PRINT_REBALANCE)
        await completed_within(store, event.event_id, short_lease.claim_poll_seconds)
    history = await store.history(event.event_id)
    assert history is not None
    assert [t.state for t in history.transitions] == ["queued", "processing", "completed"]
