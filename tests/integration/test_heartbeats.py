"""Heartbeats: written by each process, read back newest first, removed on a clean stop."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable

from redis.asyncio import Redis
from structlog.testing import capture_logs

from rebalancer_shared.heartbeats import (
    Heartbeat,
    HeartbeatReport,
    HeartbeatWriter,
    beat,
    forget,
    instance_name,
    read_heartbeats,
    this_host_prefix,
)


async def test_heartbeats_are_read_back_newest_first(redis_client: Redis, prefix: str) -> None:
    instance = uuid.uuid4().hex[:6]
    await beat(redis_client, prefix, "event-broker", instance, "connected", channels=2)
    await beat(redis_client, prefix, "event-processor", "p1", "running")
    beats = await read_heartbeats(redis_client, prefix)
    assert [b.service for b in beats] == ["event-processor", "event-broker"]
    assert beats[1].state == "connected"
    assert beats[1].details == {"channels": 2}
    assert beats[1].age() < 5
    await forget(redis_client, prefix, "event-broker", instance)
    assert [b.service for b in await read_heartbeats(redis_client, prefix)] == ["event-processor"]


def test_every_process_is_named_host_pid_random() -> None:
    names = {instance_name() for _ in range(3)}
    assert len(names) == 3
    for name in names:
        host, pid, suffix = name.split(":")
        assert (host, pid, len(suffix)) == (socket.gethostname(), str(os.getpid()), 6)
        assert name.startswith(this_host_prefix())


async def wait_for_beat(redis: Redis, prefix: str, check: Callable[[Heartbeat], bool]) -> Heartbeat:
    for _ in range(100):
        beats = await read_heartbeats(redis, prefix)
        if beats and check(beats[0]):
            return beats[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no heartbeat matched; last: {beats}")


async def test_the_writer_beats_at_once_on_a_change_and_removes_its_entry_on_stop(
    redis_client: Redis, prefix: str
) -> None:
    report = HeartbeatReport("starting", {"active": 0})
    writer = HeartbeatWriter(
        redis_client, prefix, "event-processor", "p1", lambda: report, interval_seconds=60, poll_seconds=0.02
    )
    task = asyncio.create_task(writer.run())
    first = await wait_for_beat(redis_client, prefix, lambda b: b.state == "starting")
    assert (first.service, first.instance, first.details) == ("event-processor", "p1", {"active": 0})

    report = HeartbeatReport("running", {"active": 2})  # long before the 60 s interval
    changed = await wait_for_beat(redis_client, prefix, lambda b: b.state == "running")
    assert changed.details == {"active": 2}
    assert changed.at >= first.at

    writer.stop()
    await asyncio.wait_for(task, 5)
    assert await read_heartbeats(redis_client, prefix) == []


async def test_the_writer_beats_again_every_interval_when_nothing_changes(
    redis_client: Redis, prefix: str
) -> None:
    writer = HeartbeatWriter(
        redis_client,
        prefix,
        "event-broker",
        "b1",
        lambda: HeartbeatReport("connected"),
        interval_seconds=0.1,
        poll_seconds=0.02,
    )
    task = asyncio.create_task(writer.run())
    first = await wait_for_beat(redis_client, prefix, lambda b: True)
    later = await wait_for_beat(redis_client, prefix, lambda b: b.at > first.at)
    assert later.state == "connected"
    writer.stop()
    await asyncio.wait_for(task, 5)


async def test_a_beat_that_cannot_be_written_is_logged_and_never_fatal(prefix: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    unreachable = Redis.from_url(f"redis://127.0.0.1:{closed_port}/0", socket_connect_timeout=1)
    writer = HeartbeatWriter(
        unreachable, prefix, "event-broker", "b1", lambda: HeartbeatReport("connected"), interval_seconds=0.05
    )
    try:
        with capture_logs() as logs:
            task = asyncio.create_task(writer.run())
            await asyncio.sleep(0.3)
            assert not task.done(), "the writer goes on"
            writer.stop()
            await asyncio.wait_for(task, 5)
    finally:
        await unreachable.aclose()
    events = [e["event"] for e in logs]
    assert events.count("heartbeat not written") >= 2
    assert events[-1] == "heartbeat entry not removed"
