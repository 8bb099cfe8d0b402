"""`python -m event_broker` as a real process: catch-up after SIGKILL, a Redis out of memory, fatal
start-up errors, SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError

from rebalancer_shared.events import Command
from rebalancer_shared.heartbeats import Heartbeat, read_heartbeats
from rebalancer_shared.metrics import Counter
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore
from tests.fakes.ably import FakeAblyServer, FakeAblyThread
from tests.integration.broker.harness import counter, live_events, wait_until
from tests.support.servers import REDIS_URL, throwaway_redis

pytestmark = pytest.mark.timeout(60)

REPO_ROOT = Path(__file__).resolve().parents[3]
START_S = 20.0  # importing the broker takes a few seconds on a slow machine
CHANNEL = "strategy-proc"
ACCOUNTS_YAML = f"""
- account_id: "DU1"
  notification:
    channel: "{CHANNEL}"
- account_id: "DU2"
  notification:
    channel: "{CHANNEL}"
"""
# Variables of the machine that must not leak into the broker under test.
_CLEARED = ("ABLY_", "REDIS_", "DATABASE_URL", "ACCOUNTS_FILE", "CONFIG_FILE", "LOG_")


@pytest.fixture
def threaded_ably() -> Iterator[FakeAblyServer]:
    with FakeAblyThread() as server:
        yield server


@dataclass
class EventBrokerRun:
    """Where a broker process's environment and output go."""

    env: dict[str, str]
    workdir: Path

    def write_accounts(self, text: str) -> None:
        Path(self.env["ACCOUNTS_FILE"]).write_text(text)

    async def start(self, name: str) -> EventBrokerProcess:
        stdout = (self.workdir / f"{name}.out").open("wb")
        stderr_path = self.workdir / f"{name}.err"
        with stdout, stderr_path.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "event_broker",
                cwd=REPO_ROOT,
                env=self.env,
                stdout=stdout,
                stderr=stderr,
            )
        return EventBrokerProcess(process, stderr_path)


@dataclass
class EventBrokerProcess:
    process: asyncio.subprocess.Process
    stderr_path: Path

    @property
    def instance_prefix(self) -> str:
        """The start of the process's heartbeat name (`instance_name`: host, pid, then random)."""
        return f"{socket.gethostname()}:{self.process.pid}:"

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def log_lines(self) -> list[dict[str, object]]:
        """The JSON log lines written so far (LOG_FORMAT=json); a line still being written is skipped."""
        lines = []
        for text in self.stderr.splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                lines.append(json.loads(text))
        return lines

    async def wait(self, seconds: float = START_S) -> int:
        try:
            return await asyncio.wait_for(self.process.wait(), seconds)
        except TimeoutError:
            raise AssertionError(f"the broker did not exit; its output:\n{self.stderr}") from None

    async def stop(self, signum: signal.Signals) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signum)
        return await self.wait()


@pytest.fixture
def broker_run(
    tmp_path: Path, threaded_ably: FakeAblyServer, prefix: str, fresh_database_url: str
) -> EventBrokerRun:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED)}
    config = tmp_path / "config.yaml"
    config.write_text("ably:\n  catch_up_seconds: 120\n")
    env.update(
        {
            "PYTHONPATH": str(REPO_ROOT),
            "CONFIG_FILE": str(config),
            "ACCOUNTS_FILE": str(tmp_path / "accounts.yaml"),
            "ABLY_API_KEY": "fakeapp.fakekey:fakesecret",
            "ABLY_ENDPOINT": threaded_ably.endpoint,
            "ABLY_TLS": "false",
            "REDIS_URL": REDIS_URL,
            "REDIS_KEY_PREFIX": prefix,
            "DATABASE_URL": fresh_database_url,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
        }
    )
    run = EventBrokerRun(env, tmp_path)
    run.write_accounts(ACCOUNTS_YAML)
    return run


@pytest.fixture
async def broker_processes() -> AsyncIterator[list[EventBrokerProcess]]:
    """Processes a test started; any still running at the end is killed."""
    started: list[EventBrokerProcess] = []
    yield started
    for broker in started:
        if broker.process.returncode is None:
            broker.process.kill()
            await broker.process.wait()


async def heartbeat_of(redis: Redis, prefix: str, broker: EventBrokerProcess) -> Heartbeat | None:
    beats = await read_heartbeats(redis, prefix)
    mine = (b for b in beats if b.service == "event-broker" and b.instance.startswith(broker.instance_prefix))
    return next(mine, None)


async def wait_subscribed(
    broker: EventBrokerProcess, redis: Redis, prefix: str, channels: frozenset[str] = frozenset({CHANNEL})
) -> Heartbeat:
    async def subscribed() -> bool:
        if broker.process.returncode is not None:
            raise AssertionError(f"the broker exited with {broker.process.returncode}:\n{broker.stderr}")
        beat = await heartbeat_of(redis, prefix, broker)
        return (
            beat is not None
            and beat.state == "connected"
            and beat.details["channels"] == dict.fromkeys(channels, "attached")
        )

    await wait_until(subscribed, "the broker's heartbeat to show its channels attached", seconds=START_S)
    beat = await heartbeat_of(redis, prefix, broker)
    assert beat is not None
    return beat


async def publish(fake: FakeAblyServer, name: str, data: object, channel: str = CHANNEL) -> str:
    return await asyncio.to_thread(fake.publish_threadsafe, channel, name, data)


async def test_killed_broker_catches_up_on_restart_and_repeats_nothing(
    broker_run: EventBrokerRun,
    broker_processes: list[EventBrokerProcess],
    threaded_ably: FakeAblyServer,
    queue: EventQueue,
    redis_client: Redis,
    prefix: str,
) -> None:
    first = await broker_run.start("first")
    broker_processes.append(first)
    await wait_subscribed(first, redis_client, prefix)
    handled = await publish(threaded_ably, "handled", {"exec": "print-orders"})
    await wait_until(lambda: _live_count(queue, 2), "the first message's two events")
    # Handled means submitted *and* remembered; a kill between the two would repeat it (at-least-once).
    await wait_until(lambda: _remembered(redis_client, queue, handled), "the first message to be remembered")
    for _ in range(2):  # finish them: a repeat of the message would now be queued as new events
        claim = await queue.claim("worker")
        assert claim is not None
        await queue.complete(claim)

    assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
    missed = {
        await publish(threaded_ably, "missed", {"exec": command})
        for command in ("rebalance", "print-positions", "print-equity")
    }
    second = await broker_run.start("second")
    broker_processes.append(second)
    await wait_subscribed(second, redis_client, prefix)
    marker = await publish(threaded_ably, "marker", {"exec": "cancel-orders"})
    await wait_until(lambda: _live_count(queue, 8), "two events for each missed message and the marker")
    assert await second.stop(signal.SIGTERM) == 0

    events = await live_events(queue)
    assert sorted((e.ably_message_id or "", e.account_id) for e in events) == sorted(
        (message_id, account) for message_id in (*missed, marker) for account in ("DU1", "DU2")
    )
    assert Command.REBALANCE in {e.exec_command for e in events}
    assert await counter(queue, Counter.EVENTS_DUPLICATE) == 0
    assert await counter(queue, Counter.EVENTS_QUEUED) == 10
    assert handled in second.stderr
    assert "already turned into events" in second.stderr
    ttl = await redis_client.ttl(queue.keys.ably_seen(handled))
    assert 2 * 120 < ttl <= 2 * 120 + 3600


async def _remembered(redis: Redis, queue: EventQueue, message_id: str) -> bool:
    return bool(await redis.exists(queue.keys.ably_seen(message_id)))


async def _live_count(queue: EventQueue, expected: int) -> bool:
    return len(await live_events(queue)) >= expected


BURST = 20


@pytest.mark.timeout(120)
async def test_burst_while_redis_answers_oom_is_held_and_queued_once_redis_has_memory_again(
    broker_run: EventBrokerRun,
    broker_processes: list[EventBrokerProcess],
    threaded_ably: FakeAblyServer,
    fresh_store: EventStore,
    prefix: str,
) -> None:
    # One account per channel, one message per channel: every message must become exactly one event.
    channels = {f"DU-OOM-{i:02d}": f"oom-{i:02d}" for i in range(BURST)}
    broker_run.write_accounts(
        "".join(f'- account_id: "{a}"\n  notification:\n    channel: "{c}"\n' for a, c in channels.items())
    )
    with throwaway_redis() as server:
        broker_run.env["REDIS_URL"] = server.url
        redis = Redis.from_url(server.url)
        queue = EventQueue(redis, prefix, lease_seconds=30.0)
        try:
            broker = await broker_run.start("oom")
            broker_processes.append(broker)
            await wait_subscribed(broker, redis, prefix, frozenset(channels.values()))

            # Any limit below what the server already holds: every write now answers OOM, reads work.
            await redis.config_set("maxmemory-policy", "noeviction")
            await redis.config_set("maxmemory", "1")
            with pytest.raises(OutOfMemoryError):
                await redis.set(f"{prefix}:probe", "1")
            published = {
                account: await publish(threaded_ably, "trigger", {"exec": "rebalance"}, channel)
                for account, channel in channels.items()
            }
            await wait_until(
                lambda: _logged_not_queued(broker), "the broker to log that a trigger is NOT queued yet", 30
            )
            assert await live_events(queue) == [], "nothing can be queued while Redis is out of memory"

            await redis.config_set("maxmemory", "0")
            await wait_until(lambda: _live_count(queue, BURST), "every message's event", 30)
            await wait_until(
                lambda: _all_remembered(redis, queue, published.values()), "every message to be remembered"
            )
            assert await broker.stop(signal.SIGTERM) == 0
            events = await live_events(queue)
            queued = await counter(queue, Counter.EVENTS_QUEUED)
        finally:
            await redis.aclose()

    assert sorted((e.account_id, e.ably_message_id) for e in events) == sorted(published.items())
    assert {e.exec_command for e in events} == {Command.REBALANCE}
    assert queued == BURST
    for event in events:
        history = await fresh_store.history(event.event_id)
        assert history is not None
        assert [t.state for t in history.transitions] == ["queued"]
    assert "could not be turned into events" not in broker.stderr, "no message may be dropped"


def _logged_not_queued(broker: EventBrokerProcess) -> bool:
    return any(
        line.get("level") == "error" and "trigger is NOT queued yet" in str(line.get("event"))
        for line in broker.log_lines()
    )


async def _all_remembered(redis: Redis, queue: EventQueue, message_ids: Iterable[str]) -> bool:
    return all([await _remembered(redis, queue, message_id) for message_id in message_ids])


async def test_rejected_ably_key_exits_non_zero_and_says_so(
    broker_run: EventBrokerRun,
    broker_processes: list[EventBrokerProcess],
    threaded_ably: FakeAblyServer,
    redis_client: Redis,
    prefix: str,
) -> None:
    await asyncio.to_thread(threaded_ably.reject_key_threadsafe, True)

    broker = await broker_run.start("rejected")
    broker_processes.append(broker)

    assert await broker.wait() == 3
    assert "Ably rejected the API key" in broker.stderr
    assert "40101" in broker.stderr
    assert "ABLY_API_KEY" in broker.stderr
    assert await heartbeat_of(redis_client, prefix, broker) is None


async def test_invalid_accounts_file_exits_non_zero_naming_the_problem(
    broker_run: EventBrokerRun, broker_processes: list[EventBrokerProcess]
) -> None:
    broker_run.write_accounts(ACCOUNTS_YAML + ACCOUNTS_YAML)  # every account twice

    broker = await broker_run.start("bad-accounts")
    broker_processes.append(broker)

    assert await broker.wait() == 2
    assert "invalid accounts file" in broker.stderr
    assert broker_run.env["ACCOUNTS_FILE"] in broker.stderr
    assert "duplicate account id" in broker.stderr


async def test_missing_ably_key_exits_non_zero_naming_the_variable(
    broker_run: EventBrokerRun, broker_processes: list[EventBrokerProcess]
) -> None:
    del broker_run.env["ABLY_API_KEY"]

    broker = await broker_run.start("no-key")
    broker_processes.append(broker)

    assert await broker.wait() == 2
    assert "invalid configuration" in broker.stderr
    assert "ABLY_API_KEY" in broker.stderr


async def test_sigterm_stops_the_broker_with_exit_0_and_removes_its_heartbeat(
    broker_run: EventBrokerRun,
    broker_processes: list[EventBrokerProcess],
    threaded_ably: FakeAblyServer,
    queue: EventQueue,
    redis_client: Redis,
    prefix: str,
) -> None:
    broker = await broker_run.start("sigterm")
    broker_processes.append(broker)
    await wait_subscribed(broker, redis_client, prefix)
    await publish(threaded_ably, "trigger", {"exec": "rebalance"})
    await wait_until(lambda: _live_count(queue, 2), "the trigger's events")

    assert await broker.stop(signal.SIGTERM) == 0

    assert await heartbeat_of(redis_client, prefix, broker) is None
    assert "event broker stopped" in broker.stderr
    assert await asyncio.to_thread(threaded_ably.connected_clients_threadsafe) == []
