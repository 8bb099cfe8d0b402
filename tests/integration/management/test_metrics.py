"""/metrics: Prometheus text of the queue and the per-command counters, read at scrape time."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from rebalancer_shared.events import Command
from rebalancer_shared.metrics import Counter, count
from rebalancer_shared.queue import EventQueue
from tests.integration.management.helpers import retrying_event
from tests.integration.queue.helpers import make_event


async def _scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_queue_gauges_follow_the_queue(client: httpx.AsyncClient, queue: EventQueue) -> None:
    empty = await _scrape(client)
    assert empty[("rebalancer_queue_length", ())] == 0
    assert empty[("rebalancer_queue_oldest_event_age_seconds", ())] == 0
    for account in ("A1", "A2", "A3"):
        await queue.enqueue(make_event(account))
    await retrying_event(queue)
    samples = await _scrape(client)
    assert samples[("rebalancer_queue_length", ())] == 2
    assert samples[("rebalancer_queue_retrying", ())] == 1
    assert samples[("rebalancer_queue_processing", ())] == 0
    assert samples[("rebalancer_queue_active_events", ())] == 3
    assert samples[("rebalancer_queue_events_with_retries", ())] == 1


async def test_counters_come_from_redis_per_command(
    client: httpx.AsyncClient, redis_client: Redis, prefix: str
) -> None:
    before = await _scrape(client)
    assert before[("rebalancer_events_queued_total", (("command", "rebalance"),))] == 0
    await count(redis_client, prefix, Counter.EVENTS_QUEUED, "rebalance", 3)
    await count(redis_client, prefix, Counter.EVENTS_COMPLETED, "rebalance", 2)
    await count(redis_client, prefix, Counter.EVENTS_FAILED, "print-positions")
    await count(redis_client, prefix, Counter.EVENTS_RETRIED, "print-positions")
    await count(redis_client, prefix, Counter.ORDERS_PLACED, "rebalance", 7)
    after = await _scrape(client)
    assert after[("rebalancer_events_queued_total", (("command", "rebalance"),))] == 3
    assert after[("rebalancer_events_completed_total", (("command", "rebalance"),))] == 2
    assert after[("rebalancer_events_failed_total", (("command", "print-positions"),))] == 1
    assert after[("rebalancer_events_retried_total", (("command", "print-positions"),))] == 1
    assert after[("rebalancer_orders_placed_total", (("command", "rebalance"),))] == 7
    # Every command has a series for every counter, zero until it counts.
    for command in Command:
        assert ("rebalancer_events_removed_total", (("command", command.value),)) in after
