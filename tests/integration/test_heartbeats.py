"""Heartbeats: written by each process, read back newest first, removed on a clean stop."""

from __future__ import annotations

import os
import socket
import uuid

from redis.asyncio import Redis

from rebalancer_shared.heartbeats import beat, forget, instance_name, read_heartbeats, this_host_prefix


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
