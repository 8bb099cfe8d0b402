"""A hypothesis state machine drives random operations against the real queue and a plain model.

After every step the queue's stats, its FIFO order and every live event's state, retry count,
rerun mark, failure class and due time must equal the model's, which is written in the simplest way
the rules allow. A failed run waits in one of three states (retrying after a delay, scheduled or
needs attention until a due time, counted or not); an operator's retry makes a waiting event due at
once; a trigger brings a scheduled or needs-attention event forward.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from rebalancer_shared.events import Command
from rebalancer_shared.failures import FailureClass
from rebalancer_shared.queue import (
    Claim,
    CompleteOutcome,
    EnqueueOutcome,
    EventNotQueuedError,
    EventProcessingError,
    EventQueue,
    EventState,
    LeaseLostError,
    RetryNowOutcome,
    Wait,
)
from rebalancer_shared.redis_connection import open_redis
from tests.integration.queue.helpers import make_event
from tests.support.servers import REDIS_URL, delete_prefix, sync_redis

LEASE_MS = 30_000


@dataclass
class ModelEvent:
    key: str
    state: str
    times: int
    rerun: bool
    seq: int
    failure_class: str | None = None


WAITS = {
    "retrying": FailureClass.TRANSIENT,
    "scheduled": FailureClass.MARKET_CLOSED,
    "needs_attention": FailureClass.NEEDS_ATTENTION,
}


class Clock:
    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def __call__(self) -> float:
        return self.ms / 1000


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.prefix = f"test-model-{uuid.uuid4().hex[:10]}"
        self.clock = Clock()
        self.client = open_redis(REDIS_URL)
        self.queue = EventQueue(self.client, self.prefix, lease_seconds=LEASE_MS / 1000, clock=self.clock)
        self.events: dict[str, ModelEvent] = {}
        self.fifo: list[str] = []
        self.retry: dict[str, int] = {}
        self.leases: dict[str, tuple[int, str]] = {}
        self.dedup: dict[str, str] = {}
        self.claims: list[Claim] = []
        self.known: list[str] = []
        self.seq = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.client.aclose())
        self.loop.close()
        sync = sync_redis()
        delete_prefix(sync, self.prefix)
        sync.close()

    @rule(
        account=st.sampled_from(["A", "B", "C"]),
        command=st.sampled_from([Command.REBALANCE, Command.PRINT_ORDERS]),
    )
    def enqueue(self, account: str, command: Command) -> None:
        event = make_event(account, command)
        result = self.run(self.queue.enqueue(event))
        key = event.dedup_key
        if key in self.dedup:
            existing_id = self.dedup[key]
            existing = self.events[existing_id]
            coalesces = existing.state in ("processing", "scheduled", "needs_attention")
            expected = EnqueueOutcome.COALESCED if coalesces else EnqueueOutcome.DUPLICATE
            if existing.state == "processing":
                existing.rerun = True
            elif coalesces:  # brought forward: due now, at the back of the queue
                del self.retry[existing_id]
                existing.state = "queued"
                self.fifo.append(existing_id)
            assert (result.outcome, result.event_id) == (expected, existing_id)
            return
        assert result.outcome is EnqueueOutcome.QUEUED
        event_id = str(event.event_id)
        self.seq += 1
        self.events[event_id] = ModelEvent(key, "queued", 1, False, self.seq)
        self.dedup[key] = event_id
        self.fifo.append(event_id)
        self.known.append(event_id)

    @rule()
    def claim(self) -> None:
        claim = self.run(self.queue.claim("w"))
        self._take(claim, self._model_claim())

    def _valid(self, claim: Claim) -> bool:
        lease = self.leases.get(str(claim.event.event_id))
        return lease is not None and lease[1] == claim.lease_token

    def _model_complete(self, claim: Claim) -> CompleteOutcome:
        event_id = str(claim.event.event_id)
        del self.leases[event_id]
        model = self.events[event_id]
        if model.rerun:
            model.state, model.rerun = "queued", False
            self.fifo.append(event_id)
            return CompleteOutcome.RERUN
        del self.events[event_id]
        del self.dedup[model.key]
        return CompleteOutcome.COMPLETED

    def _model_claim(self) -> str | None:
        due = sorted(
            ((i, d) for i, d in self.retry.items() if d <= self.clock.ms), key=lambda x: (x[1], x[0])
        )
        for event_id, _ in due:
            del self.retry[event_id]
            self.events[event_id].state = "queued"
            self.fifo.append(event_id)
        if not self.fifo:
            return None
        expected = self.fifo.pop(0)
        self.events[expected].state, self.events[expected].rerun = "processing", False
        return expected

    def _take(self, claim: Claim | None, expected: str | None) -> None:
        if expected is None:
            assert claim is None
            return
        assert claim is not None
        assert str(claim.event.event_id) == expected
        assert claim.event.times_queued == self.events[expected].times
        self.leases[expected] = (self.clock.ms + LEASE_MS, claim.lease_token)
        self.claims.append(claim)

    @precondition(lambda self: bool(self.claims))
    @rule(data=st.data(), and_claim=st.booleans())
    def complete(self, data: st.DataObject, and_claim: bool) -> None:
        claim = data.draw(st.sampled_from(self.claims))
        self.claims.remove(claim)
        if not self._valid(claim):
            call = self.queue.complete_and_claim(claim, "w") if and_claim else self.queue.complete(claim)
            with pytest.raises(LeaseLostError):
                self.run(call)
            return
        if not and_claim:
            assert self.run(self.queue.complete(claim)).outcome is self._model_complete(claim)
            return
        result = self.run(self.queue.complete_and_claim(claim, "w"))
        assert result.outcome is self._model_complete(claim)
        self._take(result.next_claim, self._model_claim())

    @precondition(lambda self: bool(self.claims))
    @rule(
        data=st.data(),
        state=st.sampled_from(list(WAITS)),
        delay=st.sampled_from([0, 5, 30, 3600]),
        attempted=st.booleans(),
    )
    def fail(self, data: st.DataObject, state: str, delay: int, attempted: bool) -> None:
        claim = data.draw(st.sampled_from(self.claims))
        self.claims.remove(claim)
        event_id = str(claim.event.event_id)
        attempted = attempted or state == "retrying"
        due_ms = self.clock.ms + delay * 1000
        wait = Wait(
            state=EventState(state),
            failure_class=WAITS[state],
            delay_seconds=delay,
            # scheduled and needs-attention events are due at a moment, retrying ones after a delay
            due_at=None if state == "retrying" else datetime.fromtimestamp(due_ms / 1000, UTC),
            attempted=attempted,
        )
        if not self._valid(claim):
            with pytest.raises(LeaseLostError):
                self.run(self.queue.fail(claim, "err", wait=wait))
            return
        result = self.run(self.queue.fail(claim, "err", wait=wait))
        del self.leases[event_id]
        model = self.events[event_id]
        model.times += 1 if attempted else 0
        model.state, model.rerun, model.failure_class = state, False, WAITS[state].value
        assert result.times_queued == model.times
        assert result.due_at is not None
        assert round(result.due_at.timestamp() * 1000) == due_ms
        self.retry[event_id] = due_ms

    @precondition(lambda self: bool(self.known))
    @rule(data=st.data())
    def retry_now(self, data: st.DataObject) -> None:
        event_id = data.draw(st.sampled_from(self.known))
        model = self.events.get(event_id)
        if model is None:
            with pytest.raises(EventNotQueuedError):
                self.run(self.queue.retry_now(event_id, "operator"))
            return
        if model.state == "processing":
            with pytest.raises(EventProcessingError):
                self.run(self.queue.retry_now(event_id, "operator"))
            return
        outcome, _ = self.run(self.queue.retry_now(event_id, "operator"))
        if model.state == "queued":
            assert outcome is RetryNowOutcome.QUEUED
            return
        assert outcome is RetryNowOutcome.REQUEUED
        del self.retry[event_id]
        model.state = "queued"
        self.fifo.append(event_id)

    @precondition(lambda self: bool(self.known))
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        event_id = data.draw(st.sampled_from(self.known))
        model = self.events.get(event_id)
        if model is None:
            with pytest.raises(EventNotQueuedError):
                self.run(self.queue.remove(event_id))
            return
        if model.state == "processing":
            with pytest.raises(EventProcessingError):
                self.run(self.queue.remove(event_id))
            return
        removed = self.run(self.queue.remove(event_id))
        assert str(removed.event.event_id) == event_id
        if model.state == "queued":
            self.fifo.remove(event_id)
        else:
            del self.retry[event_id]
        del self.events[event_id]
        del self.dedup[model.key]

    @precondition(lambda self: bool(self.claims))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        claim = data.draw(st.sampled_from(self.claims))
        self.claims.remove(claim)
        if not self._valid(claim):
            with pytest.raises(LeaseLostError):
                self.run(self.queue.release(claim))
            return
        self.run(self.queue.release(claim))
        event_id = str(claim.event.event_id)
        del self.leases[event_id]
        self.events[event_id].state = "queued"
        self.fifo.insert(0, event_id)

    @rule()
    def reap(self) -> None:
        expired = sorted(
            ((i, e) for i, (e, _) in self.leases.items() if e <= self.clock.ms), key=lambda x: (x[1], x[0])
        )
        expected = []
        for event_id, _ in expired:
            del self.leases[event_id]
            model = self.events[event_id]
            model.times += 1
            model.state, model.rerun = "queued", False
            self.fifo.append(event_id)
            expected.append((event_id, model.times))
        assert [(r.event_id, r.times_queued) for r in self.run(self.queue.reap())] == expected

    @precondition(lambda self: bool(self.claims))
    @rule(data=st.data())
    def renew(self, data: st.DataObject) -> None:
        claim = data.draw(st.sampled_from(self.claims))
        if not self._valid(claim):
            with pytest.raises(LeaseLostError):
                self.run(self.queue.renew(claim))
            return
        self.run(self.queue.renew(claim))
        event_id = str(claim.event.event_id)
        self.leases[event_id] = (self.clock.ms + LEASE_MS, claim.lease_token)

    @rule(seconds=st.sampled_from([0.5, 1, 5, 10, 31]))
    def advance(self, seconds: float) -> None:
        self.clock.ms += int(seconds * 1000)

    @invariant()
    def matches_the_model(self) -> None:
        stats = self.run(self.queue.stats())
        assert stats.queue_length == len(self.fifo)
        assert stats.processing_count == len(self.leases)
        waiting = [self.events[i].state for i in self.retry]
        assert stats.retrying_count == waiting.count("retrying")
        assert stats.scheduled_count == waiting.count("scheduled")
        assert stats.needs_attention_count == waiting.count("needs_attention")
        assert stats.active_events_count == len(self.events) == len(self.dedup)
        assert stats.events_with_retries == sum(1 for e in self.events.values() if e.times > 1)
        views = self.run(self.queue.list_events(limit=1000))
        expected = sorted(self.events.items(), key=lambda item: item[1].seq)
        assert [str(v.event.event_id) for v in views] == [i for i, _ in expected]
        for view, (event_id, model) in zip(views, expected, strict=True):
            assert (view.state.value, view.event.times_queued, view.rerun) == (
                model.state,
                model.times,
                model.rerun,
            )
            assert (view.failure_class.value if view.failure_class else None) == model.failure_class
            due = round(view.due_at.timestamp() * 1000) if view.due_at else None
            assert due == self.retry.get(event_id)
        raw = [i.decode() for i in self.run(self.client.lrange(self.queue.keys.queue, 0, -1))]
        tombs = {i.decode() for i in self.run(self.client.smembers(self.queue.keys.tombstones))}
        live = [i for i in raw if i not in tombs]
        assert live == self.fifo


QueueMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_queue_matches_its_model = QueueMachine.TestCase
