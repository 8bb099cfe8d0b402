"""Queue writes and replicas (queue/durability.py), on a real primary and replica under Sentinel.

A write is acknowledged once every connected replica has it (up to REDIS_WAIT_REPLICAS); a replica
that is connected but does not answer holds the acknowledgement back (NOREPLICAS, retried by the
caller), and a primary with no replica left goes on alone, saying so.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from rebalancer_shared.events import Command
from rebalancer_shared.queue import CompleteOutcome, EnqueueOutcome, EventQueue
from rebalancer_shared.queue.durability import REPLICA_COUNT_SECONDS, Durability, NotReplicatedError
from rebalancer_shared.redis_connection import open_redis
from rebalancer_shared.transient import is_transient
from tests.integration.queue.helpers import make_event
from tests.support.redis_topologies import ThrowawaySentinels, throwaway_sentinels


@pytest.fixture
async def group_and_queue() -> AsyncIterator[tuple[ThrowawaySentinels, EventQueue]]:
    with throwaway_sentinels() as group:
        client = open_redis(group.url)
        try:
            yield group, EventQueue(client, "durable", durability=Durability(replicas=1, timeout_seconds=0.3))
        finally:
            await client.aclose()


async def test_an_enqueue_is_acknowledged_only_once_the_replica_has_it(
    group_and_queue: tuple[ThrowawaySentinels, EventQueue],
) -> None:
    group, queue = group_and_queue
    assert (await queue.enqueue(make_event("DU1"))).outcome is EnqueueOutcome.QUEUED

    group.pause(group.replica)
    lagging = make_event("DU2", Command.REBALANCE)
    try:
        with pytest.raises(NotReplicatedError, match="NOREPLICAS enqueue") as refused:
            await queue.enqueue(lagging)
        assert is_transient(refused.value), "the relay and the API retry it"
        assert await queue.is_live([str(lagging.event_id)]) == [True], "on the primary, not acknowledged"
    finally:
        group.resume(group.replica)

    again = await queue.enqueue(lagging)  # the caller's retry: the same event, now confirmed
    assert again.outcome is EnqueueOutcome.ALREADY_ACCEPTED


async def test_a_completion_stands_while_the_next_claim_waits_for_the_replica(
    group_and_queue: tuple[ThrowawaySentinels, EventQueue],
) -> None:
    group, queue = group_and_queue
    first, second = make_event("DU1"), make_event("DU2")
    await queue.enqueue(first)
    await queue.enqueue(second)
    claim = await queue.claim("worker")
    assert claim is not None

    group.pause(group.replica)
    try:
        done = await queue.complete_and_claim(claim, "worker")
    finally:
        group.resume(group.replica)

    assert done.outcome is CompleteOutcome.COMPLETED
    assert done.next_claim is None, "a claim the replica does not have is not handed out"
    record = await queue.record(str(second.event_id))
    assert record is not None
    assert record["state"] == "processing", "taken on the primary: it returns when its lease expires"


async def test_a_primary_with_no_replica_left_goes_on_alone_and_says_so(
    group_and_queue: tuple[ThrowawaySentinels, EventQueue],
) -> None:
    group, queue = group_and_queue
    await queue.enqueue(make_event("DU1"))
    group.kill(group.replica)
    await asyncio.sleep(REPLICA_COUNT_SECONDS)  # the next write counts the replicas again
    with capture_logs() as logs:
        result = await queue.enqueue(make_event("DU2"))
    assert result.outcome is EnqueueOutcome.QUEUED
    warnings = [entry for entry in logs if "fewer replicas connected" in entry["event"]]
    assert [(w["connected"], w["wanted"]) for w in warnings] == [(0, 1)]
