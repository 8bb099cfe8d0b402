"""Queue benchmark: EventQueue against raw Redis, arq and RQ, all on one throwaway redis-server;
then the same enqueue and worker loop on the three topologies side by side: one node, a Redis
Cluster of three primaries, and a Sentinel-watched primary with a replica and WAIT for it.

Run: `make bench` or `.venv/bin/python bench/queue.py [--events N] [--peer-jobs N]`.
Everything is measured side by side in one run on one machine, and printed as ratios, because
absolute figures on a shared machine mean little. arq and RQ run in their own environments
(`.tools/bin/uv run --isolated --with ...`, the checkout's own uv) since their pins clash with ours.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/queue.py`, this file's folder would come first on sys.path and this module
# would shadow the standard library's `queue` (which redis imports): put the repository root there.
if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import json
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from rebalancer_shared.events import Command, Event, EventSource
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.queue.durability import Durability
from rebalancer_shared.redis_connection import open_redis
from tests.support.redis_topologies import throwaway_cluster, throwaway_sentinels
from tests.support.servers import throwaway_redis

ROOT = Path(__file__).resolve().parents[1]
# The private uv of `make setup` (scripts/bootstrap-uv), so no `uv` on the PATH is needed.
UV = ROOT / ".tools" / "bin" / "uv"
COMMANDS = list(Command)


def event(i: int) -> Event:
    return Event(account_id=f"U{i}", exec_command=COMMANDS[i % len(COMMANDS)], source=EventSource.API)


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


async def raw_lpush(client: Redis, n: int) -> float:
    async def run() -> None:
        for i in range(n):
            await client.lpush("bench:raw:queue", f"id-{i}")

    return n / await timed(run)


async def raw_lmove_lrem(client: Redis, n: int) -> float:
    async def run() -> None:
        for _ in range(n):
            item = await client.lmove("bench:raw:queue", "bench:raw:processing", "RIGHT", "LEFT")
            assert item is not None
            await client.lrem("bench:raw:processing", 1, item)  # type: ignore[arg-type]  # bytes are accepted

    return n / await timed(run)


async def ours_enqueue(queue: EventQueue, events: list[Event]) -> float:
    async def run() -> None:
        for e in events:
            await queue.enqueue(e)

    return len(events) / await timed(run)


async def ours_claim_complete(queue: EventQueue, n: int, workers: int) -> float:
    """Separate claim and complete calls: two round trips per event."""

    async def worker() -> None:
        while (claim := await queue.claim("bench")) is not None:
            await queue.complete(claim)

    async def run() -> None:
        await asyncio.gather(*(worker() for _ in range(workers)))

    return n / await timed(run)


async def ours_worker_loop(queue: EventQueue, n: int, workers: int) -> float:
    """The worker loop as the processor runs it: complete-and-claim-next in one round trip."""

    async def worker() -> None:
        claim = await queue.claim("bench")
        while claim is not None:
            claim = (await queue.complete_and_claim(claim, "bench")).next_claim

    async def run() -> None:
        await asyncio.gather(*(worker() for _ in range(workers)))

    return n / await timed(run)


async def topology_rates(url: str, durability: Durability, n: int) -> dict[str, float]:
    """Enqueue and the worker loop (1 and 8 workers) through `open_redis(url)`, as the services run."""
    client = open_redis(url)
    try:
        queue = EventQueue(client, "bench-topology", durability=durability)
        rates = {"enqueue": await ours_enqueue(queue, [event(i) for i in range(n)])}
        rates["loop1"] = await ours_worker_loop(queue, n, workers=1)
        await fill(queue, 0, n)
        rates["loop8"] = await ours_worker_loop(queue, n, workers=8)
    finally:
        await client.aclose()
    return rates


async def topologies(n: int) -> dict[str, dict[str, float]]:
    """The three topologies, each on servers of its own, one after the other in this run."""
    results = {}
    with throwaway_redis() as server:
        results["one node"] = await topology_rates(server.url, Durability(), n)
    with throwaway_cluster() as cluster:
        results["Cluster, 3 primaries"] = await topology_rates(cluster.url, Durability(), n)
    with throwaway_sentinels() as group:
        results["Sentinel + WAIT 1 replica"] = await topology_rates(group.url, Durability(replicas=1), n)
    return results


def report_topologies(n: int, results: dict[str, dict[str, float]]) -> None:
    single = results["one node"]
    print()
    print(f"Topologies ({n:,} events each, through open_redis as the services connect)")
    print()
    print(f"  {'':<28} {'enqueue':>9}        {'loop, 1 worker':>14}        {'loop, 8 workers':>15}")
    for name, rates in results.items():
        cells = [f"{rates[k]:>9,.0f} /s {rates[k] / single[k]:4.2f}x" for k in ("enqueue", "loop1", "loop8")]
        print(f"  {name:<28} " + "  ".join(cells))
    print()
    print("Under Sentinel every queue write is followed by WAIT (the replica's acknowledgement).")


def percentiles(samples: list[float]) -> tuple[float, float]:
    samples.sort()
    return statistics.median(samples) * 1e6, samples[int(len(samples) * 0.99)] * 1e6


async def stats_latency(small: EventQueue, big: EventQueue, calls: int = 3000) -> list[tuple[float, float]]:
    """Alternate calls on the two queues so that machine noise falls on both alike."""
    samples: list[list[float]] = [[], []]
    for _ in range(calls):
        for i, queue in enumerate((small, big)):
            start = time.perf_counter()
            await queue.stats()
            samples[i].append(time.perf_counter() - start)
    return [percentiles(s) for s in samples]


async def fill(queue: EventQueue, start: int, count: int) -> None:
    for base in range(start, start + count, 50):
        await asyncio.gather(*(queue.enqueue(event(i)) for i in range(base, min(base + 50, start + count))))


def peer(tool: str, script: str, port: int, jobs: int) -> dict[str, float] | str:
    cmd = [
        str(UV),
        "run",
        "--quiet",
        "--isolated",
        "--no-project",
        "--with",
        tool,
        "python",
        script,
        str(port),
        str(jobs),
    ]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True, cwd=ROOT)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, FileNotFoundError) as exc:
        return f"could not run {tool}: {exc}"
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


async def main(n: int, peer_jobs: int) -> None:
    with throwaway_redis() as server:
        client = Redis.from_url(server.url)
        queue = EventQueue(client, "bench")
        events = [event(i) for i in range(n)]
        lpush = await raw_lpush(client, n)
        enqueue = await ours_enqueue(queue, events)
        lmove = await raw_lmove_lrem(client, n)
        two_calls = await ours_claim_complete(queue, n, workers=1)
        await fill(queue, 0, n)
        loop1 = await ours_worker_loop(queue, n, workers=1)
        await fill(queue, 0, n)
        loop8 = await ours_worker_loop(queue, n, workers=8)
        await client.flushall()

        base_memory = (await client.info("memory"))["used_memory"]
        big = EventQueue(client, "big")
        await fill(big, 0, 100_000)
        per_event = ((await client.info("memory"))["used_memory"] - base_memory) / 100_000
        first_id = str((await big.list_events(1))[0].event.event_id)
        one_hash = await client.hstrlen(big.keys.events, first_id) + await client.hstrlen(
            big.keys.bodies, first_id
        )
        small = EventQueue(client, "small")
        await fill(small, 0, 100)
        latencies = await stats_latency(small, big)
        await client.aclose()

        arq = peer("arq", "bench/peers/arq_noop.py", server.port, peer_jobs)
        rq = peer("rq", "bench/peers/rq_noop.py", server.port, peer_jobs)

    rates = {
        "lpush": lpush,
        "enqueue": enqueue,
        "lmove": lmove,
        "two": two_calls,
        "loop1": loop1,
        "loop8": loop8,
    }
    report(n, rates, latencies, per_event, one_hash, arq, rq)
    report_topologies(n // 4, await topologies(n // 4))


def _peer_line(name: str, result: dict[str, float] | str, ours: float) -> str:
    if isinstance(result, str):
        return f"  {name:<36} {result}"
    rate = result["jobs"] / result["process_seconds"]
    return f"  {name:<36} {rate:>9,.0f} /s   ours (1 worker) {ours / rate:4.1f}x"


def report(
    n: int,
    r: dict[str, float],
    latencies: list[tuple[float, float]],
    per_event: float,
    one_hash: int | None,
    arq: dict[str, float] | str,
    rq: dict[str, float] | str,
) -> None:
    (small_p50, small_p99), (big_p50, big_p99) = latencies
    print(f"EventQueue benchmark ({n:,} events, one throwaway redis-server, one machine, one run)")
    print()
    print(f"  raw LPUSH (1 connection)             {r['lpush']:>9,.0f} /s")
    enqueue_ratio = r["enqueue"] / r["lpush"]
    print(
        f"  dedup enqueue (Lua)                  {r['enqueue']:>9,.0f} /s   {enqueue_ratio:4.2f}x raw LPUSH"
    )
    print(f"  raw LMOVE + LREM                     {r['lmove']:>9,.0f} /s")
    print(f"  claim, then complete (2 calls)       {r['two']:>9,.0f} /s   {r['two'] / r['lmove']:4.2f}x raw")
    print(
        f"  worker loop, 1 worker                {r['loop1']:>9,.0f} /s   {r['loop1'] / r['lmove']:4.2f}x raw"
    )
    print(f"  worker loop, 8 workers               {r['loop8']:>9,.0f} /s")
    print(_peer_line("arq no-op jobs (burst worker)", arq, r["loop1"]))
    print(_peer_line("RQ no-op jobs (SimpleWorker)", rq, r["loop1"]))
    print()
    print(f"  stats latency, 100 queued            p50 {small_p50:6.0f} us   p99 {small_p99:6.0f} us")
    print(f"  stats latency, 100,000 queued        p50 {big_p50:6.0f} us   p99 {big_p99:6.0f} us")
    p50_ratio, p99_ratio = big_p50 / small_p50, big_p99 / small_p99
    print(f"  ratio 100,000 / 100                  p50 {p50_ratio:5.2f}x     p99 {p99_ratio:5.2f}x")
    print(f"  Redis memory per queued event        {per_event:,.0f} bytes (INFO used_memory delta / 100,000)")
    print(f"  one event (its record and its Event)  {one_hash:,} bytes")
    print()
    print("Worker loop = complete-and-claim-next in one Lua call, as the processor runs it.")
    print("Targets: enqueue >= 0.5x raw; worker loop >= 5,000/s and ahead of arq and RQ;")
    print("         stats latency at 100,000 within 1.5x of 100.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--peer-jobs", type=int, default=3_000)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.events, args.peer_jobs)))
