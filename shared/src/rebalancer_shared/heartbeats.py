"""Liveness of the broker and processors, written to Redis and read by the management service.

Each process writes `{"state": ..., "at": <unix seconds>, ...}` under `service:instance` in one hash,
through one writer (`HeartbeatWriter`): every few seconds, and at once when what it reports changes.
Every process names itself the same way (`instance_name`: `host:pid:random`), so a container's health
check finds its own entries by the host part. The reader judges age against `stale_after_seconds`. A
process that stops cleanly removes its entry; one that dies leaves it behind, which is then reported
stale, never healthy.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.asyncio import Redis

from rebalancer_shared.queue.keys import QueueKeys

log = structlog.get_logger(__name__)

INSTANCE_SEPARATOR = ":"
# How often the writer asks for the report, to beat at once when it changed.
POLL_SECONDS = 0.25


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


@dataclass(frozen=True)
class HeartbeatReport:
    """What a beat says: the process's state, and the details beside it (plain JSON values)."""

    state: str
    details: Mapping[str, Any] = field(default_factory=dict)


class HeartbeatWriter:
    """The one heartbeat writer: `service:instance` beats while `run` runs, and is removed after.

    A beat is written every `interval_seconds`, and at once (within `poll_seconds`) when `report()`
    says something else than the last beat did. A beat that cannot be written is logged and never
    fatal: the next one tries again. `stop()` ends `run`, which then removes the entry, so a process
    that stopped cleanly is not reported as stale.
    """

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        service: str,
        instance: str,
        report: Callable[[], HeartbeatReport],
        *,
        interval_seconds: float,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.service = service
        self.instance = instance
        self._redis = redis
        self._prefix = prefix
        self._report = report
        self._interval = interval_seconds
        self._poll = min(poll_seconds, interval_seconds)
        self._stopped = asyncio.Event()

    def stop(self) -> None:
        """Make `run` return (after removing the entry)."""
        self._stopped.set()

    async def run(self) -> None:
        """Beat until `stop()`, then remove the entry (also when cancelled)."""
        loop = asyncio.get_running_loop()
        last: HeartbeatReport | None = None
        last_at = -math.inf
        try:
            while not self._stopped.is_set():
                current = self._report()
                if current != last or loop.time() - last_at >= self._interval:
                    await self._write(current)
                    # Also after a failure: the next try waits for a change or the interval.
                    last, last_at = current, loop.time()
                await asyncio.sleep(self._poll)
        finally:
            await self._forget()

    async def _write(self, report: HeartbeatReport) -> None:
        try:
            await beat(self._redis, self._prefix, self.service, self.instance, report.state, **report.details)
        except Exception as exc:  # never fatal: the process goes on, the next beat tries again
            log.warning("heartbeat not written", service=self.service, error=str(exc) or type(exc).__name__)

    async def _forget(self) -> None:
        try:
            await forget(self._redis, self._prefix, self.service, self.instance)
        except Exception as exc:  # left behind, it is reported stale: a clean stop is not held up by it
            log.warning(
                "heartbeat entry not removed", service=self.service, error=str(exc) or type(exc).__name__
            )
