"""The queue of this checkout against the queue of another commit, on one node, alternately.

Run: `.venv/bin/python bench/queue_against.py REV [--pairs N] [--events N]`, e.g. the commit before a
change to the key layout or the scripts. REV is checked out into a temporary git worktree. Each
measurement is a fresh process, this checkout's and REV's taking turns (each going first in every
other pair), that enqueues `--events` events and runs them through the worker loop
(complete-and-claim-next, one worker) on one throwaway redis-server. Printed: each side's median
rate and the median of the pairwise ratios (a pair shares the machine's mood; single pairs vary by
+-15 % on a busy machine).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[1]
MEASURES = ("enqueue", "loop")


async def measure(url: str, events: int) -> dict[str, float]:
    """In the child process: this interpreter's `rebalancer_shared` (PYTHONPATH picks the side)."""
    from redis.asyncio import Redis

    from rebalancer_shared.events import Command, Event, EventSource
    from rebalancer_shared.queue import EventQueue

    commands = list(Command)
    batch = [
        Event(account_id=f"U{i}", exec_command=commands[i % len(commands)], source=EventSource.API)
        for i in range(events)
    ]
    client = Redis.from_url(url)
    queue = EventQueue(client, f"against-{uuid.uuid4().hex[:8]}")
    start = time.perf_counter()
    for event in batch:
        await queue.enqueue(event)
    enqueue = events / (time.perf_counter() - start)
    start = time.perf_counter()
    claim = await queue.claim("bench")
    while claim is not None:
        claim = (await queue.complete_and_claim(claim, "bench")).next_claim
    loop = events / (time.perf_counter() - start)
    await client.flushdb()
    await client.aclose()
    return {"enqueue": enqueue, "loop": loop}


@contextlib.contextmanager
def worktree(rev: str) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="queue-against-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(folder), rev], cwd=ROOT, check=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=ROOT, check=False)


def run_side(source: Path, url: str, events: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": f"{source / 'shared' / 'src'}{os.pathsep}{ROOT}"}
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", url, "--events", str(events)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(rev: str, pairs: int, events: int) -> None:
    from tests.support.servers import throwaway_redis

    sides: dict[str, list[dict[str, float]]] = {"this checkout": [], rev: []}
    with worktree(rev) as other, throwaway_redis() as server:
        for pair in range(pairs):  # who goes first alternates too (the second runs on a warmer server)
            order = [("this checkout", ROOT), (rev, other)]
            for name, source in order if pair % 2 == 0 else reversed(order):
                sides[name].append(run_side(source, server.url, events))
    print(f"Queue against {rev} ({pairs} alternating pairs of {events:,} events, one redis-server)")
    print()
    for measure_name in MEASURES:
        ours = [r[measure_name] for r in sides["this checkout"]]
        theirs = [r[measure_name] for r in sides[rev]]
        ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
        print(
            f"  {measure_name:<8} this checkout {statistics.median(ours):>7,.0f} /s   {rev} "
            f"{statistics.median(theirs):>7,.0f} /s   pairwise {statistics.median(ratios):4.2f}x "
            f"(pairs {min(ratios):4.2f}-{max(ratios):4.2f}x)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("rev", nargs="?", help="the commit to compare with")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(measure(args.child, args.events))))
    elif args.rev is None:
        parser.error("name the commit to compare with")
    else:
        main(args.rev, args.pairs, args.events)
