"""One live rebalance against its critical path, through the real ib_async and the loopback TWS.

Run: `make bench` or `.venv/bin/python bench/rebalance.py [--symbols 8 40 150] [--profiles realistic fast]
[--baseline REV | --baseline none] [--profile-to DIR]`.

The fake gateway runs as a process of its own (`python -m tests.fakes.tws --profile ...`), with every
habit on (pacing, market data lines, positions that lag fills) and the profile's latencies: a round
trip per answer with the requests of a connection in flight together, snapshot data and end after
the snapshot time, fills after the fill delay (tests/fakes/tws/profiles.py). The account holds half
of its N targets at twice their weight and none of the other half: a rebalance sells N/2 and buys
N/2. Each case runs in a child process twice: cold (a fresh broker: no connection open, no contract
known) and warm (a second rebalance by the same broker, as a running processor does).

`--baseline REV` (default: where this branch left main) runs the same child with that commit's
`event-processor` and `shared` sources in front of the path: before and after, side by side in one
run, against the same fake.

The floor is what no implementation can avoid: one round trip to list the open orders; the reads
(positions, account values, quotes in batches of the login's 100 market data lines: snapshot time x
ceil(symbols / 100)) in parallel; one round trip to place all sells; the fill delay; the re-read
(the same reads: the buys are planned at fresh prices); one round trip to place all buys; the fill
delay. IB's pacing (50 messages a second per connection) is not in it: the messages column shows
the busiest connection's count and the time those need at 50 a second beyond the first 50.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import json
import math
import os
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.tws.profiles import PROFILES

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "DU1"
READS_CLIENT_ID = 7
LOGIN_LINES = 100  # IB's default market data lines per login
PACING = 50  # IB: messages a second per connection
TARGET_VALUE = 10_000.0


# --- the scenario and its floor --------------------------------------------------------------------


def scenario(symbols: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Targets (equal weights) and the fake's accounts and quotes: the first half held at twice the
    target, the second half not held, no cash."""
    names = [f"S{i:03d}" for i in range(symbols)]
    prices = {name: 20.0 + (i * 7) % 180 for i, name in enumerate(names)}
    held = {name: math.floor(2 * TARGET_VALUE / prices[name]) for name in names[: symbols // 2]}
    quotes = {name: {"last": p, "bid": p, "ask": p, "close": p} for name, p in prices.items()}
    account = {"cash": 0.0, "positions": held}
    return {name: 1 / symbols for name in names}, {"accounts": {ACCOUNT: account}, "quotes": quotes}


def critical_path(profile: str, symbols: int) -> float:
    """The floor in seconds (module doc)."""
    times = PROFILES[profile]
    rtt, fill = times.round_trip_seconds, times.fill_delay_seconds
    reads = max(rtt, times.snapshot_seconds * math.ceil(symbols / LOGIN_LINES))
    return rtt + reads + rtt + fill + reads + rtt + fill


# --- the child: one version of the code, one case ---------------------------------------------------


def _post(control_port: int, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{control_port}/state",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30):
        pass


def _state(control_port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{control_port}/state", timeout=30) as reply:
        data: dict[str, Any] = json.loads(reply.read())
        return data


def _counts(state: dict[str, Any]) -> dict[str, int]:
    """Messages received per client id (-1, a connection's START_API before it has one, left out)."""
    return {str(k): int(v) for k, v in state["messages_received"].items() if int(k) >= 0}


async def child(args: argparse.Namespace) -> str:
    """Two rebalances (cold, warm) with whatever `event_processor` is first on the path; JSON lines out.
    Returns the warm run's profile (pyinstrument) when asked for one, else ""."""
    from event_processor.brokers import IbkrBroker
    from event_processor.execution import rebalance
    from rebalancer_shared.accounts import RebalancingSettings
    from rebalancer_shared.config import IbkrSettings, OrderSettings

    class Timed(IbkrBroker):
        """Notes when the run learnt that its last orders were done."""

        filled_at = 0.0

        async def wait_for_fills(self, *args: Any, **kwargs: Any) -> Any:
            done = await super().wait_for_fills(*args, **kwargs)
            self.filled_at = time.perf_counter()
            return done

    targets, world = scenario(args.symbols[0])
    settings = IbkrSettings(
        host="127.0.0.1",
        port=args.port,
        client_id=READS_CLIENT_ID,
        connect_attempts=1,
        request_timeout_seconds=30,
    )
    broker = Timed(settings, OrderSettings(), account_ids=[ACCOUNT])
    profiler = _profiler(args.profile_to)
    try:
        for run in ("cold", "warm"):
            _post(args.control_port, world)
            await asyncio.sleep(0.5)  # past the fake's position lag of the run before
            before = _counts(_state(args.control_port))
            if run == "warm" and profiler is not None:
                profiler.start()
            started = time.perf_counter()
            report = await rebalance(
                broker, ACCOUNT, targets, RebalancingSettings(), f"bench-{run}", fill_timeout_seconds=60
            )
            seconds = time.perf_counter() - started
            if run == "warm" and profiler is not None:
                profiler.stop()
            await broker.release(ACCOUNT)  # as the processor does when the run ends
            after = _counts(_state(args.control_port))
            messages = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            line = {
                "run": run,
                "seconds": seconds,
                "traded": broker.filled_at - started,
                "outcome": str(report.outcome),
                "orders": len(report.orders),
            }
            print(json.dumps({**line, "messages": messages}), flush=True)
    finally:
        await broker.close()
    return "" if profiler is None else str(profiler.output_text(unicode=False, color=False, show_all=False))


def _profiler(path: str | None) -> Any:
    if not path:
        return None
    from pyinstrument import Profiler

    return Profiler(async_mode="enabled", interval=0.0005)


# --- the parent --------------------------------------------------------------------------------------


@dataclass
class Case:
    profile: str
    symbols: int
    runs: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # code -> run -> result

    @property
    def floor(self) -> float:
        return critical_path(self.profile, self.symbols)


@contextmanager
def fake_tws(profile: str) -> Iterator[tuple[int, int]]:
    """The fake gateway as a process with the profile's latencies: (API port, control port)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.tws", "--port", "0", "--control-port", "0", "--profile", profile],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        ports = json.loads(process.stdout.readline())
        yield ports["port"], ports["control_port"]
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


@contextmanager
def baseline_sources(revision: str) -> Iterator[Path | None]:
    """The packages `event-processor` and `shared` as they were at `revision`, in a temporary folder."""
    if revision == "none":
        yield None
        return
    with tempfile.TemporaryDirectory() as folder:
        archive = subprocess.run(
            ["git", "archive", revision, "event-processor/src", "shared/src"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        yield Path(folder)


def run_child(
    sources: Path | None, ports: tuple[int, int], symbols: int, profile_to: str | None
) -> dict[str, dict[str, Any]]:
    env = dict(os.environ)
    if sources is not None:
        old = [str(sources / "event-processor" / "src"), str(sources / "shared" / "src")]
        env["PYTHONPATH"] = os.pathsep.join([*old, env.get("PYTHONPATH", "")])
    command = [sys.executable, str(ROOT / "bench" / "rebalance.py"), "--child", "--symbols", str(symbols)]
    command += ["--port", str(ports[0]), "--control-port", str(ports[1])]
    if profile_to:
        command += ["--profile-to", profile_to]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=900
    )
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{done.stderr[-3000:]}")
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {r["run"]: r for r in results}


def pacing_bound(messages: dict[str, int]) -> float:
    """Seconds IB's pacing alone needs to let these messages through the connections that sent them:
    the first 50 of each at once, the rest at 50 a second each."""
    used = [m for m in messages.values() if m > 0]
    return max(0.0, (sum(used) - PACING * len(used)) / (PACING * len(used))) if used else 0.0


def _cells(case: Case, code: str) -> list[str]:
    runs = case.runs.get(code)
    if runs is None:
        return ["-", "-", "-", "-"]
    warm, cold = runs["warm"], runs["cold"]
    ratio = warm["traded"] / case.floor
    return [f"{warm['traded']:.3f}", f"{warm['seconds']:.3f}", f"{cold['seconds']:.2f}", f"{ratio:.2f}x"]


def report(cases: Sequence[Case], revision: str) -> None:
    print("Rebalance benchmark: one live rebalance through ib_async against the loopback TWS (one run)")
    print(f"before = {revision}, after = this checkout; warm runs (a cold run's total in its own column)")
    print()
    line = "  {:<9} {:>4} {:>6} | {:>6} {:>6} {:>6} {:>6} | {:>6} {:>6} {:>6} {:>6} | {:>9} {:>6}"
    print(line.format("", "", "", "before", "", "", "", "after", "", "", "", "after's", ""))
    head = (
        "profile",
        "syms",
        "floor",
        "traded",
        "ended",
        "cold",
        "ratio",
        "traded",
        "ended",
        "cold",
        "ratio",
    )
    print(line.format(*head, "messages", "pacing"))
    for case in cases:
        after = case.runs.get("after", {}).get("warm", {}).get("messages", {})
        used = sorted((m for m in after.values() if m > 0), reverse=True)
        messages = "+".join(str(m) for m in used)
        cells = [case.profile, str(case.symbols), f"{case.floor:.3f}", *_cells(case, "before")]
        cells += [*_cells(case, "after"), messages, f"{pacing_bound(after):.2f}"]
        print(line.format(*cells))
    outcomes = {r["outcome"] for c in cases for runs in c.runs.values() for r in runs.values()}
    print(f"\n  outcomes: {', '.join(sorted(outcomes))}")
    print("  traded: until the run knew its last order filled; ended: until it returned (it waits for the")
    print("  positions to show the fills); ratio: traded / floor. messages: what each connection the run")
    print("  used sent; pacing: seconds IB's 50 a second per connection needs for them beyond each one's")
    print("  first 50. Target: ratio at most 1.25.")


def default_baseline() -> str:
    found = subprocess.run(
        ["git", "merge-base", "HEAD", "main"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return found.stdout.strip()[:12] if found.returncode == 0 and found.stdout.strip() else "none"


def main(args: argparse.Namespace) -> None:
    revision = args.baseline or default_baseline()
    cases = [Case(p, n) for p in args.profiles for n in args.symbols]
    with baseline_sources(revision) as sources:
        for profile in args.profiles:
            with fake_tws(profile) as ports:
                for case in (c for c in cases if c.profile == profile):
                    if sources is not None:
                        case.runs["before"] = run_child(sources, ports, case.symbols, None)
                    out = None
                    if args.profile_to:
                        Path(args.profile_to).mkdir(parents=True, exist_ok=True)
                        out = str(Path(args.profile_to) / f"{profile}-{case.symbols}.txt")
                    case.runs["after"] = run_child(None, ports, case.symbols, out)
    report(cases, revision)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--symbols", type=int, nargs="+", default=[8, 40, 150])
    parser.add_argument("--profiles", nargs="+", choices=sorted(PROFILES), default=["realistic", "fast"])
    parser.add_argument("--baseline", default="", help="git revision to compare with ('none': skip)")
    parser.add_argument("--profile-to", default="", help="write pyinstrument profiles of the warm runs here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--control-port", type=int, default=0, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        profile_text = asyncio.run(child(arguments))
        if arguments.profile_to:
            Path(arguments.profile_to).write_text(profile_text)
    else:
        main(arguments)
