"""The worker loop: claim events in FIFO order, run them under a renewed lease, finish or retry.

`max_concurrent_events` slots each loop: claim (polling), run the event's command while a guard task
renews the lease (and, for mutating commands, the account lock) every `heartbeat_seconds`, then
complete it and claim the next in one round trip, or fail it to the back of the queue with the
retry delay. Retries never stop by themselves. A reaper returns events whose worker died.

Every state change goes to the `EventStore`; logs carry event_id, account_id and command.

Shutdown (SIGTERM): stop claiming, give running events `shutdown_grace_seconds` to finish, then
cancel the rest and release them to the front of the queue: nothing is lost either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from rebalancer_shared.events import Event
from rebalancer_shared.heartbeats import beat, forget
from rebalancer_shared.metrics import Counter, count
from rebalancer_shared.queue import AccountLock, Claim, CompleteOutcome, EventQueue, LeaseLostError
from rebalancer_shared.store import EventStore, Transition

log = structlog.get_logger(__name__)


class EventHandler(Protocol):
    """Runs one event's command; raising means the run failed and the event retries."""

    async def handle(self, event: Event, attempt: int, worker: str) -> None: ...


@dataclass(frozen=True)
class WorkerSettings:
    """The knobs of the loop (from the `processing` section of config.yaml)."""

    max_concurrent_events: int = 8
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 10.0
    retry_delay_seconds: float = 30.0
    reap_interval_seconds: float = 5.0
    shutdown_grace_seconds: float = 30.0
    poll_seconds: float = 0.2


def worker_name() -> str:
    """host:pid:random, unique per process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class LostLeaseDuringRun(Exception):
    """The lease (or account lock) could not be renewed; the run was stopped."""


class Worker:
    """One processor process's loop over the shared queue."""

    def __init__(
        self,
        queue: EventQueue,
        store: EventStore,
        handler: EventHandler,
        settings: WorkerSettings,
        name: str | None = None,
    ) -> None:
        self.queue = queue
        self.store = store
        self.handler = handler
        self.settings = settings
        self.name = name or worker_name()
        self._stopping = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}

    @property
    def active(self) -> int:
        """Events being run right now."""
        return len(self._running)

    def stop(self) -> None:
        """Stop claiming new events (running ones go on until the grace period ends)."""
        self._stopping.set()

    async def run(self) -> None:
        """Run until `stop()`; then drain within the grace period and release what is left."""
        await self.reap_once()
        slots = [asyncio.create_task(self._slot(i)) for i in range(self.settings.max_concurrent_events)]
        background = [asyncio.create_task(self._reaper()), asyncio.create_task(self._heartbeat())]
        await self._stopping.wait()
        log.info(
            "stopping: no new claims", running=self.active, grace_seconds=self.settings.shutdown_grace_seconds
        )
        _, pending = await asyncio.wait(slots, timeout=self.settings.shutdown_grace_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await forget(self.queue.redis, self.queue.keys.prefix, "event-processor", self.name)
        log.info("stopped")

    async def reap_once(self) -> None:
        """Return expired leases to the queue and record it."""
        for event_id, times in await self.queue.reap():
            view = await self.queue.get(event_id)
            log.warning("lease expired: event returned to the queue", event_id=event_id, times_queued=times)
            if view is not None:
                await self.store.record(
                    view.event,
                    Transition.REQUEUED,
                    times_queued=times,
                    detail="lease expired: its worker stopped",
                )
                await count(
                    self.queue.redis, self.queue.keys.prefix, Counter.EVENTS_RETRIED, view.event.exec_command
                )

    async def _reaper(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reap_interval_seconds)
            try:
                await self.reap_once()
            except Exception:
                log.exception("reaping failed; will try again")

    async def _heartbeat(self) -> None:
        while True:
            try:
                await beat(
                    self.queue.redis,
                    self.queue.keys.prefix,
                    "event-processor",
                    self.name,
                    "running",
                    active=self.active,
                    slots=self.settings.max_concurrent_events,
                )
            except Exception:
                log.exception("heartbeat failed; will try again")
            await asyncio.sleep(min(self.settings.heartbeat_seconds, 5.0))

    async def _slot(self, index: int) -> None:
        claim: Claim | None = None
        while not self._stopping.is_set() or claim is not None:
            try:
                if claim is None:
                    claim = await self.queue.claim_wait(self.name, wait_seconds=self.settings.poll_seconds)
                    continue
                claim = await self._process(claim)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker slot error; continuing", slot=index)
                claim = None
                await asyncio.sleep(self.settings.poll_seconds)

    async def _process(self, claim: Claim) -> Claim | None:
        """Run one claimed event; return the next claim when completing could take one at once."""
        event = claim.event
        bound = structlog.contextvars.bound_contextvars(
            event_id=str(event.event_id), account_id=event.account_id, command=event.exec_command.value
        )
        with bound:
            task = asyncio.current_task()
            assert task is not None
            self._running[str(event.event_id)] = task
            try:
                error = await self._run_guarded(claim)
            except asyncio.CancelledError:
                await self._release(claim)
                raise
            finally:
                self._running.pop(str(event.event_id), None)
            if error is not None:
                await self._fail(claim, error)
                return None
            return await self._complete(claim)

    async def _run_guarded(self, claim: Claim) -> str | None:
        """Run the handler under the lease (and account lock); return an error text or None."""
        event = claim.event
        await self.store.record(event, Transition.PROCESSING, detail=f"worker {self.name}")
        lock = None
        if event.exec_command.is_mutating:
            lock = AccountLock(
                self.queue.redis, self.queue.keys.prefix, event.account_id, self.settings.lease_seconds
            )
            lock_error = await self._wait_for_lock(claim, lock)
            if lock_error:
                return lock_error
        try:
            await self._with_renewal(claim, lock, self.handler.handle(event, event.times_queued, self.name))
            return None
        except LostLeaseDuringRun as exc:
            return str(exc)
        except Exception as exc:
            log.warning("run failed", error=f"{type(exc).__name__}: {exc}")
            return f"{type(exc).__name__}: {exc}"
        finally:
            if lock is not None:
                await lock.release()

    async def _wait_for_lock(self, claim: Claim, lock: AccountLock) -> str | None:
        """Wait for the account's mutating-command lock, renewing our lease meanwhile."""
        waited = False
        while not await lock.try_acquire():
            if not waited:
                log.info("waiting for the account's running mutating command to finish")
                waited = True
            try:
                await self.queue.renew(claim)
            except LeaseLostError as exc:
                return str(exc)
            await asyncio.sleep(min(1.0, self.settings.heartbeat_seconds))
        return None

    async def _with_renewal(
        self, claim: Claim, lock: AccountLock | None, work: Coroutine[Any, Any, None]
    ) -> None:
        run = asyncio.ensure_future(work)
        guard = asyncio.create_task(self._renew_until_done(claim, lock, run))
        try:
            await run
        except asyncio.CancelledError:
            if guard.done() and not guard.cancelled() and guard.exception() is not None:
                raise LostLeaseDuringRun(f"run stopped: {guard.exception()}") from None
            raise
        finally:
            if not guard.done():
                guard.cancel()
            with contextlib.suppress(asyncio.CancelledError, LeaseLostError):
                await guard

    async def _renew_until_done(
        self, claim: Claim, lock: AccountLock | None, run: asyncio.Future[None]
    ) -> None:
        while not run.done():
            await asyncio.sleep(self.settings.heartbeat_seconds)
            try:
                await self.queue.renew(claim)
                if lock is not None and not await lock.renew():
                    raise LeaseLostError("the account lock expired while the command ran")
            except LeaseLostError as exc:
                log.error("lease lost during the run: stopping the command", error=str(exc))
                run.cancel()
                raise
            except Exception as exc:  # a Redis blip must not end the renewals while the run goes on
                log.warning("lease renewal failed; retrying at the next beat", error=str(exc))

    async def _complete(self, claim: Claim) -> Claim | None:
        event = claim.event
        redis, prefix = self.queue.redis, self.queue.keys.prefix
        if self._stopping.is_set():
            outcome, next_claim = await self.queue.complete(claim), None
        else:
            outcome, next_claim = await self.queue.complete_and_claim(claim, self.name)
        if outcome is CompleteOutcome.RERUN:
            await self.store.record(event, Transition.RERUN, detail="a trigger arrived during the run")
            log.info("event completed; running once more for a trigger that arrived meanwhile")
        else:
            await self.store.record(event, Transition.COMPLETED)
            log.info("event completed", times_queued=event.times_queued)
        await count(redis, prefix, Counter.EVENTS_COMPLETED, event.exec_command)
        return next_claim

    async def _fail(self, claim: Claim, error: str) -> None:
        event = claim.event
        redis, prefix = self.queue.redis, self.queue.keys.prefix
        times = await self.queue.fail(claim, error, self.settings.retry_delay_seconds)
        await self.store.record(event, Transition.RETRYING, times_queued=times, detail=error)
        await count(redis, prefix, Counter.EVENTS_FAILED, event.exec_command)
        await count(redis, prefix, Counter.EVENTS_RETRIED, event.exec_command)
        log.warning(
            "event failed: back of the queue",
            error=error,
            times_queued=times,
            retry_in_seconds=self.settings.retry_delay_seconds,
        )

    async def _release(self, claim: Claim) -> None:
        with contextlib.suppress(LeaseLostError):
            await asyncio.shield(self.queue.release(claim))
            await asyncio.shield(
                self.store.record(claim.event, Transition.REQUEUED, detail="released at shutdown; runs again")
            )
            log.warning("shutdown: event returned to the front of the queue")
