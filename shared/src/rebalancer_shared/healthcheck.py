"""The container health check of a heartbeating service (broker, processor): exit 0 healthy, 1 not.

Healthy means a process of *this* container wrote its heartbeat to Redis within `max_age_seconds`
(the services write one at least every 5 s). Every service names its entry by the one scheme,
`rebalancer_shared.heartbeats.instance_name`: `{host}:{pid}:{random}`, and a container's hostname is
its own, so matching on `{host}:` judges each scaled replica alone (a host name has no colon, so
`web:` never matches a process of `web-2`). It reads the same configuration as the service
(CONFIG_FILE, REDIS_URL, REDIS_KEY_PREFIX).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

from redis.exceptions import RedisError

from rebalancer_shared.config import Settings, load_settings
from rebalancer_shared.errors import ConfigError
from rebalancer_shared.heartbeats import Heartbeat, read_heartbeats, this_host_prefix
from rebalancer_shared.redis_connection import open_redis

REDIS_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class OwnHeartbeatCheck:
    """The check for one service (its instances are named by `instance_name`: `{hostname}:...`)."""

    service: str
    max_age_seconds: float = 60.0

    def instance_prefix(self) -> str:
        """The start of every heartbeat entry a process of this host writes."""
        return this_host_prefix()

    def heartbeat_problem(self, beats: Iterable[Heartbeat], now: float) -> str | None:
        """None when this host's process beat recently enough, else what is wrong."""
        prefix = self.instance_prefix()
        ages = [b.age(now) for b in beats if b.service == self.service and b.instance.startswith(prefix)]
        if not ages:
            return f"no {self.service} heartbeat from this host ({prefix}*) in Redis"
        age = min(ages)
        if age > self.max_age_seconds:
            limit = f"{self.max_age_seconds:g}"
            return f"newest {self.service} heartbeat of this host is {age:.0f} s old (limit {limit} s)"
        return None

    async def check(self, settings: Settings) -> str | None:
        """Read the heartbeats from the configured Redis and judge them."""
        redis = open_redis(
            settings.redis.url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
        try:
            beats = await read_heartbeats(redis, settings.redis.key_prefix)
        finally:
            await redis.aclose()
        return self.heartbeat_problem(beats, time.time())

    def main(self) -> int:
        """Print the verdict (Docker keeps it in the health log) and return the exit code."""
        try:
            problem = asyncio.run(self.check(load_settings()))
        except (ConfigError, RedisError, OSError) as exc:
            problem = f"cannot read heartbeats: {exc}"
        if problem is not None:
            print(f"unhealthy: {problem}")
            return 1
        print("healthy")
        return 0
