"""Small factories for the management service's tests."""

from __future__ import annotations

import json
import time
from pathlib import Path

from fastapi import FastAPI
from pydantic import SecretStr
from redis.asyncio import Redis

from rebalancer_shared.config import Settings, load_settings
from rebalancer_shared.heartbeats import beat
from rebalancer_shared.queue import EventQueue, QueueKeys
from tests.support.servers import REDIS_URL

API_KEY = "test-management-key-7f3a9c"  # a fixed secret of the tests
ACCOUNT_A = "DU111111"
ACCOUNT_B = "DU222222"
ACCOUNTS_YAML = f"""
- account_id: "{ACCOUNT_A}"
  notification:
    channel: "strategy-a"
  rebalancing:
    equity_reserve_percentage: 2.5
- account_id: "{ACCOUNT_B}"
  notification:
    channel: "strategy-b"
"""


def write_accounts_file(path: Path) -> Path:
    path.write_text(ACCOUNTS_YAML, encoding="utf-8")
    return path


def make_settings(
    tmp_path: Path,
    *,
    prefix: str,
    database_url: str,
    accounts_file: Path,
    redis_url: str = REDIS_URL,
    **extra: str,
) -> Settings:
    """Settings from an empty config file and an explicit environment (never the real one)."""
    config = tmp_path / "config.yaml"
    config.write_text("{}\n", encoding="utf-8")
    environ = {
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "DATABASE_URL": database_url,
        "ACCOUNTS_FILE": str(accounts_file),
        "MANAGEMENT_API_KEY": API_KEY,
        **extra,
    }
    return load_settings(config_file=config, environ=environ)


async def beat_all(redis: Redis, prefix: str) -> None:
    """Fresh heartbeats of a broker and a processor."""
    await beat(redis, prefix, "event-broker", "b1", "connected", channels=2)
    await beat(redis, prefix, "event-processor", "p1", "running", active=0)


async def old_beat(redis: Redis, prefix: str, service: str, instance: str, age_seconds: float) -> None:
    """A heartbeat written `age_seconds` ago (what a process that died leaves behind)."""
    payload = json.dumps({"state": "running", "at": time.time() - age_seconds})
    await redis.hset(QueueKeys(prefix).heartbeats, f"{service}:{instance}", payload)


async def retrying_event(queue: EventQueue, error: str = "AllocationError: weights sum to 0.9") -> str:
    """Claim the oldest event and fail it: it waits in the retry set with times_queued 2."""
    claim = await queue.claim("test-worker")
    assert claim is not None
    await queue.fail(claim, error, retry_delay_seconds=300)
    return str(claim.event.event_id)


def set_api_key(app: FastAPI, settings: Settings, key: str | None) -> None:
    """Replace the app's settings with ones whose MANAGEMENT_API_KEY is `key` (None: unset)."""
    management = settings.management.model_copy(update={"api_key": SecretStr(key) if key else None})
    app.state.settings = settings.model_copy(update={"management": management})
