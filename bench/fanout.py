"""Fan-out benchmark: one trigger to N accounts on one channel, processed by real processor processes.

Run: `make bench` or `.venv/bin/python bench/fanout.py [--accounts 200] [--latency 0.2] [--serial-sample 25]`.

Each processor is `python -m event_processor` with BROKER=simulated, every broker call sleeping
`--latency` seconds (a live rebalance makes about ten calls), on a throwaway redis-server, a fresh
PostgreSQL database and a real HTTP allocation server. The serial case (1 process, 1 slot) is timed
on `--serial-sample` accounts and its rate used as the baseline (running all 200 serially would take
minutes and tell nothing more), and 3 processes x 1 slot on three times as many; `--serial-sample 0`
runs both on every account. Printed: wall time,
events per second, and speed-up against the serial rate next to the ideal (the slot count).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from redis.asyncio import Redis

from rebalancer_shared.events import Command, Event, EventSource
from rebalancer_shared.heartbeats import read_heartbeats
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.logging import configure_logging
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore
from tests.fakes.allocations import AllocationServer
from tests.support.servers import create_database, database_url, drop_database, throwaway_redis

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"AAA": 0.3, "BBB": 0.3, "CCC": 0.2, "DDD": 0.2}
PRICES = {"AAA": 101.0, "BBB": 52.0, "CCC": 23.0, "DDD": 11.0, "OLD": 40.0}


def write_files(folder: Path, accounts: int, latency: float) -> tuple[Path, Path]:
    lines = []
    for i in range(accounts):
        lines.append(f'- account_id: "SIM{i:04d}"\n  notification:\n    channel: "fanout"\n')
    accounts_file = folder / "accounts.yaml"
    accounts_file.write_text("".join(lines))
    broker_file = folder / "broker.json"
    broker_file.write_text(
        json.dumps(
            {
                "latency_seconds": latency,
                "prices": PRICES,
                "default_account": {"cash": 20_000.0, "positions": {"AAA": 100, "OLD": 200}},
            }
        )
    )
    return accounts_file, broker_file


def start_processor(env: dict[str, str], slots: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "event_processor"],
        env={**env, "MAX_CONCURRENT_EVENTS": str(slots)},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def run_case(
    env: dict[str, str], prefix: str, db_url: str, accounts: int, slots: int, procs: int
) -> float:
    """Start the processors, wait for their heartbeats, then time the fan-out until the queue is empty."""
    redis = Redis.from_url(env["REDIS_URL"])
    store = EventStore.from_url(db_url)
    queue = EventQueue(redis, prefix)
    case_env = {**env, "REDIS_KEY_PREFIX": prefix}
    processes = [start_processor(case_env, slots) for _ in range(procs)]
    while len(await read_heartbeats(redis, prefix)) < procs:
        await asyncio.sleep(0.05)
    start = time.perf_counter()
    for i in range(accounts):
        event = Event(
            account_id=f"SIM{i:04d}",
            exec_command=Command.REBALANCE,
            data={"exec": "rebalance"},
            source=EventSource.ABLY,
        )
        await EventLifecycle(queue, store).submit(event)
    try:
        while (await queue.stats()).active_events_count:
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - start
    finally:
        for p in processes:
            p.send_signal(signal.SIGTERM)
        for p in processes:
            p.wait(timeout=60)
        await store.close()
        await redis.aclose()
    return elapsed


async def overlapping_runs(db_url: str) -> int:
    """Pairs of runs of one account whose time spans overlap (must be 0)."""
    store = EventStore.from_url(db_url)
    try:
        async with store.engine.connect() as conn:
            from sqlalchemy import text

            result = await conn.execute(
                text(
                    "SELECT count(*) FROM runs a JOIN runs b ON a.account_id = b.account_id"
                    " AND a.run_id < b.run_id"
                    " AND a.started_at < b.finished_at AND b.started_at < a.finished_at"
                )
            )
            return int(result.scalar_one())
    finally:
        await store.close()


async def main(accounts: int, latency: float, serial_sample: int) -> None:
    configure_logging("WARNING")
    name = create_database()
    db_url = database_url(name)
    try:
        with throwaway_redis() as server, AllocationServer() as api, tempfile.TemporaryDirectory() as tmp:
            api.set_weights("fanout", TARGETS)
            accounts_file, broker_file = write_files(Path(tmp), accounts, latency)
            env = {
                **os.environ,
                "REDIS_URL": server.url,
                "DATABASE_URL": db_url,
                "ACCOUNTS_FILE": str(accounts_file),
                "ALLOCATIONS_BASE_URL": api.base_url,
                "BROKER": "simulated",
                "SIMULATED_BROKER_FILE": str(broker_file),
                "MARKET_CALENDAR": "always_open",  # the benchmark runs at any hour
                "LOG_LEVEL": "WARNING",
                "CONFIG_FILE": str(ROOT / "config.yaml"),
            }
            serial_n = accounts if serial_sample <= 0 else min(serial_sample, accounts)
            cases = [("1 process x 1 slot", 1, 1, serial_n)]
            cases += [(f"1 process x {s} slots", s, 1, accounts) for s in (8, 32)]
            cases += [
                ("3 processes x 1 slot", 1, 3, min(accounts, 3 * serial_n)),
                ("3 processes x 8 slots", 8, 3, accounts),
            ]
            rows = []
            for i, (label, slots, procs, n) in enumerate(cases):
                elapsed = await run_case(env, f"fan{i}", db_url, n, slots, procs)
                rows.append((label, slots * procs, n, elapsed))
            overlaps = await overlapping_runs(db_url)
    finally:
        drop_database(name)
    report(rows, latency, overlaps)


def report(rows: list[tuple[str, int, int, float]], latency: float, overlaps: int) -> None:
    base_rate = rows[0][2] / rows[0][3]
    ms = latency * 1000
    print(f"Fan-out benchmark: one rebalance trigger per account, simulated broker {ms:.0f} ms per call")
    print()
    head = ("case", "events", "seconds", "events/s", "speed-up", "ideal", "ratio")
    print("  {:<24} {:>6} {:>8} {:>9} {:>9} {:>6} {:>6}".format(*head))
    for label, slots, n, elapsed in rows:
        rate = n / elapsed
        speedup = rate / base_rate
        cells = (
            label,
            n,
            f"{elapsed:.1f}",
            f"{rate:.2f}",
            f"{speedup:.1f}x",
            f"{slots}x",
            f"{speedup / slots:.2f}",
        )
        print("  {:<24} {:>6} {:>8} {:>9} {:>9} {:>6} {:>6}".format(*cells))
    print()
    print(f"  runs of one account overlapping in time: {overlaps} (must be 0)")
    print("Target: speed-up at least 0.8 x the slot count (ratio >= 0.80).")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--serial-sample", type=int, default=25)
    parser.add_argument(
        "--only-slots", type=int, default=0, help="run only the 1-process case with this many slots"
    )
    args = parser.parse_args()
    asyncio.run(main(args.accounts, args.latency, args.serial_sample))
