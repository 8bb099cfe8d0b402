"""Latency benchmark: a trigger published on Ably to the first order at the gateway, through the services.

Run: `make bench`, or `.venv/bin/python bench/latency.py [--triggers 200] [--rounds 2] [--gap-ms 100]`
(about 8 minutes; `--triggers 20 --rounds 1` about a minute).

The path, every hop a process of its own: a publish on the loopback Ably -> `python -m event_broker`
-> Redis (a throwaway redis-server) -> `python -m event_processor` (BROKER=ibkr, MARKET_CALENDAR=
always_open, the rest config.yaml's defaults) -> the allocation API (a real HTTP server in this
process) -> the loopback TWS (a process, through ib_async) -> the first placeOrder. The management
service is not on this path (it reads and steers the queue; nothing waits for it), so it does not run.

Triggers go one at a time, each a live rebalance of one of `POOL` accounts (a channel each), reset
to the same drifted holdings before every trigger, so each run sells first and its first order
comes before any fill; the next is published once the previous event completed and a random pause
(0 to `--gap-ms`) passed, so triggers land at random moments of a polling cycle, as real ones do.

Every time comes from a record the fakes or the queue keep (one machine, one wall clock):
  total        the first placeOrder's arrival at the TWS (its `received_at`) - the publish as the
               loopback Ably stamped it (ms resolution)
  allocations  how long the allocation server held the request (arrival to reply written)
  gateway      how long the TWS held request messages (arrival to answer written, GET /served),
               overlaps merged
  overhead     total - allocations - gateway: the pipeline's own time, split at the transitions the
               queue recorded (Redis's clock, in the history): publish -> queued (Ably delivery, the
               event broker), queued -> processing (waiting for a worker: the poll or the wake-up),
               processing -> the allocation request (history, run record, HTTP), and the rest (the
               IBKR adapter: its connection, ib_async's pacing, the plan)
Besides, Redis's Lua script calls per second while the processor idles (INFO commandstats): claims,
mostly, so it shows the polling.

Two modes, alternated in `--rounds` blocks within one run, each block with a processor of its own:
  polling   processing.claim_wakeup false, claim_poll_seconds 0.05: idle slots poll every 50 ms, as
            every processor did before the wake-up
  wake-up   the defaults: a nudge per claimable event, due times, a 5 s fallback poll
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import yaml
from redis.asyncio import Redis
from sqlalchemy import text

from rebalancer_shared.heartbeats import read_heartbeats
from rebalancer_shared.queue import QueueKeys
from rebalancer_shared.store import EventStore
from tests.e2e.services import TARGETS, tws_state
from tests.e2e.test_whole_system import AblyProcess, ably_process
from tests.fakes.allocations import AllocationServer
from tests.fakes.tws.account import TwsState
from tests.integration.processor.processes import TwsProcess, stop
from tests.support.servers import create_database, database_url, drop_database, throwaway_redis

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "bench-latency"
POOL = 5  # accounts, each on a channel of its own, reset before every trigger
WARM_UP = 3  # triggers at the start of every block, not counted (first connections, imports)
MODES: dict[str, dict[str, Any]] = {
    "polling": {"claim_wakeup": False, "claim_poll_seconds": 0.05},
    "wake-up": {},
}
TARGET_OVERHEAD_P99_MS = 50.0
IDLE_SECONDS = 3.0  # how long Redis's script calls are counted while the processor idles


@dataclass(frozen=True)
class Trigger:
    account: str
    mode: str
    counted: bool

    @property
    def channel(self) -> str:
        return f"latency-{self.account}"


@dataclass
class Sent:
    """A published trigger and its Ably message id."""

    trigger: Trigger
    message_id: str


@dataclass(frozen=True)
class Sample:
    """One trigger's times, in ms."""

    total: float
    allocations: float
    gateway: float
    to_queued: float
    to_claimed: float
    to_api: float

    @property
    def overhead(self) -> float:
        return self.total - self.allocations - self.gateway

    @property
    def to_request(self) -> float:
        """The pipeline's time before its first external call."""
        return self.to_queued + self.to_claimed + self.to_api

    @property
    def adapter(self) -> float:
        return self.overhead - self.to_request


def plan_triggers(per_mode: int, rounds: int) -> list[list[Trigger]]:
    """Blocks of triggers, modes alternating, each block starting with its warm-up triggers."""
    per_block = -(-per_mode // rounds)
    blocks: list[list[Trigger]] = []
    n = 0
    for _ in range(rounds):
        for mode in MODES:
            block = []
            for i in range(WARM_UP + per_block):
                block.append(Trigger(f"DUL{n % POOL}", mode, counted=i >= WARM_UP))
                n += 1
            blocks.append(block)
    return blocks


def accounts() -> list[str]:
    return [f"DUL{i}" for i in range(POOL)]


def write_files(folder: Path) -> None:
    """accounts.yaml (a channel per account) and a config.yaml per mode."""
    (folder / "accounts.yaml").write_text(
        "".join(f'- account_id: "{a}"\n  notification:\n    channel: "latency-{a}"\n' for a in accounts())
    )
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    for mode, processing in MODES.items():
        mode_config = {**config, "processing": {**config["processing"], **processing}}
        (folder / f"config-{mode}.yaml").write_text(yaml.safe_dump(mode_config))


def service_env(
    folder: Path, redis_url: str, db_url: str, api: AllocationServer, tws: TwsProcess
) -> dict[str, str]:
    return {
        **os.environ,
        "CONFIG_FILE": str(folder / "config-wake-up.yaml"),
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": PREFIX,
        "DATABASE_URL": db_url,
        "ACCOUNTS_FILE": str(folder / "accounts.yaml"),
        "ALLOCATIONS_BASE_URL": api.base_url,
        "IB_HOST": "127.0.0.1",
        "IB_PORT": str(tws.port),
        "IB_CLIENT_ID": "41",
        "MARKET_CALENDAR": "always_open",  # the benchmark runs at any hour
        "LOG_FORMAT": "json",
    }


@contextlib.contextmanager
def tws_process(state: TwsState) -> Iterator[TwsProcess]:
    """The loopback TWS as a process, set up through its control endpoint. Without a state file: the
    fake rewrites that after every order and fill, which grows with every run of a long benchmark."""
    command = [sys.executable, "-m", "tests.fakes.tws", "--port", "0", "--control-port", "0"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        ports = json.loads(process.stdout.readline())
        tws = TwsProcess(ports["port"], ports["control_port"], process)
        tws.update(**state.to_json())
        yield tws
    finally:
        stop(process)
        if process.stdout is not None:
            process.stdout.close()


def start(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", module], env=env, cwd=ROOT, stdout=out, stderr=out)


async def wait_for(what: str, check: Callable[[], Awaitable[bool]], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def control(port: int, path: str, body: object | None = None) -> Any:
    """GET (or POST `body` to) a fake's control endpoint; its JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


@dataclass
class Bench:
    """The services of one run and the triggers it has sent."""

    redis: Redis
    ably: AblyProcess
    tws: TwsProcess
    env: dict[str, str]
    folder: Path
    gap: float
    sent: list[Sent] = field(default_factory=list)
    idle_scripts: dict[str, list[float]] = field(default_factory=lambda: {mode: [] for mode in MODES})

    async def run_block(self, block: list[Trigger]) -> None:
        """Start a processor in the block's mode, send its triggers one at a time, stop it."""
        env = {**self.env, "CONFIG_FILE": str(self.folder / f"config-{block[0].mode}.yaml")}
        processor = start("event_processor", env, self.folder / "processor.log")
        try:
            await wait_for("the processor's heartbeat", self._processor_beats)
            self.idle_scripts[block[0].mode].append(await self._idle_script_rate())
            for trigger in block:
                await self._send(trigger)
        finally:
            code = stop(processor)
        if code != 0:
            raise RuntimeError(f"the processor exited with {code}: see {self.folder / 'processor.log'}")

    async def _send(self, trigger: Trigger) -> None:
        drifted = tws_state(accounts(), fill_delay=0.01).to_json()["accounts"]
        await asyncio.to_thread(self.tws.update, accounts=drifted)
        await asyncio.sleep(random.uniform(0, self.gap))
        body = {"channel": trigger.channel, "name": "rebalance", "data": {"exec": "rebalance"}}
        reply = await asyncio.to_thread(control, self.ably.control_port, "/publish", body)
        self.sent.append(Sent(trigger, reply["id"]))
        await wait_for(f"the rebalance of {trigger.account}", self._caught_up, within=60)

    async def _idle_script_rate(self, seconds: float = IDLE_SECONDS) -> float:
        """Lua script calls per second (claims, mostly) while the processor has nothing to do."""
        await asyncio.sleep(1.0)  # its start (reconciliation, first claims) is over
        before = await self._script_calls()
        await asyncio.sleep(seconds)
        return (await self._script_calls() - before) / seconds

    async def _script_calls(self) -> int:
        stats = await self.redis.info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))

    async def _processor_beats(self) -> bool:
        beats = await read_heartbeats(self.redis, PREFIX)
        return any(b.service == "event-processor" for b in beats)

    async def _caught_up(self) -> bool:
        done = await self.redis.hget(QueueKeys(PREFIX).metrics, "events_completed:rebalance")
        return int(done or 0) >= len(self.sent)


def merged_ms(intervals: Sequence[tuple[float, float]], start: float, end: float) -> float:
    """Milliseconds of [start, end] covered by `intervals` (overlaps counted once)."""
    covered, reach = 0.0, start
    for lo, hi in sorted((max(lo, start), min(hi, end)) for lo, hi in intervals):
        if hi > reach:
            covered += hi - max(lo, reach)
            reach = hi
    return covered * 1000


@dataclass(frozen=True)
class Records:
    """What the fakes and the history recorded, gathered once at the end."""

    published_ms: dict[str, int]  # Ably message id -> its timestamp
    events: dict[str, tuple[str, float, float]]  # Ably message id -> event id, queued, processing
    orders: list[dict[str, Any]]
    requests: list[tuple[str, float, float]]  # path, arrival, reply written
    served: list[tuple[float, float]]  # TWS request messages: arrival, answer written


def sample_of(sent: Sent, records: Records) -> Sample:
    start = records.published_ms[sent.message_id] / 1000
    event_id, queued, processing = records.events[sent.message_id]
    first = min(o["received_at"] for o in records.orders if o["order_ref"] == event_id)
    [api] = [
        (lo, hi) for path, lo, hi in records.requests if f"/{sent.trigger.channel}/" in path and lo >= start
    ][:1]
    api_ms = merged_ms([api], start, first)
    return Sample(
        total=(first - start) * 1000,
        allocations=api_ms,
        gateway=merged_ms([*records.served, api], start, first) - api_ms,
        to_queued=(queued - start) * 1000,
        to_claimed=(processing - queued) * 1000,
        to_api=(api[0] - processing) * 1000,
    )


async def history(db_url: str) -> dict[str, tuple[str, float, float]]:
    """Ably message id -> (event id, queued at, processing at) from the history (Redis's clock)."""
    store = EventStore.from_url(db_url)
    query = text(
        "SELECT e.ably_message_id, e.event_id, t.state, t.at FROM events e"
        " JOIN event_transitions t ON t.event_id = e.event_id WHERE t.state IN ('queued', 'processing')"
    )
    try:
        async with store.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
    finally:
        await store.close()
    times: dict[str, dict[str, Any]] = {}
    for message_id, event_id, state, at in rows:
        entry = times.setdefault(message_id, {"id": str(event_id)})
        moment = at.timestamp() if isinstance(at, datetime) else float(at)
        entry[state] = min(moment, entry.get(state, moment))
    return {m: (t["id"], t["queued"], t["processing"]) for m, t in times.items()}


async def gather_records(bench: Bench, api: AllocationServer, db_url: str) -> Records:
    channels = {s.trigger.channel for s in bench.sent}
    published: dict[str, int] = {}
    for channel in channels:
        for message in control(bench.ably.control_port, f"/history?channel={channel}")["messages"]:
            published[message["id"]] = int(message["timestamp"])
    return Records(
        published_ms=published,
        events=await history(db_url),
        orders=bench.tws.state()["received_orders"],
        requests=[(r.path, r.received_at, r.replied_at) for r in api.requests],
        served=[(s["arrived_at"], s["answered_at"]) for s in bench.tws.served()],
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-q * len(ordered) // 100)))
    return ordered[int(rank) - 1]


ROWS = (
    ("total", "total"),
    ("allocation API", "allocations"),
    ("gateway (TWS)", "gateway"),
    ("pipeline overhead", "overhead"),
    ("  publish -> API request", "to_request"),
    ("    publish -> queued", "to_queued"),
    ("    queued -> claimed", "to_claimed"),
    ("    claimed -> API request", "to_api"),
    ("  IBKR adapter, not waiting", "adapter"),
)


@dataclass(frozen=True)
class Result:
    samples: dict[str, list[Sample]]
    idle_scripts: dict[str, list[float]]  # per block


def report(result: Result, gap_ms: float) -> None:
    before, after = result.samples["polling"], result.samples["wake-up"]
    print(
        f"Trigger to first order: {len(after)} live rebalances per mode, one at a time (a random pause of up"
        f" to {gap_ms:.0f} ms before each);\nAbly -> event broker -> Redis -> processor -> allocation API,"
        " loopback TWS: every hop a process"
    )
    print()
    print("  {:<28} {:>17} {:>17} {:>17}".format("ms", "polling (50 ms)", "wake-up", "wake-up / polling"))
    print("  {:<28} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}".format("", "p50", "p99", "p50", "p99", "p50", "p99"))
    for label, name in ROWS:
        b50, b99, a50, a99 = (
            percentile([getattr(s, name) for s in group], q) for group in (before, after) for q in (50, 99)
        )
        ratios = [f"{a / b:.2f}x" if b > 0.05 else "-" for a, b in ((a50, b50), (a99, b99))]
        print(f"  {label:<28} {b50:>8.1f} {b99:>8.1f} {a50:>8.1f} {a99:>8.1f} {ratios[0]:>8} {ratios[1]:>8}")
    idle = {mode: sum(rates) / len(rates) for mode, rates in result.idle_scripts.items()}
    print(
        f"  {'Redis script calls / s, idle':<28} {idle['polling']:>17.1f} {idle['wake-up']:>17.1f}"
        f" {idle['wake-up'] / idle['polling']:>16.3f}x"
    )
    print()
    limit = f"{TARGET_OVERHEAD_P99_MS:.0f} ms"
    for label, name in (("pipeline overhead", "overhead"), ("publish -> API request", "to_request")):
        p99 = percentile([getattr(s, name) for s in after], 99)
        verdict = "met" if p99 < TARGET_OVERHEAD_P99_MS else "NOT met"
        print(f"Target: {label} p99 under {limit} with the wake-up: {verdict} ({p99:.1f} ms).")


@dataclass(frozen=True)
class Fixtures:
    folder: Path
    redis_url: str
    db_url: str


@contextlib.contextmanager
def fixtures() -> Iterator[Fixtures]:
    """A fresh PostgreSQL database, a throwaway redis-server and a folder, removed afterwards."""
    name = create_database()
    try:
        with throwaway_redis() as server, tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
            yield Fixtures(Path(tmp), server.url, database_url(name))
    finally:
        drop_database(name)


def keep(folder: Path, logs: Path | None) -> None:
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
        for log in folder.glob("*.log"):
            (logs / log.name).write_bytes(log.read_bytes())


async def run(per_mode: int, rounds: int, gap_ms: float, logs: Path | None) -> Result:
    blocks = plan_triggers(per_mode, rounds)
    with fixtures() as fx:
        write_files(fx.folder)
        state = tws_state(accounts(), fill_delay=0.01)
        state.position_lag_seconds = 0.0  # runs end sooner; the first order comes before any fill anyway
        with AllocationServer() as api, tws_process(state) as tws, ably_process() as ably:
            for account in accounts():
                api.set_weights(f"latency-{account}", TARGETS)
            env = service_env(fx.folder, fx.redis_url, fx.db_url, api, tws)
            ably_env = {
                "ABLY_API_KEY": "app.key:secret",
                "ABLY_ENDPOINT": f"127.0.0.1:{ably.port}",
                "ABLY_TLS": "false",
            }
            broker = start("event_broker", env | ably_env, fx.folder / "broker.log")
            redis = Redis.from_url(fx.redis_url)
            try:
                await wait_for("the event broker's subscriptions", lambda: subscribed(ably), within=120)
                bench = Bench(redis, ably, tws, env, fx.folder, gap_ms / 1000)
                for block in blocks:
                    await bench.run_block(block)
                records = await gather_records(bench, api, fx.db_url)
            finally:
                stop(broker)
                await redis.aclose()
                await asyncio.to_thread(keep, fx.folder, logs)
    samples: dict[str, list[Sample]] = {mode: [] for mode in MODES}
    for sent in bench.sent:
        if sent.trigger.counted:
            samples[sent.trigger.mode].append(sample_of(sent, records))
    return Result(samples, bench.idle_scripts)


async def subscribed(ably: AblyProcess) -> bool:
    status = await asyncio.to_thread(control, ably.control_port, "/status")
    return len(status["attached_channels"]) == POOL


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--triggers", type=int, default=200, help="counted triggers per mode")
    parser.add_argument("--rounds", type=int, default=2, help="blocks per mode, alternating")
    parser.add_argument("--gap-ms", type=float, default=100.0, help="random pause before each trigger")
    parser.add_argument("--keep-logs", type=Path, help="copy the services' logs here")
    args = parser.parse_args()
    result = asyncio.run(run(args.triggers, args.rounds, args.gap_ms, args.keep_logs))
    report(result, args.gap_ms)
