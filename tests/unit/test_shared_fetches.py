"""SharedFetches: the events of one trigger share one allocation request, for a short while."""

from __future__ import annotations

import asyncio

import pytest

from event_processor.allocations.shared_fetches import SharedFetches


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_uses_share_one_fetch_and_later_ones_the_kept_answer() -> None:
    calls = 0

    async def fetch() -> object:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return {"weights": calls}

    clock = Clock()
    shared = SharedFetches(ttl_seconds=60, clock=clock)
    answers = await asyncio.gather(*(shared.get(("chan", "t1"), fetch) for _ in range(50)))
    assert calls == 1
    assert all(a == {"weights": 1} for a in answers)
    clock.now = 59
    assert await shared.get(("chan", "t1"), fetch) == {"weights": 1}
    clock.now = 61
    assert await shared.get(("chan", "t1"), fetch) == {"weights": 2}, "asked again once it is old"
    assert await shared.get(("chan", "t2"), fetch) == {"weights": 3}, "another trigger asks again"


async def test_a_failure_reaches_every_waiter_and_is_not_kept() -> None:
    outcomes = [RuntimeError("API down"), {"ok": True}]

    async def fetch() -> object:
        await asyncio.sleep(0.01)
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    shared = SharedFetches()
    results = await asyncio.gather(*(shared.get("k", fetch) for _ in range(3)), return_exceptions=True)
    assert [str(r) for r in results] == ["API down"] * 3
    assert await shared.get("k", fetch) == {"ok": True}


async def test_a_cancelled_waiter_does_not_cancel_the_fetch_of_the_others() -> None:
    release = asyncio.Event()

    async def fetch() -> object:
        await release.wait()
        return "answer"

    shared = SharedFetches()
    first = asyncio.create_task(shared.get("k", fetch))
    second = asyncio.create_task(shared.get("k", fetch))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == "answer"


async def test_the_memory_is_bounded() -> None:
    async def fetch() -> object:
        return "x"

    shared = SharedFetches(max_entries=3)
    for key in range(10):
        await shared.get(key, fetch)
    assert len(shared._kept) == 3
