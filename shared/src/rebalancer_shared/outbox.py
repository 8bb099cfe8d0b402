"""The transactional outbox: transitions wait in a Redis stream until PostgreSQL has them.

Every queue script appends the transition it made to `P:outbox` in the same atomic step (see
queue/scripts.py), so the history cannot miss one: a crash between the Redis step and the PostgreSQL
write only delays the write. Two writers empty the stream, both idempotent (history_writes.py):

- `flush(entries)`: the lifecycle writes the entries of the step it just took at once, so the
  history is current when the step returns (an API answer, then `GET /events/{id}`, agree);
- `drain()`: every long-running process keeps draining what is left (a flush that failed while
  PostgreSQL was down, a process killed between its step and its flush), one process at a time
  (`P:outbox-lock`), oldest first.

An entry is deleted from the stream only after PostgreSQL committed it. Invariant: every transition
an event went through is in the stream or in PostgreSQL (or both, briefly), never in neither.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from redis.asyncio import Redis

from rebalancer_shared.events import EventError, parse_event
from rebalancer_shared.queue.keys import QueueKeys
from rebalancer_shared.queue.scripts import LOCK_RELEASE
from rebalancer_shared.store import EventStore, HistoryRecord, Transition

log = structlog.get_logger(__name__)

DRAIN_BATCH = 500
# Short: a drainer killed while holding it delays the others by this much at most (renewed per batch).
DRAIN_LOCK_SECONDS = 5.0
DRAIN_INTERVAL_SECONDS = 1.0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def seq_of(entry_id: str) -> int:
    """A stream id `ms-n` as one increasing number (`ms * 1e6 + n`)."""
    millis, _, number = entry_id.partition("-")
    return int(millis) * 1_000_000 + int(number or 0)


def parse_entry(entry_id: str, raw: dict[Any, Any]) -> HistoryRecord | None:
    """The record of one stream entry; None (logged) for an entry this release cannot read."""
    fields = {_text(k): _text(v) for k, v in raw.items()}
    try:
        event = parse_event(fields["ev"]) if fields.get("ev") else None
        return HistoryRecord(
            seq=seq_of(entry_id),
            event_id=uuid.UUID(fields["id"]),
            transition=Transition(fields["t"]),
            times_queued=int(fields["n"]),
            detail=fields.get("d") or None,
            event=event,
            close_runs_below=int(fields.get("close") or 0),
            at=datetime.fromtimestamp(int(fields["ms"]) / 1000, UTC),
            failure_class=fields.get("cls") or None,
            due_at=datetime.fromtimestamp(int(fields["due"]) / 1000, UTC) if fields.get("due") else None,
        )
    except (KeyError, ValueError, EventError) as exc:
        log.error("outbox entry cannot be read: skipped", entry=entry_id, error=str(exc))
        return None


class Outbox:
    """The Redis side of the history: read entries, hand them to the store, delete what it took."""

    def __init__(self, redis: Redis, keys: QueueKeys, store: EventStore) -> None:
        self.redis = redis
        self.keys = keys
        self.store = store
        self._release_lock = redis.register_script(LOCK_RELEASE)

    async def pending(self) -> int:
        """Entries not yet in PostgreSQL."""
        return int(await self.redis.xlen(self.keys.outbox))

    async def _write(self, entries: Sequence[tuple[Any, Any]]) -> int:
        records = [parse_entry(_text(entry_id), fields) for entry_id, fields in entries]
        await self.store.apply_history([r for r in records if r is not None])
        await self.redis.xdel(self.keys.outbox, *[entry_id for entry_id, _ in entries])
        return len(entries)

    async def flush(self, entry_ids: Sequence[str]) -> None:
        """Write these entries now (best effort: on failure the drainer writes them later)."""
        if not entry_ids:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for entry_id in entry_ids:
                    pipe.xrange(self.keys.outbox, entry_id, entry_id)
                found = [entry for reply in await pipe.execute() for entry in reply]
            if found:
                await self._write(found)
        except Exception as exc:
            log.warning("history write postponed: the outbox keeps it", error=str(exc).splitlines()[0])

    async def drain(self, batch: int = DRAIN_BATCH) -> int:
        """Write everything the stream holds, oldest first, unless another process is at it."""
        token = uuid.uuid4().hex
        lock = self.keys.outbox_lock
        if not await self.redis.set(lock, token, nx=True, px=round(DRAIN_LOCK_SECONDS * 1000)):
            return 0
        written = 0
        try:
            while entries := await self.redis.xrange(self.keys.outbox, count=batch):
                written += await self._write(entries)
                await self.redis.pexpire(lock, round(DRAIN_LOCK_SECONDS * 1000))
        finally:
            await self._release_lock(keys=[lock], args=[token])
        return written

    async def run_drainer(self, interval_seconds: float = DRAIN_INTERVAL_SECONDS) -> None:
        """Drain forever (a background task of every long-running process)."""
        failing = False
        while True:
            try:
                written = await self.drain()
                if written:
                    log.info("history written from the outbox", entries=written)
                if failing:
                    log.warning("history writes work again")
                failing = False
            except Exception as exc:
                if _cancelling():  # a cancel that a library turned into an error: stop all the same
                    raise asyncio.CancelledError from exc
                if not failing:
                    log.warning(
                        "outbox drain failed; the entries wait in Redis", error=str(exc).splitlines()[0]
                    )
                failing = True
            await asyncio.sleep(interval_seconds)


def _cancelling() -> bool:
    """This task was asked to stop. A cancel landing inside a database call can come back as another
    error (the driver's, after it rolls back); caught as a failure, the drainer would go on draining,
    and the process's shutdown, which waits for its tasks, would wait for ever."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
