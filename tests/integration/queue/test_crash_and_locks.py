"""Crash safety with real processes killed by SIGKILL, and the account lock across processes."""

from __future__ import annotations

import asyncio
import random
import signal
import sys

from redis.asyncio import Redis

from rebalancer_shared.events import Command
from rebalancer_shared.queue import AccountLock, EventQueue, EventState
from tests.integration.queue.helpers import make_event

LEASE = 0.6


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def server_ms(client: Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def start_worker(prefix: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.queue.worker_process",
        prefix,
        str(LEASE),
        stdout=asyncio.subprocess.PIPE,
    )


async def kill_one_worker_at_a_random_point(queue: EventQueue, prefix: str, rng: random.Random) -> None:
    target = await queue.enqueue(make_event("CRASH", Command.REBALANCE))
    others = [(await queue.enqueue(make_event(f"OTHER{i}"))).event_id for i in range(3)]
    worker = await start_worker(prefix)
    assert worker.stdout is not None
    line = (await asyncio.wait_for(worker.stdout.readline(), 30)).decode().strip()
    assert line == f"claimed {target.event_id}"
    await asyncio.sleep(rng.uniform(0, 2 * LEASE))
    worker.send_signal(signal.SIGKILL)
    await worker.wait()

    expiry = await queue.redis.zscore(queue.keys.leases, target.event_id)
    assert expiry is not None, "the killed worker's event is still under its lease"
    reaped: list[tuple[str, int]] = []
    for _ in range(200):
        reaped = [(r.event_id, r.times_queued) for r in await queue.reap()]
        if reaped:
            break
        await asyncio.sleep(0.02)
    assert reaped == [(target.event_id, 2)], "the event comes back once, with its retry counted"
    assert await server_ms(queue.redis) >= expiry, "and only after its lease expired"
    assert await queue.reap() == []

    views = await queue.list_events(limit=10)
    assert [str(v.event.event_id) for v in views] == [target.event_id, *others]
    assert all(v.state is EventState.QUEUED for v in views)
    assert [v.event.times_queued for v in views] == [2, 1, 1, 1]
    order = [text(i) for i in await queue.redis.lrange(queue.keys.queue, 0, -1)]
    assert order == [*others, target.event_id], "the returned event waits at the back"
    for event_id in [*others, target.event_id]:
        await queue.remove(event_id)
    stats = await queue.stats()
    assert (stats.queue_length, stats.active_events_count, stats.processing_count) == (0, 0, 0)


async def test_worker_killed_at_twenty_random_points_loses_nothing(redis_client: Redis, prefix: str) -> None:
    queue = EventQueue(redis_client, prefix, lease_seconds=LEASE)
    rng = random.Random(20261121)
    for _ in range(20):
        await kill_one_worker_at_a_random_point(queue, prefix, rng)


async def test_two_processes_never_hold_one_accounts_lock_at_once(redis_client: Redis, prefix: str) -> None:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.integration.queue.lock_process", prefix, "DU1", "40"
        )
        for _ in range(3)
    ]
    for proc in procs:
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    timeline = [text(t) for t in await redis_client.lrange(f"{prefix}:timeline", 0, -1)]
    assert len(timeline) == 3 * 40 * 2
    holders = {t.split(":")[1] for t in timeline}
    assert len(holders) == 3
    for i in range(0, len(timeline), 2):
        enter, leave = timeline[i], timeline[i + 1]
        assert enter.startswith("enter:")
        assert leave == "exit:" + enter.split(":")[1], f"overlap at {i}: {timeline[i : i + 2]}"


async def test_a_dead_holders_lock_frees_itself_after_its_ttl(redis_client: Redis, prefix: str) -> None:
    dead = AccountLock(redis_client, prefix, "DU1", ttl_seconds=0.3)
    assert await dead.try_acquire()
    other = AccountLock(redis_client, prefix, "DU1", ttl_seconds=0.3)
    assert not await other.try_acquire()
    assert not await other.release(), "only the holder can release"
    assert await other.acquire(wait_seconds=2)
    assert not await dead.renew(), "the expired holder cannot renew the new holder's lock"
    assert await other.renew()
    assert await other.release()
    other_account = AccountLock(redis_client, prefix, "DU2", ttl_seconds=5)
    assert await other_account.try_acquire()
    await other_account.release()
