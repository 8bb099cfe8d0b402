"""The event broker's lifecycle: start, subscribe, relay messages, write heartbeats, stop cleanly.

Start: `reconcile_queue` (restore what Redis lost from PostgreSQL; repeated every
`reconcile_interval_seconds` while running, beside the outbox drainer), connect to Ably (a rejected
key ends the run with `AblyConnectionFailedError`), subscribe once per channel that some account
follows. Messages go from the SDK's listener into an in-memory inbox and are relayed one at a time,
in arrival order, by one consumer task, so a slow write never blocks the SDK and an error in one
message never stops the next. A heartbeat (`event-broker:{instance}`) reports the connection state,
the channels, the time of the last message and the backlog every few seconds and on every change.

Stop (`request_stop`, wired to SIGTERM/SIGINT): close the Ably connection first (nothing new
arrives), let the consumer finish what it holds within `shutdown_grace_seconds`, then remove the
heartbeat entry. A message still unhandled at that point is logged with its id; it was never marked
as handled, so the next start's catch-up (rewind) delivers it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import structlog

from event_broker.intake import ReceivedMessage
from event_broker.relay import TriggerRelay
from event_broker.retry import OutageRetry
from event_broker.settings import SERVICE_NAME, EventBrokerSettings
from event_broker.subscriber import Subscriber
from rebalancer_shared.accounts import Account, accounts_by_channel
from rebalancer_shared.heartbeats import HeartbeatReport, HeartbeatWriter, instance_name
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.recovery import keep_reconciling, reconcile_queue

log = structlog.get_logger(__name__)

T = TypeVar("T")

WIND_DOWN_SECONDS = 3.0


async def _wind_down(*tasks: asyncio.Task[None]) -> None:
    """Wait briefly for tasks that were told to stop; cancel any that do not."""
    _, pending = await asyncio.wait(tasks, timeout=WIND_DOWN_SECONDS)
    for task in pending:
        log.warning("task did not stop in time: cancelled", task=task.get_name())
        task.cancel()
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("task ended with an error", task=task.get_name(), error=repr(task.exception()))


class EventBrokerService:
    """One event broker process: subscriber in, relay out, heartbeat on the side."""

    def __init__(
        self,
        settings: EventBrokerSettings,
        accounts: Mapping[str, Account],
        lifecycle: EventLifecycle,
        subscriber: Subscriber,
        *,
        instance: str | None = None,
    ) -> None:
        self.settings = settings
        self.instance = instance or instance_name()
        self._channels = accounts_by_channel(accounts)
        self._lifecycle = lifecycle
        self._queue = lifecycle.queue
        self._subscriber = subscriber
        self.relay = TriggerRelay(
            lifecycle,
            self._channels,
            seen_ttl_seconds=settings.seen_ttl_seconds,
            retry=OutageRetry(settings.retry),
        )
        self.ready = asyncio.Event()
        self._stopping = asyncio.Event()
        # Set when shutting down: loops end by themselves (a cancel can be lost inside redis-py on 3.11).
        self._finished = asyncio.Event()
        self._inbox: asyncio.Queue[ReceivedMessage] = asyncio.Queue()
        self._pending: list[ReceivedMessage] = []
        self._last_message_at: float | None = None
        self.heartbeat = HeartbeatWriter(
            self._queue.redis,
            self._queue.keys.prefix,
            SERVICE_NAME,
            self.instance,
            self._report,
            interval_seconds=settings.heartbeat_seconds,
        )

    @property
    def channels(self) -> list[str]:
        return sorted(self._channels)

    def request_stop(self) -> None:
        """Ask the service to stop (signal handlers call this); `run` then returns."""
        if not self._stopping.is_set():
            log.info("stop requested")
        self._stopping.set()

    def deliver(self, message: ReceivedMessage) -> None:
        """Take a message from the subscriber (called in the SDK's listener: must not block)."""
        self._last_message_at = time.time()
        self._pending.append(message)
        self._inbox.put_nowait(message)

    async def run(self) -> None:
        """Run until stopped; raise `AblyConnectionFailedError` if the Ably connection fails for good."""
        heartbeat = asyncio.create_task(self.heartbeat.run(), name="event-broker-heartbeat")
        consumer = asyncio.create_task(self._consume(), name="event-broker-consumer")
        history = [
            asyncio.create_task(self._lifecycle.outbox.run_drainer(), name="outbox-drainer"),
            asyncio.create_task(
                keep_reconciling(
                    self._lifecycle, self.settings.lease_seconds, self.settings.reconcile_interval_seconds
                ),
                name="reconciler",
            ),
        ]
        try:
            await self._unless_stopped(self._start())
            if self._stopping.is_set():
                return
            self.ready.set()
            log.info("event broker running", channels=self.channels, instance=self.instance)
            failure = await self._unless_stopped(self._subscriber.wait_failed())
            if failure is not None:
                raise failure
        finally:
            for task in history:
                task.cancel()
            await asyncio.gather(*history, return_exceptions=True)
            await self._shutdown(consumer, heartbeat)

    async def _start(self) -> None:
        report = await self.relay.retry.run(
            "check queue state", lambda: reconcile_queue(self._lifecycle, self.settings.lease_seconds)
        )
        if report.redis_was_wiped:
            log.warning("queue rebuilt at start", restored=report.restored, already=report.already_queued)
        await self._subscriber.connect()
        if not self._channels:
            log.warning("no account follows any channel: nothing to subscribe to")
        for channel in self.channels:
            await self._subscriber.subscribe(channel, self.deliver)

    async def _unless_stopped(self, work: Coroutine[Any, Any, T]) -> T | None:
        """Await `work` unless a stop is requested first (then cancel it and return None)."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            stop.cancel()
        if task.done():
            return task.result()
        task.cancel()
        # Bounded: a cancel lost inside a client library must not hold the stop (the shutdown then
        # abandons the retries, which ends such a task).
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            async with asyncio.timeout(WIND_DOWN_SECONDS):
                await task
        return None

    async def _consume(self) -> None:
        while not self._finished.is_set():
            message = await self._inbox.get()
            try:
                with structlog.contextvars.bound_contextvars(ably_message_id=message.message_id):
                    await self.relay.handle(message)
            except Exception:
                # Logged and left unmarked: a later catch-up may deliver it again. The next one goes on.
                log.exception(
                    "ably message could not be turned into events",
                    ably_message_id=message.message_id,
                    channel=message.channel,
                )
            finally:
                self._pending.remove(message)
                self._inbox.task_done()

    async def _shutdown(self, consumer: asyncio.Task[None], heartbeat: asyncio.Task[None]) -> None:
        self._stopping.set()
        await self._subscriber.close()
        try:
            async with asyncio.timeout(self.settings.shutdown_grace_seconds):
                await self._inbox.join()
        except TimeoutError:
            log.error(
                "stopping with ably messages not turned into events; a restart within the catch-up "
                "window delivers them again",
                ably_message_ids=[m.message_id for m in self._pending],
            )
        self.relay.retry.abandon()
        self._finished.set()
        self.heartbeat.stop()  # it removes its entry as it ends
        consumer.cancel()  # it waits for the next message, or gives up its retry (abandoned)
        await _wind_down(consumer, heartbeat)
        log.info("event broker stopped", instance=self.instance)

    # -- heartbeat ---------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """What the heartbeat reports (besides the state)."""
        return {
            "channels": self._subscriber.channel_states(),
            "last_message_at": self._last_message_at,
            "backlog": len(self._pending),
            "writes_failing": self.relay.retry.failing,
        }

    def state(self) -> str:
        return "stopping" if self._stopping.is_set() else self._subscriber.state

    def _report(self) -> HeartbeatReport:
        return HeartbeatReport(self.state(), self.health())
