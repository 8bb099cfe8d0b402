"""Redis loses everything while the event broker and a processor run (processes, a throwaway
redis-server): FLUSHALL, and separately a SIGKILL and an empty restart. Within a reconcile interval
every unfinished event is back; every account still reaches its targets with its event completed;
no account is traded by two runs at once; nothing is lost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from rebalancer_shared.queue import QueueKeys
from tests.e2e.services import TARGETS, broker_and_processor
from tests.e2e.test_whole_system import AblyProcess, at_targets, wait_for
from tests.integration.processor.processes import TwsProcess
from tests.integration.processor.test_processor_processes import order_intervals_overlap
from tests.support.servers import ThrowawayRedis, throwaway_redis

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
CHANNEL = "strategy-loss"
ACCOUNTS = ["RL1", "RL2", "RL3", "RL4"]
PREFIX = "loss"
RECONCILE_SECONDS = 1.0


@dataclass
class Running:
    server: ThrowawayRedis
    tws: TwsProcess
    ably: AblyProcess
    database_url: str

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.server.url)

    def unfinished_in_postgresql(self) -> set[str]:
        with psycopg.connect(self.database_url.replace("+psycopg", "")) as conn:
            rows = conn.execute(
                "SELECT event_id FROM events WHERE status IN ('queued','processing','retrying')"
            )
            return {str(r[0]) for r in rows}

    def live_in_redis(self) -> set[str]:
        client = self.client()
        try:
            ids = client.zrange(QueueKeys(PREFIX).order, 0, -1)
            return {i.decode() if isinstance(i, bytes) else str(i) for i in ids}
        finally:
            client.close()

    def completed(self) -> int:
        with psycopg.connect(self.database_url.replace("+psycopg", "")) as conn:
            row = conn.execute("SELECT count(*) FROM events WHERE status = 'completed'").fetchone()
            return int(row[0]) if row else 0

    def overlapping_runs(self) -> list[Any]:
        with psycopg.connect(self.database_url.replace("+psycopg", "")) as conn:
            return conn.execute(
                "SELECT a.account_id FROM runs a JOIN runs b ON a.account_id = b.account_id"
                " AND a.run_id < b.run_id AND a.status <> 'running' AND b.status <> 'running'"
                " AND a.started_at < b.finished_at AND b.started_at < a.finished_at"
            ).fetchall()


@pytest.fixture
def running(fresh_database_url: str, tmp_path: Path) -> Iterator[Running]:
    with (
        throwaway_redis() as server,
        broker_and_processor(
            tmp_path,
            redis_url=server.url,
            prefix=PREFIX,
            database_url=fresh_database_url,
            channel=CHANNEL,
            accounts=ACCOUNTS,
            fill_delay=1.0,
            RECONCILE_INTERVAL_SECONDS=str(RECONCILE_SECONDS),
            MAX_CONCURRENT_EVENTS="1",
        ) as services,
    ):
        yield Running(server, services.tws, services.ably, fresh_database_url)


def _lose_and_recover(running: Running, lose: str) -> None:
    running.ably.publish(CHANNEL, {"exec": "rebalance"})
    wait_for(lambda: len(running.unfinished_in_postgresql()) == len(ACCOUNTS), 60, "the four events")
    wait_for(lambda: bool(running.tws.state()["received_orders"]), 60, "the first run to trade")
    unfinished = running.unfinished_in_postgresql()
    assert unfinished, "events are queued and processing when Redis is lost"
    if lose == "flushall":
        client = running.client()
        client.flushall()
        client.close()
    else:
        running.server.restart_empty()
    lost_at = time.monotonic()
    wait_for(
        lambda: unfinished <= running.live_in_redis() | completed_since(running, unfinished), 15, "restore"
    )
    restored_after = time.monotonic() - lost_at
    assert restored_after < RECONCILE_SECONDS + 5, f"restored only after {restored_after:.1f} s"

    wait_for(lambda: running.completed() == len(ACCOUNTS), 120, "every event to complete")
    state = running.tws.state()
    for account in ACCOUNTS:
        assert at_targets(state["accounts"][account], TARGETS), account
    assert order_intervals_overlap(state) == [], "two runs of one account traded at once"
    assert running.overlapping_runs() == []
    assert running.unfinished_in_postgresql() == set()


def completed_since(running: Running, ids: set[str]) -> set[str]:
    with psycopg.connect(running.database_url.replace("+psycopg", "")) as conn:
        rows = conn.execute("SELECT event_id FROM events WHERE status = 'completed'").fetchall()
    return {str(r[0]) for r in rows} & ids


def test_flushall_under_running_services_restores_every_unfinished_event(running: Running) -> None:
    _lose_and_recover(running, "flushall")


def test_redis_killed_and_restarted_empty_under_running_services_restores_every_unfinished_event(
    running: Running,
) -> None:
    _lose_and_recover(running, "restart")
