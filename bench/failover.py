"""Failover benchmark: from a Redis primary's death to the first event completed on the new primary.

Run: `.venv/bin/python bench/failover.py [--trials N] [--down-after-ms MS]`.
A primary, its replica and three Sentinels (throwaway redis-servers on loopback, the Sentinel timings
of docker-compose.yml's `sentinel` profile unless told otherwise); one producer enqueues an event
every 10 ms and one worker runs the processor's loop (claim, complete), both through
`open_redis(redis+sentinel://...)` with writes waiting for the replica, and both going on after an
error as the services do. The primary is SIGKILLed; the benchmark reports when the Sentinels named
the replica primary and when the first event completed after the kill. Target: under 15 s.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from rebalancer_shared.events import Command, Event, EventSource
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.queue.durability import Durability
from rebalancer_shared.redis_connection import open_redis
from tests.support.redis_topologies import ThrowawaySentinels, throwaway_sentinels

COMPOSE_DOWN_AFTER_MS = 5000  # docker-compose.yml, `sentinel down-after-milliseconds`
COMPOSE_FAILOVER_TIMEOUT_MS = 60_000
ERROR_PAUSE_SECONDS = 0.1


@dataclass
class Timeline:
    completed: list[float] = field(default_factory=list)
    errors: int = 0


async def produce(queue: EventQueue, timeline: Timeline, stop: asyncio.Event) -> None:
    i = 0
    while not stop.is_set():
        event = Event(account_id=f"F{i}", exec_command=Command.PRINT_POSITIONS, source=EventSource.API)
        try:
            await queue.enqueue(event)
            i += 1
        except (RedisError, OSError):
            timeline.errors += 1
            await asyncio.sleep(ERROR_PAUSE_SECONDS)
        await asyncio.sleep(0.01)


async def work(queue: EventQueue, timeline: Timeline, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            claim = await queue.claim("bench-failover")
            if claim is None:
                await asyncio.sleep(0.005)
                continue
            await queue.complete(claim)
            timeline.completed.append(time.monotonic())
        except (RedisError, OSError):
            timeline.errors += 1
            await asyncio.sleep(ERROR_PAUSE_SECONDS)


async def promoted_at(group: ThrowawaySentinels, old_primary: int) -> float:
    while True:
        with contextlib.suppress(RuntimeError):
            if await asyncio.to_thread(group.current_primary) != old_primary:
                return time.monotonic()
        await asyncio.sleep(0.05)


async def trial(down_after_ms: int) -> tuple[float, float, int]:
    """Seconds from the kill to the promotion and to the first completion; errors met meanwhile."""
    with throwaway_sentinels(down_after_ms, COMPOSE_FAILOVER_TIMEOUT_MS) as group:
        client = open_redis(group.url)
        queue = EventQueue(client, "bench-failover", durability=Durability(replicas=1))
        timeline, stop = Timeline(), asyncio.Event()
        tasks = [
            asyncio.create_task(produce(queue, timeline, stop)),
            asyncio.create_task(work(queue, timeline, stop)),
        ]
        await asyncio.sleep(2.0)
        old_primary = group.primary
        killed = time.monotonic()
        group.kill(old_primary)
        promoted = await promoted_at(group, old_primary)
        while not [t for t in timeline.completed if t > promoted]:
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*tasks)
        await client.aclose()
    first = min(t for t in timeline.completed if t > promoted)
    return promoted - killed, first - killed, timeline.errors


async def main(trials: int, down_after_ms: int) -> None:
    print(
        f"Failover benchmark (Sentinel down-after {down_after_ms} ms, quorum 2 of 3, writes WAIT 1 replica)"
    )
    print()
    results = []
    for n in range(1, trials + 1):
        promoted, progress, errors = await trial(down_after_ms)
        results.append(progress)
        print(
            f"  trial {n}: replica promoted {promoted:5.1f} s, first event completed {progress:5.1f} s "
            f"after the kill ({errors} errors retried meanwhile)"
        )
    print()
    print(
        f"  median to progress {statistics.median(results):5.1f} s,"
        f" worst {max(results):5.1f} s (target < 15 s)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--down-after-ms", type=int, default=COMPOSE_DOWN_AFTER_MS)
    args = parser.parse_args()
    asyncio.run(main(args.trials, args.down_after_ms))
