"""Liveness of the broker and processors, written to Redis and read by the management service.

Each process writes `{"state": ..., "at": <unix seconds>, ...}` under `service:instance` in one hash
every few seconds. Every process names itself the same way (`instance_name`: `host:pid:random`), so a
container's health check finds its own entries by the host part. The reader judges age against
`stale_after_seconds`. A process that stops leaves its entry behind, which is then reported stale,
never healthy.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from rebalancer_shared.queue.keys import QueueKeys

INSTANCE_SEPARATOR = ":"


def instance_name() -> str:
    """`host:pid:random6`: unique per process, and starting with the host (see `this_host_prefix`)."""
    return INSTANCE_SEPARATOR.join((socket.gethostname(), str(os.getpid()), uuid.uuid4().hex[:6]))


def this_host_prefix() -> str:
    """`host:`, the start of the name of every process of this host (a host name has no colon)."""
    return f"{socket.gethostname()}{INSTANCE_SEPARATOR}"


@dataclass(frozen=True)
class Heartbeat:
    """One process's last report."""

    service: str
    instance: str
    state: str
    at: float
    details: dict[str, Any]

    def age(self, now: float | None = None) -> float:
        """Seconds since the report."""
        return max(0.0, (time.time() if now is None else now) - self.at)


async def beat(redis: Redis, prefix: str, service: str, instance: str, state: str, **details: Any) -> None:
    """Record that `service:instance` is alive and in `state` now."""
    payload = json.dumps({"state": state, "at": time.time(), **details}, default=str)
    await redis.hset(QueueKeys(prefix).heartbeats, f"{service}:{instance}", payload)


async def forget(redis: Redis, prefix: str, service: str, instance: str) -> None:
    """Remove a process's entry (on a clean shutdown)."""
    await redis.hdel(QueueKeys(prefix).heartbeats, f"{service}:{instance}")


async def read_heartbeats(redis: Redis, prefix: str) -> list[Heartbeat]:
    """Every process's last report, newest first."""
    raw = await redis.hgetall(QueueKeys(prefix).heartbeats)
    beats = []
    for key, value in raw.items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        service, _, instance = name.partition(":")
        data = json.loads(value)
        beats.append(
            Heartbeat(
                service=service,
                instance=instance,
                state=str(data.pop("state", "unknown")),
                at=float(data.pop("at", 0.0)),
                details=data,
            )
        )
    return sorted(beats, key=lambda b: b.at, reverse=True)
