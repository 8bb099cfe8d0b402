"""Management API benchmark: /queue/status and /health with 100 and with 100,000 events queued, and the
history listings over 10,000 events.

Run: `make bench` or `.venv/bin/python bench/api.py [--requests N] [--rounds N] [--concurrency N]`.

Two live `python -m management_service` processes (uvicorn) share one throwaway redis-server and a
fresh database; one serves a key prefix holding 100 live events, the other 100,000. Measurements
alternate between the two (and swap which goes first each round) so machine noise falls on both,
and the figures are printed with their ratios. Target: at 100,000 within 1.5x of 100 (the status
counters never scan the queue).

Then the same database gets a history of 10,000 events with their runs and orders
(bench/history_data.py), and each history query (filters, a page deep in a cursor walk, an account,
an event) is asked `--history-requests` times, one request at a time, the queries interleaved.
Target: every query's p99 under 50 ms.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/api.py`, this file's folder would come first on sys.path and bench/queue.py
# would shadow the standard library's `queue`: put the repository root there instead.
if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import quote

import httpx
from redis.asyncio import Redis

from bench.history_data import ACCOUNTS, HistoryShape, fill_history
from bench.queue import fill
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore
from tests.integration.management.live_server import LiveServer, live_management_server, write_heartbeats
from tests.support.servers import create_database, database_url, drop_database, throwaway_redis

SIZES = (100, 100_000)
ENDPOINTS = ("/queue/status", "/health")
ACCOUNTS_YAML = "".join(
    f'- account_id: "{account}"\n  notification:\n    channel: "strategy-name-100"\n'
    for account in ("DU123456", *ACCOUNTS)
)
HISTORY_TARGET_MS = 50.0
HEARTBEATS: dict[str, dict[str, object]] = {
    "event-broker:bench": {"state": "connected"},
    "event-processor:bench": {"state": "running"},
}


@dataclass
class Samples:
    """Latencies of one (endpoint, queue size) pair and the wall time their batches took."""

    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    statuses: set[int] = field(default_factory=set)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


async def batch(client: httpx.AsyncClient, path: str, requests: int, concurrency: int, into: Samples) -> None:
    """`requests` GETs of `path` from `concurrency` loops; latencies and wall time go `into`."""
    remaining = iter(range(requests))

    async def loop() -> None:
        for _ in remaining:
            start = time.perf_counter()
            response = await client.get(path)
            into.latencies.append(time.perf_counter() - start)
            into.statuses.add(response.status_code)

    start = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    into.seconds += time.perf_counter() - start


async def measure(
    servers: dict[int, LiveServer], redis_url: str, rounds: int, requests: int, concurrency: int
) -> dict[tuple[str, int], Samples]:
    results = {(path, size): Samples() for path in ENDPOINTS for size in SIZES}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    clients = {size: httpx.AsyncClient(base_url=s.base_url, limits=limits) for size, s in servers.items()}
    try:
        for client in clients.values():  # warm-up: connections, code paths, the database pool
            await batch(client, "/health", 200, concurrency, Samples())
            await batch(client, "/queue/status", 200, concurrency, Samples())
        for round_number in range(rounds):
            for size in SIZES:  # the heartbeats must stay fresh for /health to do its whole check
                write_heartbeats(redis_url, f"bench-{size}", HEARTBEATS)
            order = SIZES if round_number % 2 == 0 else SIZES[::-1]
            for path in ENDPOINTS:
                for size in order:
                    await batch(clients[size], path, requests, concurrency, results[(path, size)])
    finally:
        for client in clients.values():
            await client.aclose()
    return results


async def fill_queues(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    try:
        for size in SIZES:
            queue = EventQueue(client, f"bench-{size}")
            await fill(queue, 0, size)
            assert (await queue.stats()).queue_length == size
    finally:
        await client.aclose()


@contextlib.contextmanager
def servers_for(redis_url: str, database: str, workdir: Path) -> Iterator[dict[int, LiveServer]]:
    with contextlib.ExitStack() as stack:
        yield {
            size: stack.enter_context(
                live_management_server(
                    workdir / str(size),
                    ACCOUNTS_YAML,
                    REDIS_URL=redis_url,
                    REDIS_KEY_PREFIX=f"bench-{size}",
                    DATABASE_URL=database,
                    LOG_LEVEL="WARNING",
                )
            )
            for size in SIZES
        }


def report(results: dict[tuple[str, int], Samples], rounds: int, requests: int, concurrency: int) -> None:
    small, big = SIZES
    print(
        f"Management API benchmark ({rounds} alternating rounds x {requests} requests per endpoint and size,"
        f" {concurrency} concurrent; uvicorn, one throwaway redis-server, one machine, one run)"
    )
    print()
    for path in ENDPOINTS:
        for size in SIZES:
            s = results[(path, size)]
            print(
                f"  {path:<14} {size:>7,} queued   {s.rate:7,.0f} req/s   p50 {s.percentile(0.5):6.2f} ms"
                f"   p99 {s.percentile(0.99):6.2f} ms   status {sorted(s.statuses)}"
            )
    print()
    worst = 0.0
    for path in ENDPOINTS:
        a, b = results[(path, small)], results[(path, big)]
        rate_ratio = a.rate / b.rate
        p99_ratio = b.percentile(0.99) / a.percentile(0.99)
        worst = max(worst, rate_ratio, p99_ratio)
        print(
            f"  {path:<14} slowdown at {big:,} vs {small}:  req/s {rate_ratio:4.2f}x   p99 {p99_ratio:4.2f}x"
            f"   (p50 {b.percentile(0.5) / a.percentile(0.5):4.2f}x)"
        )
    print("  (slowdown: req/s at 100 / req/s at 100,000, and latency at 100,000 / latency at 100)")
    print()
    verdict = "met" if worst <= 1.5 else "NOT met"
    print(
        f"Target: figures at {big:,} within 1.5x of those at {small}: {verdict} (worst ratio {worst:.2f}x)."
    )
    print(f"Median batch wall time {statistics.median(s.seconds / rounds for s in results.values()):.2f} s.")


async def _deep_cursor(client: httpx.AsyncClient, path: str, pages: int) -> str:
    """The cursor `pages` pages into a walk of `path` (a page far from the newest)."""
    cursor = ""
    for _ in range(pages):
        body = (await client.get(path + (f"&cursor={cursor}" if cursor else ""))).json()
        cursor = body["next_cursor"]
    return cursor


async def history_queries(client: httpx.AsyncClient, shape: HistoryShape) -> dict[str, str]:
    """The history queries measured, by label."""
    since, until = shape.middle.isoformat(), (shape.middle + timedelta(hours=6)).isoformat()
    events_deep = await _deep_cursor(client, "/events?limit=50", 100)
    orders_deep = await _deep_cursor(client, "/orders?limit=50", 100)
    some_event = (await client.get("/events?state=completed&limit=1")).json()["events"][0]["event_id"]
    return {
        "events, newest page": "/events?limit=50",
        "events of an account": f"/events?account_id={ACCOUNTS[3]}&limit=50",
        "events by state+command": "/events?state=completed&command=rebalance&limit=50",
        "events in 6 hours": f"/events?since={quote(since)}&until={quote(until)}&limit=50",
        "events, page 101": f"/events?limit=50&cursor={events_deep}",
        "orders of an account": f"/orders?account_id={ACCOUNTS[5]}&limit=50",
        "orders by symbol+status": "/orders?symbol=VTI&status=Filled&limit=50",
        "orders, page 101": f"/orders?limit=50&cursor={orders_deep}",
        "an account (runs, plan)": f"/accounts/{ACCOUNTS[0]}",
        "an event's history": f"/events/{some_event}",
    }


async def measure_history(
    server: LiveServer, store: EventStore, requests: int
) -> tuple[HistoryShape, dict[str, Samples]]:
    shape = await fill_history(store)
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        queries = await history_queries(client, shape)
        results = {label: Samples() for label in queries}
        for path in queries.values():  # warm-up
            await batch(client, path, 20, 1, Samples())
        for _ in range(requests // 10):
            for label, path in queries.items():
                await batch(client, path, 10, 1, results[label])
    return shape, results


def report_history(shape: HistoryShape, results: dict[str, Samples]) -> None:
    print()
    print(
        f"History listings over {shape.events:,} events, {shape.runs:,} runs, {shape.orders:,} orders"
        " (one request at a time, queries interleaved):"
    )
    print()
    for label, s in results.items():
        print(
            f"  {label:<26} p50 {s.percentile(0.5):6.2f} ms   p99 {s.percentile(0.99):6.2f} ms"
            f"   status {sorted(s.statuses)}"
        )
    worst = max(s.percentile(0.99) for s in results.values())
    verdict = "met" if worst < HISTORY_TARGET_MS else "NOT met"
    print()
    print(
        f"Target: p99 under {HISTORY_TARGET_MS:.0f} ms for every query: {verdict} (worst p99 {worst:.2f} ms)."
    )


async def main(rounds: int, requests: int, concurrency: int, history_requests: int) -> None:
    name = create_database()
    try:
        with throwaway_redis() as redis_server, tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
            await fill_queues(redis_server.url)
            with servers_for(redis_server.url, database_url(name), Path(tmp)) as servers:
                results = await measure(servers, redis_server.url, rounds, requests, concurrency)
                store = EventStore.from_url(database_url(name))
                try:
                    shape, history = await measure_history(servers[SIZES[0]], store, history_requests)
                finally:
                    await store.close()
    finally:
        drop_database(name)
    report(results, rounds, requests, concurrency)
    report_history(shape, history)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--history-requests", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.requests, args.concurrency, args.history_requests))
