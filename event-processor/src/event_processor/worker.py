"""The worker loop: claim events in FIFO order, run them under a renewed lease, finish or retry.

`max_concurrent_events` slots each loop: claim, run the event's command while a guard task
renews the lease (and, for mutating commands, the account lock) every `heartbeat_seconds`, then
complete it and claim the next in one round trip, or fail it: the `RetryPolicy` (retry_policy.py)
classifies the error and says how the event waits (retrying after the retry delay, scheduled for
the next trading window, or needing attention until the next session or an operator's retry).
Before a run the policy may also hold a live rebalance outside the trading window: the event is
scheduled without a run. Retries never stop by themselves. Every transition goes through `EventLifecycle`
(queue step, history, counter and log line together); logs carry event_id, account_id and command.

Idle slots do not poll: they sleep on the process's `ClaimWakeup` (one Redis subscription for all
slots) until a nudge says an event became claimable, until the earliest due time of a waiting event,
or for at most `claim_poll_seconds` (the fallback for a lost nudge); see rebalancer_shared.queue.wakeup.

Background tasks of every worker: the wake-up subscription, the reaper (returns events whose worker
died), the outbox drainer (history PostgreSQL has not got yet), the reconciliation (events Redis
lost, restored from PostgreSQL) and the heartbeat.

Self-fencing: each run carries a `LeaseFence`. Renewals that Redis confirms move it on; when none was
confirmed in time (Redis down, the connection silently cut) the fence closes before the lease can
have expired in Redis, the run is stopped and places nothing more, and the event is left for whoever
reaps it. A run is never stopped half-way through placing a batch: the engine checks the fence
before each batch.

Shutdown (SIGTERM): stop claiming, give running events `shutdown_grace_seconds` to finish, then
cancel the rest and release them to the front of the queue: nothing is lost either way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import structlog
from redis.exceptions import RedisError
from tenacity import AsyncRetrying, stop_after_delay, wait_exponential

from event_processor.brokers.gateway_status import GatewayStatus
from event_processor.retry_policy import RetryPolicy, Verdict
from rebalancer_shared.config import ProcessingSettings
from rebalancer_shared.events import Event
from rebalancer_shared.heartbeats import HeartbeatReport, HeartbeatWriter, instance_name
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import AccountLock, Claim, LeaseFence, LeaseLostError
from rebalancer_shared.recovery import keep_reconciling
from rebalancer_shared.transient import is_transient, retry_if_transient

log = structlog.get_logger(__name__)
SERVICE = "event-processor"
# The processor beats at least this often, whatever the lease renewal interval.
MAX_HEARTBEAT_SECONDS = 5.0
# A background task still running this long after its cancel is cancelled again (see cancel_and_wait).
RECANCEL_SECONDS = 1.0
T = TypeVar("T")


async def cancel_and_wait(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel `tasks` and wait until every one has ended.

    A cancel can be lost: redis-py may catch the CancelledError that lands in the middle of a command
    and carry on (seen in the outbox drainer's XRANGE), and the task then sleeps on as if nothing
    happened, which would hang the shutdown. So a task still running after `RECANCEL_SECONDS` is
    cancelled again.
    """
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_SECONDS)
    await asyncio.gather(*tasks, return_exceptions=True)


def _written() -> Awaitable[None]:
    """A history write that is already done (a claim whose history was written before it returned)."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


@dataclass(frozen=True)
class RunTicket:
    """What a run gets: its event, the attempt number, the worker's name and the lease fence, and the
    claim's history write (running alongside; the run's own history waits for it)."""

    event: Event
    attempt: int
    worker: str
    fence: LeaseFence
    history_written: Awaitable[None] = field(default_factory=_written)


class EventHandler(Protocol):
    """Runs one event's command; raising means the run failed and the event retries."""

    async def handle(self, ticket: RunTicket) -> None: ...


class LostLeaseDuringRun(Exception):
    """The lease (or account lock) could not be renewed in time; the run was stopped."""


@dataclass
class _Active:
    claim: Claim
    fence: LeaseFence
    history: Awaitable[None] = field(default_factory=_written)


class Worker:
    """One processor process's loop over the shared queue."""

    def __init__(
        self,
        lifecycle: EventLifecycle,
        handler: EventHandler,
        settings: ProcessingSettings,
        name: str | None = None,
        policy: RetryPolicy | None = None,
        gateway: GatewayStatus | None = None,
    ) -> None:
        self.lifecycle = lifecycle
        self.gateway = gateway  # IB Gateway as this process found it (None: a simulated broker)
        self.queue = lifecycle.queue
        self.handler = handler
        self.settings = settings
        # Without a policy every failure is transient and the market always open (tests, tools).
        self.policy = policy or RetryPolicy.always_open(settings.retry_delay_seconds)
        self.name = name or instance_name()
        self._stopping = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self.wakeup = self.queue.claim_wakeup(slots=settings.max_concurrent_events)
        self.heartbeat = HeartbeatWriter(
            self.queue.redis,
            self.queue.keys.prefix,
            SERVICE,
            self.name,
            self._report,
            interval_seconds=min(settings.heartbeat_seconds, MAX_HEARTBEAT_SECONDS),
        )

    @property
    def active(self) -> int:
        """Events being run right now."""
        return len(self._running)

    def stop(self) -> None:
        """Stop claiming new events (running ones go on until the grace period ends)."""
        self._stopping.set()
        self.wakeup.close()

    async def run(self) -> None:
        """Run until `stop()`; then drain within the grace period and release what is left."""
        await self.reap_once()
        slots = [asyncio.create_task(self._slot(i)) for i in range(self.settings.max_concurrent_events)]
        heartbeat = asyncio.create_task(self.heartbeat.run())
        background = [
            *([asyncio.create_task(self.wakeup.listen())] if self.settings.claim_wakeup else []),
            asyncio.create_task(self._reaper()),
            asyncio.create_task(self.lifecycle.outbox.run_drainer()),
            asyncio.create_task(
                keep_reconciling(
                    self.lifecycle, self.settings.lease_seconds, self.settings.reconcile_interval_seconds
                )
            ),
        ]
        await self._stopping.wait()
        log.info(
            "stopping: no new claims", running=self.active, grace_seconds=self.settings.shutdown_grace_seconds
        )
        _, pending = await asyncio.wait(slots, timeout=self.settings.shutdown_grace_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await cancel_and_wait(background)
        await self.lifecycle.settle()
        with contextlib.suppress(Exception):
            await self.lifecycle.outbox.drain()
        self.heartbeat.stop()
        await heartbeat  # its entry is removed
        log.info("stopped")

    async def reap_once(self) -> None:
        """Return expired leases to the queue (recorded by the lifecycle)."""
        await self.lifecycle.reap()

    async def _reaper(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reap_interval_seconds)
            try:
                await self.reap_once()
            except Exception:
                log.exception("reaping failed; will try again")

    def _report(self) -> HeartbeatReport:
        details: dict[str, Any] = {"active": self.active, "slots": self.settings.max_concurrent_events}
        if self.gateway is not None:
            details["gateway"] = self.gateway.report()
        return HeartbeatReport("running", details)

    def _fence(self, sent_at: float) -> LeaseFence:
        return LeaseFence(self.settings.lease_seconds, sent_at)

    async def _claim(self) -> _Active | None:
        claimed = await self.lifecycle.claim_for_run(
            self.name, wait_seconds=self.settings.claim_poll_seconds, wakeup=self.wakeup
        )
        if claimed is None:
            return None
        claim, history = claimed
        return _Active(claim, self._fence(claim.sent_at), history)

    async def _slot(self, index: int) -> None:
        active: _Active | None = None
        while not self._stopping.is_set() or active is not None:
            try:
                if active is None:
                    active = await self._claim()
                    continue
                active = await self._process(active)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient(exc):
                    log.warning(
                        "worker slot: Redis or PostgreSQL unavailable or busy; continuing", error=str(exc)
                    )
                else:
                    log.exception("worker slot error; continuing", slot=index)
                active = None
                await self.wakeup.wait(self.settings.claim_poll_seconds)

    async def _process(self, active: _Active) -> _Active | None:
        """Run one claimed event; return the next claim when completing could take one at once."""
        event = active.claim.event
        bound = structlog.contextvars.bound_contextvars(
            event_id=str(event.event_id), account_id=event.account_id, command=event.exec_command.value
        )
        with bound:
            task = asyncio.current_task()
            assert task is not None
            self._running[str(event.event_id)] = task
            try:
                verdict = await self._run_guarded(active)
            except asyncio.CancelledError:
                await self._release(active.claim)
                raise
            finally:
                self._running.pop(str(event.event_id), None)
            if verdict is not None:
                await self._fail(active.claim, verdict)
                return None
            return await self._complete(active.claim)

    async def _run_guarded(self, active: _Active) -> Verdict | None:
        """Run the handler under the lease (and account lock); None when it succeeded, else how the
        event waits (also when the policy holds it before the run)."""
        event = active.claim.event
        held = self.policy.gate(event)
        if held is not None:
            return held
        lock = None
        if event.exec_command.is_mutating:
            lock = AccountLock(
                self.queue.redis,
                self.queue.keys.prefix,
                event.account_id,
                self.settings.lease_seconds,
                self.queue.durability,
            )
            lock_error = await self._wait_for_lock(active, lock)
            if lock_error:
                return self.policy.after(LeaseLostError(lock_error), lock_error)
        ticket = RunTicket(event, event.times_queued, self.name, active.fence, active.history)
        try:
            await self._with_renewal(active, lock, self.handler.handle(ticket))
            return None
        except LostLeaseDuringRun as exc:
            return self.policy.after(exc, str(exc))
        except Exception as exc:
            log.warning("run failed", error=f"{type(exc).__name__}: {exc}")
            return self.policy.after(exc, f"{type(exc).__name__}: {exc}")
        finally:
            if lock is not None:
                with contextlib.suppress(RedisError, OSError):
                    await lock.release()

    async def _renew(self, active: _Active, lock: AccountLock | None) -> None:
        """One renewal of the lease (and lock); the fence moves only when Redis confirmed both."""
        sent_at = active.fence.now()
        await self.queue.renew(active.claim)
        if lock is not None and not await lock.renew():
            raise LeaseLostError("the account lock expired while the command ran")
        active.fence.confirm(sent_at)

    async def _wait_for_lock(self, active: _Active, lock: AccountLock) -> str | None:
        """Wait for the account's mutating-command lock, renewing our lease meanwhile."""
        waited = False
        while not await lock.try_acquire():
            if not waited:
                log.info("waiting for the account's running mutating command to finish")
                waited = True
            try:
                await self._renew(active, None)
            except LeaseLostError as exc:
                return str(exc)
            await asyncio.sleep(min(1.0, self.settings.heartbeat_seconds))
        return None

    async def _with_renewal(
        self, active: _Active, lock: AccountLock | None, work: Coroutine[Any, Any, None]
    ) -> None:
        run = asyncio.ensure_future(work)
        guard = asyncio.create_task(self._renew_until_done(active, lock, run))
        try:
            await run
        except asyncio.CancelledError:
            if guard.done() and not guard.cancelled() and guard.exception() is not None:
                raise LostLeaseDuringRun(f"run stopped: {guard.exception()}") from None
            raise
        finally:
            if not guard.done():
                guard.cancel()
            with contextlib.suppress(asyncio.CancelledError, LeaseLostError, LostLeaseDuringRun):
                await guard

    async def _renew_until_done(
        self, active: _Active, lock: AccountLock | None, run: asyncio.Future[None]
    ) -> None:
        fence = active.fence
        while not run.done():
            await asyncio.sleep(max(0.0, min(self.settings.heartbeat_seconds, fence.remaining())))
            if fence.remaining() <= 0:
                log.error("no lease renewal confirmed in time: stopping the run before the lease can expire")
                run.cancel()
                raise LostLeaseDuringRun("the lease could not be renewed in time: the run stopped itself")
            try:
                await asyncio.wait_for(self._renew(active, lock), timeout=max(0.05, fence.remaining()))
            except LeaseLostError as exc:
                log.error("lease lost during the run: stopping the command", error=str(exc))
                run.cancel()
                raise
            except Exception as exc:  # a Redis blip must not end the renewals while the run goes on
                log.warning(
                    "lease renewal failed; retrying at the next beat",
                    error=str(exc) or type(exc).__name__,
                    fence_remaining_seconds=round(fence.remaining(), 1),
                )

    async def _patiently(self, step: Callable[[], Awaitable[T]]) -> T:
        """A finishing step, retried through a busy or briefly unreachable Redis (OOM, LOADING, a
        dropped connection) for up to one lease: after that the lease is gone and the step moot."""
        retrying = AsyncRetrying(
            retry=retry_if_transient,
            stop=stop_after_delay(self.settings.lease_seconds),
            wait=wait_exponential(multiplier=0.1, max=1.0),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await step()
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _complete(self, claim: Claim) -> _Active | None:
        next_for = None if self._stopping.is_set() else self.name
        try:
            result = await self._patiently(lambda: self.lifecycle.complete(claim, claim_next_for=next_for))
        except LeaseLostError:
            log.error("the lease was lost before the run could complete; the event runs again")
            return None
        except (RedisError, OSError) as exc:
            log.error("could not complete the event: it runs again once its lease expires", error=str(exc))
            return None
        if result.next_claim is None:
            return None
        return _Active(result.next_claim, self._fence(result.next_claim.sent_at))

    async def _fail(self, claim: Claim, verdict: Verdict) -> None:
        error = verdict.error
        try:
            await self._patiently(lambda: self.lifecycle.fail(claim, error, wait=verdict.wait))
        except LeaseLostError:
            log.error(
                "the lease was lost before the failure could be recorded; the event runs again", error=error
            )
        except (RedisError, OSError) as exc:
            log.error(
                "could not record the failure: the event runs again once its lease expires",
                error=error,
                redis_error=str(exc),
            )

    async def _release(self, claim: Claim) -> None:
        with contextlib.suppress(LeaseLostError, RedisError, OSError):
            await asyncio.shield(self.lifecycle.release(claim))
