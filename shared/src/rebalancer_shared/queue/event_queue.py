"""`EventQueue`: the Redis working queue of live events (DESIGN.md section 4).

An accepted event is always in exactly one of: queued (in the FIFO list), processing (under a lease
in the leases zset) or waiting in the retry zset until its due time: retrying (a transient failure),
scheduled (market closed) or needs_attention (see rebalancer_shared.failures). Each transition is one
Lua script (see scripts.py), so a process killed at any point leaves every event in one of those
places, and an expired lease returns its event to the back of the queue (`reap`).

Waiting for work: `claim_wait` with the process's `ClaimWakeup` (wakeup.py) sleeps between claims
until a nudge (the scripts announce every event that becomes claimable), the earliest due time of a
waiting event (which an empty claim answers), or the caller's fallback timeout; without one it polls.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from rebalancer_shared.errors import RebalancerError
from rebalancer_shared.events import Event, parse_event
from rebalancer_shared.failures import FailureClass
from rebalancer_shared.queue import scripts
from rebalancer_shared.queue.durability import Durability
from rebalancer_shared.queue.keys import QueueKeys
from rebalancer_shared.queue.models import (
    WAITING_STATES,
    Claim,
    CompleteOutcome,
    CompleteResult,
    EnqueueOutcome,
    EnqueueResult,
    EventState,
    FailResult,
    QueuedEventView,
    QueueStats,
    Reaped,
    Removed,
    RestoreOutcome,
    RestoreResult,
    RetryNowOutcome,
    Wait,
)
from rebalancer_shared.queue.wakeup import ClaimWakeup

log = structlog.get_logger(__name__)

Clock = Callable[[], float]
# How long finished event ids are remembered (P:q:finished): longer than any replay of a trigger.
FINISHED_RETENTION_SECONDS = 86_400.0


class QueueError(RebalancerError):
    """A queue operation could not be done as asked."""


class LeaseLostError(QueueError):
    """The caller's lease on an event expired and was reaped; another worker may hold it now."""


class EventNotQueuedError(QueueError):
    """The event is not live in the queue (unknown, completed or removed)."""


class EventProcessingError(QueueError):
    """The event is being processed and cannot be removed now."""


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class EventQueue:
    """The live events of one deployment, under one key prefix of one Redis."""

    def __init__(
        self,
        redis: Redis,
        prefix: str = "rebalancer",
        *,
        lease_seconds: float = 30.0,
        clock: Clock | None = None,
        finished_retention_seconds: float = FINISHED_RETENTION_SECONDS,
        durability: Durability | None = None,
    ) -> None:
        self.redis = redis
        self.durability = durability or Durability()
        self.keys = QueueKeys(prefix)
        self.lease_seconds = lease_seconds
        self.finished_retention_seconds = finished_retention_seconds
        self._clock = clock
        self._enqueue = redis.register_script(scripts.ENQUEUE)
        self._restore = redis.register_script(scripts.RESTORE)
        self._supersede = redis.register_script(scripts.SUPERSEDE)
        self._claim = redis.register_script(scripts.CLAIM)
        self._renew = redis.register_script(scripts.RENEW)
        self._complete = redis.register_script(scripts.COMPLETE)
        self._complete_and_claim = redis.register_script(scripts.COMPLETE_AND_CLAIM)
        self._fail = redis.register_script(scripts.FAIL)
        self._reap = redis.register_script(scripts.REAP)
        self._release = redis.register_script(scripts.RELEASE)
        self._remove = redis.register_script(scripts.REMOVE)
        self._retry_now = redis.register_script(scripts.RETRY_NOW)
        self._stats = redis.register_script(scripts.STATS)

    async def _attempt(self, script: AsyncScript, keys: list[str], args: list[Any]) -> tuple[Any, bool]:
        """Run a queue script (given the bodies hash as its last key, as scripts.RECORD_FN expects);
        its reply, and whether the replicas confirmed it (durability.py)."""
        return await self.durability.attempt(self.redis, script, [*keys, self.keys.bodies], args)

    async def _write(self, script: AsyncScript, what: str, *, keys: list[str], args: list[Any]) -> Any:
        """Run a script whose write must be on the replicas before it counts (durability.py)."""
        reply, confirmed = await self._attempt(script, keys, args)
        if not confirmed:
            raise self.durability.not_replicated(what)
        return reply

    async def _stand(self, script: AsyncScript, what: str, *, keys: list[str], args: list[Any]) -> Any:
        """Run a script whose write stands once on the primary; say so when the replicas lag."""
        reply, confirmed = await self._attempt(script, keys, args)
        if not confirmed:
            log.warning(
                "a queue write is on the primary but not yet on its replicas",
                write=what,
                replicas=self.durability.replicas,
                timeout_seconds=self.durability.timeout_seconds,
            )
        return reply

    def _now_arg(self) -> str:
        return "" if self._clock is None else str(_ms(self._clock()))

    def claim_wakeup(self, slots: int = 1) -> ClaimWakeup:
        """The wake-ups of a process's idle slots (one per process; run its `listen` as a task).

        With an injected clock due times are not real time, so they are not followed: slots poll.
        """
        return ClaimWakeup(self.redis, self.keys.wake, slots=slots, follow_due_times=self._clock is None)

    def _insert_keys(self) -> list[str]:
        keys = self.keys
        return [
            keys.dedup,
            keys.queue,
            keys.order,
            keys.retried,
            keys.seq,
            keys.outbox,
            keys.metrics,
            keys.finished,
            keys.retry,
            keys.scheduled,
            keys.attention,
            keys.events,
        ]

    def _insert_args(self, event: Event) -> list[Any]:
        return [
            str(event.event_id),
            event.dedup_key,
            event.to_json(),
            event.times_queued,
            _ms(event.created_at.timestamp()),
            event.exec_command.value,
        ]

    async def enqueue(self, event: Event) -> EnqueueResult:
        """Add the event unless its dedup key is live: then drop it, or mark the live one to rerun.

        The same event (same id) enqueued again while live or within a day of finishing changes
        nothing and answers `ALREADY_ACCEPTED`: submitting one trigger twice makes one event.
        """
        reply = await self._write(
            self._enqueue,
            f"enqueue of event {event.event_id}",
            keys=self._insert_keys(),
            args=[*self._insert_args(event), self._now_arg(), self.keys.wake],
        )
        return EnqueueResult(EnqueueOutcome(_text(reply[0])), _text(reply[1]), _entries(reply[2:]))

    async def restore(
        self, event: Event, delay_seconds: float, detail: str, wait: Wait | None = None
    ) -> RestoreResult:
        """Put back an event PostgreSQL knows as unfinished, unless Redis knows it (see scripts.RESTORE).

        `wait`: the waiting state, class and due time it had (a scheduled or needs-attention event
        keeps them); otherwise it is claimable after `delay_seconds`.
        """
        waiting = wait is not None and wait.state is not EventState.RETRYING
        state_args = (
            [wait.state.value, wait.failure_class.value, _due_ms(wait.due_at)]
            if waiting and wait is not None
            else ["retrying", "", 0]
        )
        reply = await self._write(
            self._restore,
            f"restore of event {event.event_id}",
            keys=self._insert_keys(),
            args=[
                *self._insert_args(event),
                _ms(delay_seconds),
                detail,
                self._now_arg(),
                *state_args,
                self.keys.wake,
            ],
        )
        outcome = RestoreOutcome(_text(reply[0]))
        if outcome is RestoreOutcome.RESTORED:
            return RestoreResult(outcome, entries=_entries(reply[1:]))
        return RestoreResult(outcome, existing_event_id=_text(reply[1]) if len(reply) > 1 else None)

    async def supersede(self, event: Event, live_event_id: str) -> tuple[str, ...]:
        """Record that `event`, lost by Redis, ends because `live_event_id` holds its key now."""
        detail = f"Redis lost it while event {live_event_id} of the same key was live: that one runs instead"
        entry = await self._write(
            self._supersede,
            f"end of lost event {event.event_id}",
            keys=[self.keys.outbox],
            args=[str(event.event_id), event.times_queued, detail, event.to_json(), self._now_arg()],
        )
        return (_text(entry),)

    async def claim(self, owner: str) -> Claim | None:
        """Take the oldest queued event under a new lease, or None when nothing is claimable."""
        claim, _ = await self._claim_once(owner)
        return claim

    async def _claim_once(self, owner: str) -> tuple[Claim | None, float | None]:
        """A claim or None, and the seconds until a claim may find something (0: now; the earliest
        due time of a waiting event; None: nothing waits)."""
        keys = self.keys
        sent_at = time.monotonic()
        reply = await self._write(
            self._claim,
            "claim",
            keys=[
                keys.queue,
                keys.retry,
                keys.leases,
                keys.tombstones,
                keys.outbox,
                keys.scheduled,
                keys.attention,
                keys.events,
            ],
            args=[
                uuid.uuid4().hex,
                owner,
                _ms(self.lease_seconds),
                self._now_arg(),
                keys.wake,
            ],
        )
        claim = _claim_of(reply, sent_at) if isinstance(reply, list) else None
        delay_ms = int(reply[5] if isinstance(reply, list) else reply)
        return claim, None if delay_ms < 0 else delay_ms / 1000

    async def claim_wait(
        self,
        owner: str,
        wait_seconds: float,
        wakeup: ClaimWakeup | None = None,
        poll_interval: float = 0.05,
    ) -> Claim | None:
        """Claim, waiting up to `wait_seconds` for an event to become claimable.

        With `wakeup`, the claim is tried again only when it wakes: a nudge, or the time each claim
        tells it the next one may find something (the earliest due time; at once, for another slot,
        while the queue holds events); None is returned once `wait_seconds` have passed without a
        wake-up (the caller's next call is the fallback poll). Without, it polls every `poll_interval`.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while True:
            claim, due_in = await self._claim_once(owner)
            if wakeup is not None:
                wakeup.expect(due_in)
            remaining = deadline - loop.time()
            if claim is not None or remaining <= 0:
                return claim
            if wakeup is None:
                await asyncio.sleep(min(poll_interval, remaining))
                continue
            if not await wakeup.wait(remaining) or wakeup.closed:
                return None

    async def renew(self, claim: Claim) -> None:
        """Extend the lease by `lease_seconds` from now; raise `LeaseLostError` if it was reaped."""
        keys = self.keys
        ok = await self._write(
            self._renew,
            f"lease renewal of event {claim.event.event_id}",
            keys=[keys.leases, keys.events],
            args=[
                str(claim.event.event_id),
                claim.lease_token,
                _ms(self.lease_seconds),
                self._now_arg(),
            ],
        )
        if not int(ok):
            raise LeaseLostError(f"lease on event {claim.event.event_id} was lost (expired and reaped)")

    def _complete_keys(self) -> list[str]:
        keys = self.keys
        return [
            keys.dedup,
            keys.queue,
            keys.leases,
            keys.order,
            keys.retried,
            keys.outbox,
            keys.metrics,
            keys.finished,
            keys.events,
        ]

    def _retention_ms(self) -> int:
        return _ms(self.finished_retention_seconds)

    async def complete(self, claim: Claim) -> CompleteResult:
        """Finish a run: drop the event and its dedup key, or queue it again if a trigger coalesced."""
        sent_at = time.monotonic()
        reply = await self._stand(
            self._complete,
            f"completion of event {claim.event.event_id}",
            keys=self._complete_keys(),
            args=[
                str(claim.event.event_id),
                claim.lease_token,
                self._retention_ms(),
                self._now_arg(),
                self.keys.wake,
            ],
        )
        return _complete_result(claim, reply, sent_at)

    async def complete_and_claim(self, claim: Claim, owner: str) -> CompleteResult:
        """`complete`, then `claim` for `owner`, in one atomic round trip (the worker's hot path).

        With replicas to wait for (durability.py) the completion stands once on the primary, while the
        claim counts only once the replicas have it: unconfirmed, it is not handed out, and the event
        returns to the queue when its lease expires, as after a claim that was not confirmed."""
        keys = self.keys
        sent_at = time.monotonic()
        reply, confirmed = await self._attempt(
            self._complete_and_claim,
            [*self._complete_keys(), keys.retry, keys.tombstones, keys.scheduled, keys.attention],
            [
                str(claim.event.event_id),
                claim.lease_token,
                self._retention_ms(),
                uuid.uuid4().hex,
                owner,
                _ms(self.lease_seconds),
                self._now_arg(),
                keys.wake,
            ],
        )
        result = _complete_result(claim, reply, sent_at)
        if confirmed or result.next_claim is None:
            return result
        log.warning(
            "completed on the primary; the next claim is not on the replicas, so it is left to its lease",
            event_id=str(claim.event.event_id),
            not_claimed=str(result.next_claim.event.event_id),
        )
        return CompleteResult(result.outcome, result.entries)

    async def fail(
        self, claim: Claim, error: str, retry_delay_seconds: float = 0.0, *, wait: Wait | None = None
    ) -> FailResult:
        """End a run that did not succeed: the event waits as `wait` says (by default: retrying
        after `retry_delay_seconds`); return its new times_queued and due time."""
        if wait is None:
            wait = Wait(delay_seconds=retry_delay_seconds)
        keys = self.keys
        reply = await self._stand(
            self._fail,
            f"failure of event {claim.event.event_id}",
            keys=[
                keys.leases,
                keys.retry,
                keys.retried,
                keys.outbox,
                keys.metrics,
                keys.scheduled,
                keys.attention,
                keys.events,
            ],
            args=[
                str(claim.event.event_id),
                claim.lease_token,
                error[:2000],
                _ms(wait.delay_seconds),
                self._now_arg(),
                wait.state.value,
                wait.failure_class.value,
                _due_ms(wait.due_at),
                "1" if wait.attempted else "0",
                keys.wake,
            ],
        )
        times = int(reply[0])
        if times < 0:
            raise LeaseLostError(f"lease on event {claim.event.event_id} was lost before it failed")
        return FailResult(times, _entries(reply[2:]), _datetime_of_ms(int(reply[1])))

    async def retry_now(self, event_id: str, detail: str) -> tuple[RetryNowOutcome, tuple[str, ...]]:
        """An operator's "retry now": a waiting event becomes due at once (back of the queue).

        Raises `EventNotQueuedError` for an unknown id, `EventProcessingError` while it runs.
        """
        keys = self.keys
        reply = await self._stand(
            self._retry_now,
            f"retry of event {event_id}",
            keys=[keys.queue, keys.retry, keys.scheduled, keys.attention, keys.outbox, keys.events],
            args=[event_id, detail, self._now_arg(), keys.wake],
        )
        status = _text(reply[0])
        if status == "missing":
            raise EventNotQueuedError(f"event {event_id} is not in the queue")
        if status == "processing":
            raise EventProcessingError(f"event {event_id} is running now; it cannot be retried")
        return RetryNowOutcome(status), _entries(reply[1:])

    async def release(self, claim: Claim) -> tuple[str, ...]:
        """Give an unfinished claim back to the front of the queue without counting a retry.

        For a graceful shutdown: the event was the oldest when claimed, so it goes first again. A
        coalesced rerun mark is kept (the run that would honour it has not happened).
        """
        keys = self.keys
        reply = await self._stand(
            self._release,
            f"release of event {claim.event.event_id}",
            keys=[keys.leases, keys.queue, keys.outbox, keys.events],
            args=[
                str(claim.event.event_id),
                claim.lease_token,
                self._now_arg(),
                keys.wake,
            ],
        )
        if not int(reply[0]):
            raise LeaseLostError(f"lease on event {claim.event.event_id} was lost before it was released")
        return _entries(reply[1:])

    async def reap(self, limit: int = 100) -> list[Reaped]:
        """Return events whose lease expired to the back of the queue."""
        keys = self.keys
        reply = await self._stand(
            self._reap,
            "return of expired leases",
            keys=[keys.leases, keys.queue, keys.retried, keys.outbox, keys.metrics, keys.events],
            args=[self._now_arg(), limit, keys.wake],
        )
        flat = [_text(v) for v in reply]
        return [Reaped(flat[i], int(flat[i + 1]), (flat[i + 2],)) for i in range(0, len(flat), 3)]

    async def remove(self, event_id: str, detail: str = "removed by an operator") -> Removed:
        """Operator removal of a queued or retrying event, with its dedup key, in one step."""
        keys = self.keys
        reply = await self._stand(
            self._remove,
            f"removal of event {event_id}",
            keys=[
                keys.dedup,
                keys.retry,
                keys.order,
                keys.retried,
                keys.tombstones,
                keys.outbox,
                keys.metrics,
                keys.finished,
                keys.scheduled,
                keys.attention,
                keys.events,
            ],
            args=[event_id, detail, self._retention_ms(), self._now_arg()],
        )
        status = _text(reply[0])
        if status == "missing":
            raise EventNotQueuedError(f"event {event_id} is not in the queue")
        if status == "processing":
            raise EventProcessingError(f"event {event_id} is being processed; remove it after the run")
        event = parse_event(_text(reply[1])).model_copy(update={"times_queued": int(reply[2])})
        return Removed(event, _entries(reply[3:]))

    async def stats(self) -> QueueStats:
        """Queue counters from O(1) and O(log n) reads in one script: no scan of the queue."""
        keys = self.keys
        reply = await self._stats(
            keys=[
                keys.queue,
                keys.tombstones,
                keys.leases,
                keys.retry,
                keys.dedup,
                keys.retried,
                keys.order,
                keys.scheduled,
                keys.attention,
                keys.events,
                keys.bodies,
            ],
            args=[self._now_arg()],
        )
        queued, processing, retrying, active, retried, created, now, scheduled, attention = reply
        age = max(0.0, (int(now) - int(created)) / 1000) if created else None
        return QueueStats(
            queue_length=int(queued),
            processing_count=int(processing),
            retrying_count=int(retrying),
            active_events_count=int(active),
            events_with_retries=int(retried),
            oldest_event_age_seconds=age,
            scheduled_count=int(scheduled),
            needs_attention_count=int(attention),
        )

    async def list_events(self, limit: int = 100) -> list[QueuedEventView]:
        """Live events, oldest first, at most `limit` (O(log n + limit))."""
        ids = await self.redis.zrange(self.keys.order, 0, max(0, limit - 1))
        return await self._views([_text(i) for i in ids])

    async def get(self, event_id: str) -> QueuedEventView | None:
        """One live event, or None when it is not in the queue."""
        views = await self._views([event_id])
        return views[0] if views else None

    async def _views(self, ids: Sequence[str]) -> list[QueuedEventView]:
        return [_view(fields) for fields in await self._records(ids) if fields is not None]

    async def _records(self, ids: Sequence[str]) -> list[dict[str, str] | None]:
        """The records of these events with their Event JSON as `json` (None: not live)."""
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self.keys.events, list(ids))
            pipe.hmget(self.keys.bodies, list(ids))
            rows, bodies = await pipe.execute()
        return [
            None if row is None else {**_record(row), "json": _text(body) if body is not None else ""}
            for row, body in zip(rows, bodies, strict=True)
        ]

    async def record(self, event_id: str) -> dict[str, str] | None:
        """The raw record of a live event (the scripts' fields, its Event as `json`; see keys.py)."""
        return (await self._records([event_id]))[0]

    async def is_live(self, event_ids: Sequence[str]) -> list[bool]:
        """For each id, whether its event is live in the queue (one round trip)."""
        if not event_ids:
            return []
        return [row is not None for row in await self.redis.hmget(self.keys.events, list(event_ids))]

    async def live_event_ids(self) -> set[str]:
        """Every live event id (a scan of the order index: for recovery and tests, not hot paths)."""
        return {_text(i) for i in await self.redis.zrange(self.keys.order, 0, -1)}


def _due_ms(moment: datetime | None) -> int:
    return 0 if moment is None else _ms(moment.timestamp())


def _datetime_of_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _entries(values: Sequence[Any]) -> tuple[str, ...]:
    return tuple(_text(v) for v in values)


def _claim_of(reply: Sequence[Any], sent_at: float) -> Claim:
    event = parse_event(_text(reply[1])).model_copy(update={"times_queued": int(reply[2])})
    return Claim(event=event, lease_token=_text(reply[3]), sent_at=sent_at, entries=_entries(reply[4:5]))


def _complete_result(claim: Claim, reply: Sequence[Any], sent_at: float) -> CompleteResult:
    outcome = _text(reply[0])
    if outcome == "lost":
        raise LeaseLostError(f"lease on event {claim.event.event_id} was lost before it completed")
    next_claim = _claim_of(reply[2:], sent_at) if len(reply) > 2 else None
    return CompleteResult(CompleteOutcome(outcome), _entries(reply[1:2]), next_claim)


def _record(raw: Any) -> dict[str, str]:
    fields: dict[str, str] = json.loads(_text(raw))
    return fields


def _view(fields: dict[str, str]) -> QueuedEventView:
    event = parse_event(fields["json"]).model_copy(update={"times_queued": int(fields["times_queued"])})
    state = EventState(fields["state"])
    due = fields.get("due_ms")
    return QueuedEventView(
        event=event,
        state=state,
        rerun=fields.get("rerun") == "1",
        last_error=fields.get("last_error"),
        failure_class=FailureClass(fields["class"]) if fields.get("class") else None,
        due_at=_datetime_of_ms(int(due)) if due and state in WAITING_STATES else None,
    )
