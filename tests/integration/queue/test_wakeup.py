"""Idle claimers wake on nudges and due times, not by polling; the fallback poll covers a lost nudge.

Bounds here are behaviour, not speed: with a fallback of 5 s, an event claimed within 1 s was claimed
because something woke its claimer, not because the poll came round.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlparse

import pytest
from redis.asyncio import Redis

from rebalancer_shared.events import Command
from rebalancer_shared.failures import FailureClass
from rebalancer_shared.queue import Claim, ClaimWakeup, EventQueue, EventState, Wait
from rebalancer_shared.redis_connection import open_redis
from tests.integration.queue.helpers import make_event
from tests.support.proxy import PartitionProxy
from tests.support.servers import REDIS_URL, throwaway_redis

FALLBACK = 5.0
AT_ONCE = 1.0


class CountingQueue(EventQueue):
    """An EventQueue that counts the claim scripts it runs (polling would show as many)."""

    claims_run = 0

    async def _claim_once(self, owner: str) -> tuple[Claim | None, float | None]:
        self.claims_run += 1
        return await super()._claim_once(owner)


@pytest.fixture
def queue(redis_client: Redis, prefix: str) -> CountingQueue:
    return CountingQueue(redis_client, prefix)


@dataclass
class Claimer:
    """One idle slot: claims in a loop as the worker does, and notes when it got an event."""

    queue: EventQueue
    wakeup: ClaimWakeup
    fallback: float = FALLBACK

    async def run(self) -> tuple[Claim, float]:
        while True:
            claim = await self.queue.claim_wait("slot", self.fallback, self.wakeup)
            if claim is not None:
                return claim, asyncio.get_running_loop().time()


@contextlib.asynccontextmanager
async def listening(
    queue: EventQueue, client: Redis | None = None, keepalive: float = 15.0
) -> AsyncIterator[ClaimWakeup]:
    """The process's wake-up, subscribed (through `client` when given) before the test goes on."""
    wakeup = ClaimWakeup(client or queue.redis, queue.keys.wake, slots=4, keepalive_seconds=keepalive)
    task = asyncio.create_task(wakeup.listen())
    try:
        await asyncio.wait_for(wakeup.subscribed.wait(), 5)
        yield wakeup
    finally:
        wakeup.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def idle(claimers: list[Claimer]) -> list[asyncio.Task[tuple[Claim, float]]]:
    tasks = [asyncio.create_task(c.run()) for c in claimers]
    await asyncio.sleep(0.3)  # every slot has claimed nothing and sleeps
    assert not any(t.done() for t in tasks)
    return tasks


async def first_claim(tasks: list[asyncio.Task[tuple[Claim, float]]], within: float) -> tuple[Claim, float]:
    done, pending = await asyncio.wait(tasks, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    assert done, f"no idle slot claimed the event within {within} s"
    return next(iter(done)).result()


async def test_an_event_enqueued_while_slots_idle_is_claimed_at_once_by_one_slot(
    queue: CountingQueue,
) -> None:
    producer = EventQueue(open_redis(REDIS_URL), queue.keys.prefix)  # another process's connection
    try:
        async with listening(queue) as wakeup:
            claimers = [Claimer(queue, wakeup) for _ in range(4)]
            tasks = await idle(claimers)
            loop = asyncio.get_running_loop()
            sent = loop.time()
            event = make_event("DU1", Command.REBALANCE)
            await producer.enqueue(event)
            claim, claimed_at = await first_claim(tasks, within=FALLBACK)
    finally:
        await producer.redis.aclose()
    assert claim.event.event_id == event.event_id
    assert claimed_at - sent < AT_ONCE, "woken by the nudge, not by the fallback poll"
    # One wake-up per nudge, not a herd: four first claims, one by the slot the nudge woke, and at
    # most one more (the look every subscription start allows, for nudges sent before it).
    assert queue.claims_run <= len(claimers) + 2


Step = Callable[[EventQueue, list[Claim]], Awaitable[object]]


async def _claim_and_fail(queue: EventQueue, wait: Wait) -> Claim:
    await queue.enqueue(make_event("DU1", Command.REBALANCE))
    claim = await queue.claim("earlier-run")
    assert claim is not None
    await queue.fail(claim, "boom", wait=wait)
    return claim


async def _nothing(queue: EventQueue, held: list[Claim]) -> None:
    return None


async def _scheduled(queue: EventQueue, held: list[Claim]) -> None:
    later = Wait(EventState.SCHEDULED, FailureClass.MARKET_CLOSED, delay_seconds=3600, attempted=False)
    await _claim_and_fail(queue, later)


async def _needs_attention(queue: EventQueue, held: list[Claim]) -> None:
    later = Wait(EventState.NEEDS_ATTENTION, FailureClass.NEEDS_ATTENTION, delay_seconds=3600)
    await _claim_and_fail(queue, later)


async def _processing(queue: EventQueue, held: list[Claim]) -> None:
    await queue.enqueue(make_event("DU1", Command.REBALANCE))
    claim = await queue.claim("earlier-run")
    assert claim is not None
    held.append(claim)


async def _enqueue(queue: EventQueue, held: list[Claim]) -> object:
    return await queue.enqueue(make_event("DU1", Command.REBALANCE))


async def _retry_now(queue: EventQueue, held: list[Claim]) -> object:
    [view] = await queue.list_events(1)
    return await queue.retry_now(str(view.event.event_id), "an operator's retry")


async def _release(queue: EventQueue, held: list[Claim]) -> object:
    return await queue.release(held[0])


async def _rerun(queue: EventQueue, held: list[Claim]) -> object:
    await queue.enqueue(make_event("DU1", Command.REBALANCE))  # a trigger during the run
    return await queue.complete(held[0])


async def _reap(queue: EventQueue, held: list[Claim]) -> object:
    short = EventQueue(queue.redis, queue.keys.prefix, lease_seconds=0.05)
    await short.enqueue(make_event("DU1", Command.REBALANCE))
    assert await short.claim("a worker that died") is not None
    await asyncio.sleep(0.1)
    return await short.reap()


async def _restore(queue: EventQueue, held: list[Claim]) -> object:
    return await queue.restore(make_event("DU1", Command.REBALANCE), 0, "recovered")


@dataclass(frozen=True)
class Case:
    """A state to start from, and the step that makes an event claimable from it."""

    setup: Step
    step: Step


CASES = {
    "enqueue": Case(_nothing, _enqueue),
    "retry-now": Case(_needs_attention, _retry_now),
    "trigger-brings-scheduled-forward": Case(_scheduled, _enqueue),
    "release": Case(_processing, _release),
    "complete-with-rerun": Case(_processing, _rerun),
    "reap": Case(_nothing, _reap),
    "restore": Case(_nothing, _restore),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_every_step_that_makes_an_event_claimable_wakes_an_idle_slot(
    queue: EventQueue, case: Case
) -> None:
    held: list[Claim] = []
    await case.setup(queue, held)
    async with listening(queue) as wakeup:
        tasks = await idle([Claimer(queue, wakeup)])
        loop = asyncio.get_running_loop()
        sent = loop.time()
        await case.step(queue, held)
        _, claimed_at = await first_claim(tasks, within=FALLBACK)
    assert claimed_at - sent < AT_ONCE


async def test_a_due_retry_is_claimed_at_its_due_time_without_a_nudge_or_polling(
    queue: CountingQueue,
) -> None:
    loop = asyncio.get_running_loop()
    await _claim_and_fail(queue, Wait(delay_seconds=0.8))  # no one listens: its nudge is not heard
    failed_at = loop.time()
    wakeup = queue.claim_wakeup()  # not subscribed: only the due time can wake the slot
    claims_before = queue.claims_run
    claim, claimed_at = await first_claim(await idle([Claimer(queue, wakeup)]), within=FALLBACK)
    assert claim.event.times_queued == 2
    assert 0.75 <= claimed_at - failed_at < 0.8 + AT_ONCE / 2
    assert queue.claims_run - claims_before == 2, "one empty claim, one at the due time: no polling"


async def test_retries_due_together_wake_as_many_slots_as_there_are_events(queue: EventQueue) -> None:
    for account in ("DU1", "DU2", "DU3"):
        await queue.enqueue(make_event(account, Command.REBALANCE))
    claims = [await queue.claim("earlier-run") for _ in range(3)]
    async with listening(queue) as wakeup:
        loop = asyncio.get_running_loop()
        due = [await queue.fail(c, "boom", 0.5) for c in claims if c is not None]
        failed_at = loop.time()
        claimers = [asyncio.create_task(Claimer(queue, wakeup).run()) for _ in range(3)]
        done = await asyncio.wait_for(asyncio.gather(*claimers), FALLBACK)
    assert len(due) == 3
    assert {c.event.account_id for c, _ in done} == {"DU1", "DU2", "DU3"}
    # The timer wakes one slot; its claim promotes all three and announces the two it leaves.
    assert max(at for _, at in done) - failed_at < 0.5 + AT_ONCE / 2


async def test_a_claim_that_promotes_due_events_announces_those_it_leaves(queue: EventQueue) -> None:
    for account in ("DU1", "DU2", "DU3"):
        await queue.enqueue(make_event(account, Command.REBALANCE))
    for claim in [await queue.claim("earlier-run") for _ in range(3)]:
        assert claim is not None
        await queue.fail(claim, "boom", 0.05)
    await asyncio.sleep(0.1)
    pubsub = queue.redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(queue.keys.wake)
    try:
        claim, due_in = await queue._claim_once("slot")
        heard = []
        for _ in range(5):  # the subscription's confirmation, then every message
            message = await pubsub.get_message(timeout=0.1)
            if message is not None:
                heard.append(message["data"])
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
    assert claim is not None
    assert heard == [b"0", b"0"], "other processes' idle slots are told of the two left in the queue"
    assert due_in == 0, "and this process wakes another slot of its own"


async def test_a_retry_that_fails_elsewhere_moves_an_idle_slots_wake_up_earlier(queue: EventQueue) -> None:
    async with listening(queue) as wakeup:
        tasks = await idle([Claimer(queue, wakeup)])  # nothing waits: it sleeps until the fallback
        loop = asyncio.get_running_loop()
        await _claim_and_fail(queue, Wait(delay_seconds=0.5))  # another process's run fails
        failed_at = loop.time()
        _, claimed_at = await first_claim(tasks, within=FALLBACK)
    assert 0.45 <= claimed_at - failed_at < 0.5 + AT_ONCE / 2


@pytest.mark.one_socket
async def test_a_lost_nudge_is_covered_by_the_fallback_poll(queue: EventQueue) -> None:
    proxy = PartitionProxy(urlparse(REDIS_URL).port or 6379).start()
    through_proxy = Redis(host="127.0.0.1", port=proxy.port)
    try:
        async with listening(queue, through_proxy) as wakeup:
            tasks = await idle([Claimer(queue, wakeup, fallback=1.0)])
            proxy.cut()  # the subscription hears nothing from now on
            loop = asyncio.get_running_loop()
            sent = loop.time()
            await queue.enqueue(make_event("DU1", Command.REBALANCE))
            _, claimed_at = await first_claim(tasks, within=3.0)
            proxy.heal()
    finally:
        proxy.close()
        await through_proxy.aclose()
    assert 0.3 < claimed_at - sent < 1.0 + AT_ONCE / 2, "claimed at the fallback poll, about 1 s"


@pytest.mark.one_socket
async def test_a_silently_cut_subscription_is_made_again_after_its_keepalive(queue: EventQueue) -> None:
    proxy = PartitionProxy(urlparse(REDIS_URL).port or 6379).start()
    through_proxy = Redis(host="127.0.0.1", port=proxy.port)
    try:
        async with listening(queue, through_proxy, keepalive=0.2) as wakeup:
            await asyncio.sleep(0.7)  # keep-alive PINGs answered: the subscription stays
            assert wakeup.subscribed.is_set()
            proxy.cut()  # no error, no answer: only the unanswered PING tells
            for _ in range(40):
                if not wakeup.subscribed.is_set():
                    break
                await asyncio.sleep(0.05)
            assert not wakeup.subscribed.is_set(), "the dead subscription was noticed"
            proxy.heal()
            await asyncio.wait_for(wakeup.subscribed.wait(), 5)
            tasks = await idle([Claimer(queue, wakeup)])
            sent = asyncio.get_running_loop().time()
            await queue.enqueue(make_event("DU1", Command.REBALANCE))
            _, claimed_at = await first_claim(tasks, within=FALLBACK)
    finally:
        proxy.close()
        await through_proxy.aclose()
    assert claimed_at - sent < AT_ONCE


async def test_the_subscription_comes_back_after_a_redis_restart(prefix: str) -> None:
    with throwaway_redis() as server:
        client = Redis.from_url(server.url)
        queue = EventQueue(client, prefix)
        try:
            async with listening(queue) as wakeup:
                server.restart_empty()
                for _ in range(100):  # until the subscription is back on the new server
                    if (await client.pubsub_numsub(queue.keys.wake))[0][1] == 1:
                        break
                    await asyncio.sleep(0.05)
                tasks = await idle([Claimer(queue, wakeup)])
                loop = asyncio.get_running_loop()
                sent = loop.time()
                await queue.enqueue(make_event("DU1", Command.REBALANCE))
                _, claimed_at = await first_claim(tasks, within=FALLBACK)
        finally:
            await client.aclose()
    assert claimed_at - sent < AT_ONCE


async def test_with_an_injected_clock_a_due_retry_is_found_by_the_poll(
    redis_client: Redis, prefix: str
) -> None:
    now = [1_800_000_000.0]
    queue = EventQueue(redis_client, prefix, clock=lambda: now[0])
    await _claim_and_fail(queue, Wait(delay_seconds=600))  # due in ten minutes of the test's clock
    wakeup = queue.claim_wakeup()
    tasks = await idle([Claimer(queue, wakeup, fallback=0.2)])
    now[0] += 601
    claim, _ = await first_claim(tasks, within=AT_ONCE)
    assert claim.event.times_queued == 2


async def test_close_wakes_every_idle_slot_and_they_claim_nothing(queue: EventQueue) -> None:
    wakeup = queue.claim_wakeup(slots=3)
    waiting = [asyncio.create_task(queue.claim_wait("slot", FALLBACK, wakeup)) for _ in range(3)]
    await asyncio.sleep(0.2)
    await queue.enqueue(make_event("DU1", Command.REBALANCE))  # not subscribed: nobody is nudged
    wakeup.close()
    results = await asyncio.wait_for(asyncio.gather(*waiting), AT_ONCE)
    assert results == [None, None, None]
    assert (await queue.stats()).queue_length == 1
