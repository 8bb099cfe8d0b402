"""Fan-out benchmark: one trigger to N accounts on one channel, processed by real processor processes.

Run: `make bench` or `.venv/bin/python bench/fanout.py [--broker simulated|ibkr|both] [--accounts 200]
[--latency 0.2] [--profile realistic] [--serial-sample 25] [--profile-to DIR]`.

Each processor is `python -m event_processor` on a throwaway redis-server, a fresh PostgreSQL database
and a real HTTP allocation server, with one of two brokers:

- `simulated`: every broker call sleeps `--latency` seconds (a live rebalance makes about ten calls).
- `ibkr`: the real ib_async against the loopback TWS as a process of its own (`python -m
  tests.fakes.tws --profile realistic`): every habit of a gateway on (50 messages a second per
  connection, error 100 beyond; 100 market data lines; at most 32 API clients; positions that lag
  fills) and the profile's latencies (5 ms round trip, 300 ms snapshots, 200 ms fills). All accounts
  are under the one login. Each case sets IB_MAX_CONNECTIONS so the processes stay within the 32.

The serial case (1 process, 1 slot) is timed on `--serial-sample` accounts and its rate used as the
baseline (running all 200 serially would take minutes and tell nothing more), and 3 processes x 1 slot
on three times as many; `--serial-sample 0` runs both on every account. Printed: wall time, events per
second, and speed-up against the serial rate next to the ideal (the slot count). With `ibkr` also the
pacing floor: the rate IB's 50 messages a second on each connection in use allows at the messages a
rebalance sends, the error 100s the fake answered (must be 0), the processors' peak RSS, and their
CPU per event with the rate it allows (on a small machine the processors' CPU binds before IB's
pacing does).
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
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from redis.asyncio import Redis
from sqlalchemy import text

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
HOLDINGS = {"AAA": 100, "OLD": 200}
CASH = 20_000.0
GATEWAY_CONNECTIONS = 32  # IB: API clients per TWS / IB Gateway
PACING = 50  # IB: messages a second per connection


@dataclass
class Case:
    label: str
    slots: int
    procs: int
    events: int
    seconds: float = 0.0
    ibkr: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def max_connections(self) -> int:
        """IB_MAX_CONNECTIONS for each process: its slots and its reads connection, within the 32."""
        return min(self.slots + 1, GATEWAY_CONNECTIONS // self.procs)


def account_id(i: int) -> str:
    return f"SIM{i:04d}"


def write_accounts(folder: Path, accounts: int) -> Path:
    lines = [
        f'- account_id: "{account_id(i)}"\n  notification:\n    channel: "fanout"\n' for i in range(accounts)
    ]
    path = folder / "accounts.yaml"
    path.write_text("".join(lines))
    return path


def write_simulated_broker(folder: Path, latency: float) -> Path:
    path = folder / "broker.json"
    account = {"cash": CASH, "positions": HOLDINGS}
    path.write_text(json.dumps({"latency_seconds": latency, "prices": PRICES, "default_account": account}))
    return path


# --- the loopback TWS as a process ---------------------------------------------------------------


class Gateway:
    """The fake TWS process, driven over its control port."""

    def __init__(self, port: int, control_port: int) -> None:
        self.port = port
        self.control_port = control_port

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.control_port}/state", timeout=60) as reply:
            data: dict[str, Any] = json.loads(reply.read())
            return data

    def update(self, body: dict[str, Any]) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.control_port}/state",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60):
            pass

    def reset(self, accounts: int) -> None:
        """Every account as it starts, and the connection peak counted afresh."""
        held = {"cash": CASH, "positions": HOLDINGS}
        quotes = {s: {"last": p, "bid": p, "ask": p, "close": p} for s, p in PRICES.items()}
        self.update({"accounts": {account_id(i): held for i in range(accounts)}, "quotes": quotes})
        self.update({"peak_connections": 0})

    def counters(self) -> dict[str, int]:
        state = self.state()
        return {
            "error_100": len(state["paced_out"]),
            "refused": len(state["connection_refusals"]),
            "messages": sum(int(n) for n in state["messages_received"].values()),
            "peak_connections": int(state["peak_connections"]),
        }


@contextmanager
def gateway(profile: str) -> Iterator[Gateway]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.tws", "--port", "0", "--control-port", "0", "--profile", profile],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        ports = json.loads(process.stdout.readline())
        yield Gateway(ports["port"], ports["control_port"])
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


# --- one case ------------------------------------------------------------------------------------


# `--profile-to DIR`: each processor runs under pyinstrument and writes its text profile there (its
# CPU and RSS figures then include the profiler's own).
PROFILE_TO: Path | None = None


def processor_command(case: Case, index: int) -> list[str]:
    if PROFILE_TO is None:
        return [sys.executable, "-m", "event_processor"]
    name = case.label.replace(" ", "_")
    report = PROFILE_TO / f"{name}-{index}.txt"
    return [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", str(report), "-m", "event_processor"]


def start_processor(env: dict[str, str], case: Case, index: int = 0) -> subprocess.Popen[bytes]:
    extra = {"MAX_CONCURRENT_EVENTS": str(case.slots), "IB_MAX_CONNECTIONS": str(case.max_connections)}
    return subprocess.Popen(
        processor_command(case, index),
        env={**env, **extra},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def cpu_seconds(pid: int) -> float:
    """CPU time the process has used (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run_case(env: dict[str, str], prefix: str, db_url: str, case: Case) -> list[tuple[float, float]]:
    """Start the processors, wait for their heartbeats, then time the fan-out until the queue is empty.
    Returns each processor's peak RSS in MB and the CPU seconds it used during the fan-out."""
    redis = Redis.from_url(env["REDIS_URL"])
    store = EventStore.from_url(db_url)
    queue = EventQueue(redis, prefix)
    processes = [start_processor({**env, "REDIS_KEY_PREFIX": prefix}, case, i) for i in range(case.procs)]
    used: list[tuple[float, float]] = []
    try:
        while len(await read_heartbeats(redis, prefix)) < case.procs:
            await asyncio.sleep(0.05)
        cpu_before = [cpu_seconds(p.pid) for p in processes]
        start = time.perf_counter()
        lifecycle = EventLifecycle(queue, store)
        for i in range(case.events):
            event = Event(
                account_id=account_id(i),
                exec_command=Command.REBALANCE,
                data={"exec": "rebalance"},
                source=EventSource.ABLY,
            )
            await lifecycle.submit(event)
        while (await queue.stats()).active_events_count:
            await asyncio.sleep(0.05)
        case.seconds = time.perf_counter() - start
        used = [
            (peak_rss_mb(p.pid), cpu_seconds(p.pid) - b) for p, b in zip(processes, cpu_before, strict=True)
        ]
    finally:
        for p in processes:
            p.send_signal(signal.SIGTERM)
        for p in processes:
            p.wait(timeout=60)
        await store.close()
        await redis.aclose()
    return used


async def history(db_url: str) -> tuple[int, int]:
    """Pairs of runs of one account whose time spans overlap (must be 0), and runs that failed."""
    store = EventStore.from_url(db_url)
    try:
        async with store.engine.connect() as conn:
            overlaps = await conn.execute(
                text(
                    "SELECT count(*) FROM runs a JOIN runs b ON a.account_id = b.account_id"
                    " AND a.run_id < b.run_id"
                    " AND a.started_at < b.finished_at AND b.started_at < a.finished_at"
                )
            )
            failed = await conn.execute(text("SELECT count(*) FROM runs WHERE status <> 'success'"))
            return int(overlaps.scalar_one()), int(failed.scalar_one())
    finally:
        await store.close()


def cases(accounts: int, serial_sample: int) -> list[Case]:
    serial_n = accounts if serial_sample <= 0 else min(serial_sample, accounts)
    return [
        Case("1 process x 1 slot", 1, 1, serial_n),
        Case("1 process x 8 slots", 8, 1, accounts),
        Case("1 process x 32 slots", 32, 1, accounts),
        Case("3 processes x 1 slot", 1, 3, min(accounts, 3 * serial_n)),
        Case("3 processes x 8 slots", 8, 3, accounts),
    ]


async def run_broker(broker: str, args: argparse.Namespace, env: dict[str, str], db_url: str) -> list[Case]:
    runs = cases(args.accounts, args.serial_sample)
    if broker == "simulated":
        for i, case in enumerate(runs):
            await run_case(env, f"fan-sim{i}", db_url, case)
        return runs
    with gateway(args.profile) as tws:
        ib_env = {**env, "BROKER": "ibkr", "IB_HOST": "127.0.0.1", "IB_PORT": str(tws.port)}
        for i, case in enumerate(runs):
            await asyncio.to_thread(tws.reset, args.accounts)
            before = await asyncio.to_thread(tws.counters)
            used = await run_case(ib_env, f"fan-ib{i}", db_url, case)
            after = await asyncio.to_thread(tws.counters)
            case.ibkr = {k: after[k] - before[k] for k in ("error_100", "refused", "messages")}
            case.ibkr["connections"] = after["peak_connections"]
            case.ibkr["rss_mb"] = max((rss for rss, _ in used), default=0.0)
            case.ibkr["cpu_per_event"] = sum(cpu for _, cpu in used) / case.events
    return runs


async def main(args: argparse.Namespace) -> None:
    configure_logging("WARNING")
    brokers = ["simulated", "ibkr"] if args.broker == "both" else [args.broker]
    for broker in brokers:
        name = create_database()
        db_url = database_url(name)
        try:
            with throwaway_redis() as server, AllocationServer() as api, tempfile.TemporaryDirectory() as tmp:
                api.set_weights("fanout", TARGETS)
                env = {
                    **os.environ,
                    "REDIS_URL": server.url,
                    "DATABASE_URL": db_url,
                    "ACCOUNTS_FILE": str(write_accounts(Path(tmp), args.accounts)),
                    "ALLOCATIONS_BASE_URL": api.base_url,
                    "BROKER": "simulated",
                    "SIMULATED_BROKER_FILE": str(write_simulated_broker(Path(tmp), args.latency)),
                    "MARKET_CALENDAR": "always_open",  # the benchmark runs at any hour
                    "LOG_LEVEL": "WARNING",
                    "CONFIG_FILE": str(ROOT / "config.yaml"),
                }
                runs = await run_broker(broker, args, env, db_url)
                overlaps, failed = await history(db_url)
        finally:
            drop_database(name)
        if broker == "simulated":
            report_simulated(runs, args.latency, overlaps, failed)
        else:
            report_ibkr(runs, args.profile, overlaps, failed)
        print()


def _speedups(runs: list[Case]) -> Iterator[tuple[Case, float]]:
    base_rate = runs[0].rate
    for case in runs:
        yield case, case.rate / base_rate


def report_simulated(runs: list[Case], latency: float, overlaps: int, failed: int) -> None:
    ms = latency * 1000
    print(f"Fan-out benchmark: one rebalance trigger per account, simulated broker {ms:.0f} ms per call")
    print()
    head = ("case", "events", "seconds", "events/s", "speed-up", "ideal", "ratio")
    print("  {:<24} {:>6} {:>8} {:>9} {:>9} {:>6} {:>6}".format(*head))
    for case, speedup in _speedups(runs):
        slots = case.slots * case.procs
        cells = (case.label, case.events, f"{case.seconds:.1f}", f"{case.rate:.2f}", f"{speedup:.1f}x")
        print(
            "  {:<24} {:>6} {:>8} {:>9} {:>9} {:>6} {:>6}".format(
                *cells, f"{slots}x", f"{speedup / slots:.2f}"
            )
        )
    print()
    print(f"  runs of one account overlapping in time: {overlaps} (must be 0); runs not completed: {failed}")
    print("Target: speed-up at least 0.8 x the slot count (ratio >= 0.80).")


def report_ibkr(runs: list[Case], profile: str, overlaps: int, failed: int) -> None:
    cores = os.cpu_count() or 1
    print(f"Fan-out benchmark: one rebalance trigger per account, BROKER=ibkr, loopback TWS ({profile})")
    print()
    line = "  {:<22} {:>6} {:>7} {:>8} {:>8} {:>6} {:>5} {:>6} {:>4} {:>7} {:>7} {:>6} {:>5} {:>4} {:>6}"
    head = ("case", "events", "seconds", "events/s", "speed-up", "/slots", "conns", "pace/s", "msg", "CPU ms")
    print(line.format(*head, "CPU/s", "ideal", "ratio", "e100", "RSS MB"))
    base_rate = runs[0].rate
    for case, speedup in _speedups(runs):
        slots = case.slots * case.procs
        per_event = case.ibkr["messages"] / case.events
        pacing = case.ibkr["connections"] * PACING / per_event  # events a second IB's pacing lets through
        cpu = case.ibkr["cpu_per_event"]
        cpu_floor = min(case.procs, cores) / cpu  # events a second the processors' CPU allows
        ideal = min(float(slots), pacing / base_rate, cpu_floor / base_rate)
        cells = (
            case.label,
            case.events,
            f"{case.seconds:.1f}",
            f"{case.rate:.2f}",
            f"{speedup:.1f}x",
            f"{speedup / slots:.2f}",
            case.ibkr["connections"],
            f"{pacing:.0f}",
            f"{per_event:.0f}",
            f"{cpu * 1000:.0f}",
            f"{cpu_floor:.1f}",
            f"{ideal:.1f}x",
            f"{speedup / ideal:.2f}",
            case.ibkr["error_100"],
            f"{case.ibkr['rss_mb']:.0f}",
        )
        print(line.format(*cells))
    refused = sum(c.ibkr["refused"] for c in runs)
    errors = sum(c.ibkr["error_100"] for c in runs)
    print()
    print(f"  runs of one account overlapping in time: {overlaps} (must be 0); runs not completed: {failed}")
    print(f"  connections refused by the gateway (beyond 32): {refused}; error 100s in all: {errors}")
    print("  /slots: speed-up per slot. conns: most API connections open at once; pace/s: events a second")
    print("  IB's 50 messages a second on each of them allows at msg messages an event. CPU ms: processor")
    print(
        f"  CPU per event; CPU/s: events a second that CPU allows (one core per process, {cores} cores here)."
    )
    print("  ideal: the slot count, or the speed-up either floor allows if lower; ratio: speed-up / ideal.")
    print("  RSS: the largest processor's peak.")
    print("Target: speed-up at least 0.8 x the slot count until a floor, then within 1.2x of it")
    print("(ratio >= 0.80); no error 100; peak RSS under 250 MB at 32 slots.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--broker", choices=["simulated", "ibkr", "both"], default="both")
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.2, help="simulated broker: seconds per call")
    parser.add_argument("--profile", default="realistic", help="ibkr: the fake gateway's latency profile")
    parser.add_argument("--serial-sample", type=int, default=25)
    parser.add_argument("--profile-to", type=Path, help="write each processor's pyinstrument profile here")
    arguments = parser.parse_args()
    if arguments.profile_to is not None:
        arguments.profile_to.mkdir(parents=True, exist_ok=True)
        PROFILE_TO = arguments.profile_to
    asyncio.run(main(arguments))
